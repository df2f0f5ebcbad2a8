"""Property-based test: model files with hostile metadata end in a usable model or an SR4ZCTError.

A small saved model's payload gets a random list of changes: a field set to a value of any type (None,
bools, huge or negative numbers, NaN, numeric strings, lists, nested dicts, tensors), a field deleted or
added, the network configuration and the normalisation changed key by key, a weight replaced (NaN, wrong
shape, an integer tensor, not a tensor). ``load_model`` (and the up-front ``validate_model_file``) must
then raise the product's exception family with a one-line message, or return a model that applies to an
image with finite values, with metadata that :func:`check_model_geometry` can compare.
"""

from __future__ import annotations

import functools
import io
import math
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sr4zct.errors import SR4ZCTError
from sr4zct.method.networks import build_network
from sr4zct.method.training import Normalisation
from sr4zct.run.model_file import check_model_geometry, load_model, save_model
from sr4zct.run.validation import validate_model_file

FIELDS = (
    "format", "format_version", "sr4zct_version", "torch_version", "network", "network_config",
    "normalisation", "thickness_mm", "spacing_mm", "pixel_spacing_mm", "profile", "seed", "preset",
    "training", "state_dict",
)  # fmt: skip
CONFIG_KEYS = ("layers", "channels", "unshuffle", "depth", "width", "max_dilation", "extra")


@functools.cache
def template() -> bytes:
    model = build_network("default", {"layers": 2, "channels": 4, "unshuffle": 2})
    info = {
        "normalisation": {"offset": 1000.0, "scale": 1000.0},
        "thickness_mm": 3.0,
        "spacing_mm": 2.0,
        "profile": "box",
        "pixel_spacing_mm": (0.8, 0.8),
        "seed": 0,
        "preset": "tiny",
        "training": {"training_steps": 2},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(Path(tmp) / "m.pt", model, network="default", info=info)
        return path.read_bytes()


scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, 2, 3, 4, 8, 64, 65, 512, 513, 3000, 2**31, 10**12]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        ["", "abc", "3", "1e3", "nan", "default", "msd", "cnn", "box", "gaussian", "sr4zct-model"]
    ),
    st.text(max_size=8),
)
value = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from(("offset", "scale", *CONFIG_KEYS)), inner, max_size=3),
    ),
    max_leaves=6,
)
tensor = st.sampled_from(["nan", "inf", "shape", "int", "string", "empty"])
operation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(FIELDS), value),
    st.tuples(st.just("delete"), st.sampled_from(FIELDS)),
    st.tuples(st.just("add"), st.text(max_size=6), value),
    st.tuples(st.just("config"), st.sampled_from(CONFIG_KEYS), scalar),
    st.tuples(st.just("norm"), st.sampled_from(("offset", "scale", "gain")), scalar),
    st.tuples(st.just("weight"), st.integers(0, 10), tensor),
)


def _apply(payload: dict, op: tuple) -> None:
    kind = op[0]
    if kind == "set":
        payload[op[1]] = op[2]
    elif kind == "delete":
        payload.pop(op[1], None)
    elif kind == "add":
        payload[op[1]] = op[2]
    elif kind in ("config", "norm"):
        field = "network_config" if kind == "config" else "normalisation"
        if isinstance(payload.get(field), dict):
            payload[field] = {**payload[field], op[1]: op[2]}
    elif isinstance(payload.get("state_dict"), dict) and payload["state_dict"]:
        state = dict(payload["state_dict"])
        key = sorted(state)[op[1] % len(state)]
        t = state[key]
        if not isinstance(t, torch.Tensor):
            return
        state[key] = {
            "nan": lambda: torch.full(t.shape, float("nan")),  # float even after an "int" step
            "inf": lambda: torch.full(t.shape, float("inf")),
            "shape": lambda: torch.zeros(t.numel() + 1),
            "int": lambda: t.to(torch.int64),
            "string": lambda: "weights",
            "empty": lambda: torch.zeros(0),
        }[op[2]]()
        payload["state_dict"] = state


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(operation, min_size=1, max_size=4))
def test_fuzz_model_metadata(ops):
    payload = torch.load(io.BytesIO(template()), weights_only=True)
    for op in ops:
        _apply(payload, op)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.pt"
        try:
            torch.save(payload, path)
        except Exception:
            return  # torch cannot store this payload: nothing to read back
        outcomes = []
        for call in (validate_model_file, load_model):
            try:
                outcomes.append(call(path))
            except SR4ZCTError as exc:
                assert exc.message and "\n" not in exc.message, exc.message
                outcomes.append(None)
        assert (outcomes[0] is None) == (outcomes[1] is None), "the up-front check and loading disagree"
        if outcomes[1] is None:
            return
        model, info = outcomes[1]
        # usable metadata: the geometry comparison runs (and says yes or no) without another exception
        try:
            check_model_geometry(info, thickness=3.0, spacing=2.0, pixel=(0.8, 0.8), profile="box", path=path)
        except SR4ZCTError:
            pass
        for field in ("thickness_mm", "spacing_mm"):
            assert isinstance(info[field], (int, float)) and math.isfinite(info[field]) and info[field] > 0
        norm = Normalisation(**info["normalisation"]) if "normalisation" in info else Normalisation()
        hu = torch.linspace(-1000.0, 1000.0, 64).reshape(1, 1, 8, 8)
        with torch.no_grad():
            out = norm.inverse(model(norm.forward(hu)))
        assert torch.isfinite(out).all(), "a loaded model gives non-finite values"
