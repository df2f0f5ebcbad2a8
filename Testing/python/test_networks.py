"""Networks (shapes, residual identity at initialisation, MS-D structure) and device resolution."""

from __future__ import annotations

import pytest
import torch
from sr4zct.errors import ParameterError, ResourceError
from sr4zct.method.networks import NETWORKS, MSDNet, ResidualCNN, build_network, network_config
from sr4zct.system.devices import describe_devices, resolve_device, set_cpu_threads, single_thread


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("shape", [(2, 1, 32, 48), (1, 1, 37, 29)])
def test_untrained_network_is_identity(name, shape):
    config = {"depth": 12} if name == "msd" else {}
    net = build_network(name, config).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x)


@pytest.mark.parametrize("unshuffle", [1, 2])
def test_residual_cnn_learns_something(unshuffle):
    torch.manual_seed(0)
    net = ResidualCNN(layers=4, channels=8, unshuffle=unshuffle)
    x = torch.randn(4, 1, 20, 22)
    target = x + 0.5 * torch.roll(x, 1, dims=-2)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    first = None
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(net(x), target)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.7 * first
    assert net(x).shape == x.shape


def test_msd_structure():
    net = MSDNet()
    assert len(net.convs) == 100
    assert net.dilations[:12] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2]
    for i, conv in enumerate(net.convs):
        assert conv.in_channels == 1 + i  # input + all previous width-1 layers
        assert conv.out_channels == 1
        assert conv.kernel_size == (3, 3)
        assert conv.dilation == (1 + i % 10,) * 2
    assert net.out.kernel_size == (1, 1)
    assert net.out.in_channels == 101
    assert net.halo_px == 550


def test_msd_dense_connections_carry_gradient():
    torch.manual_seed(0)
    net = MSDNet(depth=6, width=1)
    torch.nn.init.normal_(net.out.weight)
    x = torch.randn(1, 1, 24, 24)
    net(x).sum().backward()
    # the output layer sees every layer, so every layer gets a gradient
    assert all(conv.weight.grad.abs().sum() > 0 for conv in net.convs)
    with torch.no_grad():  # the buffered inference path computes the same function
        torch.testing.assert_close(net(x), torch.enable_grad()(net)(x).detach())


def test_build_network_config_roundtrip():
    net = build_network("default", {"layers": 5, "channels": 12})
    cfg = network_config(net)
    assert cfg == {"layers": 5, "channels": 12, "unshuffle": 2}
    clone = build_network("default", cfg)
    clone.load_state_dict(net.state_dict())
    assert network_config(build_network("msd", {"depth": 7})) == {"depth": 7, "width": 1, "max_dilation": 10}


def test_unknown_network():
    with pytest.raises(ParameterError, match="Unknown network"):
        build_network("resnet9000")


def test_resolve_device_cpu_and_auto():
    dev, text = resolve_device("cpu")
    assert dev.type == "cpu" and "CPU" in text
    dev, text = resolve_device("auto")
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert dev.type == "cpu"
        assert text.startswith(f"CPU ({torch.get_num_threads()} threads), as no CUDA GPU")  # the reason, said


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_unavailable_cuda_is_resource_error(spec):
    with pytest.raises(ResourceError, match="not available"):
        resolve_device(spec)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_unavailable_mps_is_resource_error():
    with pytest.raises(ResourceError):
        resolve_device("mps")


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "gpu0"])
def test_bad_device_name(spec):
    with pytest.raises((ParameterError, ResourceError)):
        resolve_device(spec)


def test_describe_devices_lists_cpu():
    devices = describe_devices()
    assert devices[-1]["id"] == "cpu"
    assert all({"id", "name", "memory_gb"} <= set(d) for d in devices)


def test_thread_helpers_restore_settings():
    before = torch.get_num_threads()
    n = set_cpu_threads()
    assert n >= 1 and torch.get_num_threads() == n
    with single_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == n
    torch.set_num_threads(before)


@pytest.mark.parametrize("preset", ["fast", "balanced", "best"])
def test_input_reaches_the_head_of_every_preset_network(preset):
    """The body's features must still depend on the input at its end: a plain ReLU stack whose signal fades
    below the biases starts (and may stay) at the identity. Measured with PyTorch's default initialisation:
    0.0018 (fast), 0.0003 (balanced), 0.00005 (best)."""
    from sr4zct.method.networks import build_network
    from sr4zct.run.presets import get_preset

    torch.manual_seed(0)
    net = build_network("default", get_preset(preset).network_config)
    x1, x2 = torch.randn(2, 1, 1, 64, 64)
    with torch.no_grad():
        f1, f2 = (net.body(torch.nn.functional.pixel_unshuffle(x, net.unshuffle)) for x in (x1, x2))
    assert float((f1 - f2).std()) > 0.1
