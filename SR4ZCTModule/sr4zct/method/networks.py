"""2-D image-to-image networks for SR4ZCT, all residual: ``output = input + correction``.

The input of every network is the linearly upsampled (blurred) image, normalised; the last layer is
zero-initialised so an untrained network is exactly the identity, i.e. plain linear interpolation.

* ``"default"``: :class:`ResidualCNN`, a plain stack of 3x3 convolutions. With ``unshuffle=2`` the image is
  first folded into 4 half-resolution channels (pixel unshuffle), which quarters the cost per layer and
  doubles the receptive field; that is the fast CPU default.
* ``"msd"``: :class:`MSDNet`, the mixed-scale dense network of Pelt & Sethian (PNAS 2018) used by the
  SR4ZCT paper: 100 layers of width 1, dilations cycling 1..10, every layer sees the input and all
  previous feature maps, a 1x1 output layer over all of them.

Use :func:`build_network` with a registry name and a config dict; :func:`network_config` returns the
config needed to rebuild a network (saved with the model).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["MSDNet", "NETWORKS", "ResidualCNN", "build_network", "network_config"]


class ResidualCNN(nn.Module):
    """Residual stack of 3x3 convolutions with ReLU.

    Parameters
    ----------
    layers : number of convolutions (including the first and the output one), >= 2.
    channels : feature channels of the hidden layers.
    unshuffle : 1 works at full resolution; 2 folds 2x2 pixel blocks into channels first.
    """

    def __init__(self, layers: int = 8, channels: int = 32, unshuffle: int = 1):
        super().__init__()
        if layers < 2:
            raise ValueError("ResidualCNN needs at least 2 layers")
        if unshuffle not in (1, 2, 4):
            raise ValueError("unshuffle must be 1, 2 or 4")
        self.layers = int(layers)
        self.channels = int(channels)
        self.unshuffle = int(unshuffle)
        io_ch = unshuffle * unshuffle
        convs: list[nn.Module] = [nn.Conv2d(io_ch, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            convs += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*convs)
        for conv in self.body:
            if isinstance(conv, nn.Conv2d):
                # He initialisation keeps the signal's scale through a plain ReLU stack. With PyTorch's
                # default (variance 1/3 of He's) the input fades below the biases after a few layers:
                # a 12 x 40 network then sat at the identity for 18,858 steps (45 min) on vhm-head.
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                nn.init.zeros_(conv.bias)
        self.head = nn.Conv2d(channels, io_ch, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def halo_px(self) -> int:
        """Receptive-field radius in pixels (margin a tile needs on each side)."""
        return self.layers * self.unshuffle + self.unshuffle

    @property
    def multiple_px(self) -> int:
        """Image height and width must be multiples of this (padding is done in :meth:`forward`)."""
        return self.unshuffle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.unshuffle
        if s == 1:
            return x + self.head(self.body[1:](self._first(x)))
        h, w = x.shape[-2:]
        ph, pw = (-h) % s, (-w) % s
        xp = nn.functional.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
        y = self._first(nn.functional.pixel_unshuffle(xp, s))
        y = nn.functional.pixel_shuffle(self.head(self.body[1:](y)), s)
        return x + y[..., :h, :w]

    def _first(self, x: torch.Tensor) -> torch.Tensor:
        """The first convolution in float32 even under autocast. In bf16 the input itself would be rounded
        (near water, normalised 1, to steps of 8 HU), detail the network could not restore: on a soft-tissue
        case bf16 training lost 0.5 dB against fp32 that way, 0.06 dB with this layer in float32. The
        layer has few input channels, so it costs little."""
        if x.device.type not in ("cpu", "cuda"):
            return self.body[0](x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.body[0](x.float())


class MSDNet(nn.Module):
    """Mixed-scale dense network (Pelt & Sethian 2018), residual, single channel in and out.

    Layer ``i`` is a 3x3 convolution with dilation ``dilations[i % len(dilations)]`` over the input and the
    outputs of all previous layers, producing ``width`` channels, followed by ReLU. The output is a 1x1
    convolution over the input and all layer outputs (zero-initialised, added to the input).
    """

    def __init__(self, depth: int = 100, width: int = 1, max_dilation: int = 10):
        super().__init__()
        self.depth = int(depth)
        self.width = int(width)
        self.max_dilation = int(max_dilation)
        self.dilations = [1 + (i % self.max_dilation) for i in range(self.depth)]
        self.convs = nn.ModuleList()
        for i, dil in enumerate(self.dilations):
            conv = nn.Conv2d(1 + i * width, width, 3, padding=dil, dilation=dil, padding_mode="reflect")
            # MS-D initialisation: normal with std sqrt(2 / (fan_in * 9)) as in the reference code
            nn.init.normal_(conv.weight, std=(2.0 / ((1 + i * width) * 9)) ** 0.5)
            nn.init.zeros_(conv.bias)
            self.convs.append(conv)
        self.out = nn.Conv2d(1 + depth * width, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def halo_px(self) -> int:
        return int(sum(self.dilations))

    @property
    def multiple_px(self) -> int:
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            # autograd needs every layer's input kept intact: concatenate (O(depth^2) copies)
            feats = x
            for conv in self.convs:
                feats = torch.cat([feats, torch.relu(conv(feats))], dim=1)
            return x + self.out(feats)
        n, _, h, w = x.shape
        # inference: one preallocated buffer for the input and all feature maps, no copies
        buf = x.new_empty((n, 1 + self.depth * self.width, h, w))
        buf[:, :1] = x
        for i, conv in enumerate(self.convs):
            c = 1 + i * self.width
            buf[:, c : c + self.width] = torch.relu(conv(buf[:, :c]))
        return x + self.out(buf)


NETWORKS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "default": (ResidualCNN, {"layers": 8, "channels": 48, "unshuffle": 2}),
    "msd": (MSDNet, {"depth": 100, "width": 1, "max_dilation": 10}),
}


def build_network(name: str = "default", config: dict[str, Any] | None = None) -> nn.Module:
    """Instantiate a registered network; ``config`` overrides the registry defaults."""
    if name not in NETWORKS:
        from sr4zct.errors import ParameterError

        raise ParameterError(f"Unknown network {name!r}; choose one of {', '.join(sorted(NETWORKS))}.")
    cls, defaults = NETWORKS[name]
    kwargs = {**defaults, **(config or {})}
    return cls(**kwargs)


def network_config(model: nn.Module) -> dict[str, Any]:
    """The constructor arguments that rebuild ``model`` (stored in saved model files)."""
    if isinstance(model, ResidualCNN):
        return {"layers": model.layers, "channels": model.channels, "unshuffle": model.unshuffle}
    if isinstance(model, MSDNet):
        return {"depth": model.depth, "width": model.width, "max_dilation": model.max_dilation}
    raise TypeError(f"not an SR4ZCT network: {type(model).__name__}")
