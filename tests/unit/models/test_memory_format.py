"""Channels-last memory format of the dense part: layout kept end to end, no conversions, same numbers as NCHW."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from roofmapnet.config import ModelConfig
from roofmapnet.models.multitask import stack_maps, upsample_bilinear_aligned
from roofmapnet.models.outputs import HeadOutputs
from roofmapnet.models.roofmapnet import RoofMapNet
from tests.tiny import TINY_MODEL

pytestmark = pytest.mark.usefixtures("one_thread")

MANIFEST = Path(__file__).resolve().parents[2] / "data" / "roofmapnet_state_dict_manifest.json"
CL = torch.channels_last
aten = torch.ops.aten


def _model(channels_last: bool = True, stacks: int = 2) -> RoofMapNet:
    torch.manual_seed(0)
    return RoofMapNet(ModelConfig(**{**TINY_MODEL, "num_stacks": stacks, "channels_last": channels_last}))


def _outputs(out: HeadOutputs) -> list[torch.Tensor]:
    return [out.dghr, out.qcc, out.lmap, out.joff, out.feature]


def _axis_order(t: torch.Tensor) -> tuple[int, ...]:
    """Axes of ``t`` from the slowest- to the fastest-moving in memory (size-1 axes ignored)."""
    axes = [d for d in range(t.dim()) if t.shape[d] > 1]
    return tuple(sorted(axes, key=lambda d: -t.stride(d)))


class LayoutConversions(TorchDispatchMode):
    """Records every copy of an activation map into a different memory layout, forward and backward.

    The same events as ``torch.profiler``'s ``aten::contiguous``/``aten::clone``/``aten::_to_copy`` rows (this is how
    the dense part was inspected, see docs/performance.md), seen at the dispatcher instead: no profiler start-up,
    and the source and destination strides are compared, so only real layout changes count. Activation maps are
    the 4-D and 5-D tensors whose last side is at least ``min_side`` (weights are 1×1, 3×3 or 7×7).
    """

    def __init__(self, min_side: int) -> None:
        super().__init__()
        self.min_side = min_side
        self.found: list[tuple[str, list[int]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        packet = func.overloadpacket
        if packet in (aten.clone, aten._to_copy, aten.copy_):
            src, dst = (args[1], args[0]) if packet is aten.copy_ else (args[0], out)
            if (
                isinstance(src, torch.Tensor)
                and src.dim() >= 4
                and src.shape == dst.shape
                and src.shape[-1] >= self.min_side
                and _axis_order(src) != _axis_order(dst)
            ):
                self.found.append((str(packet), list(src.shape)))
        return out


@pytest.mark.parametrize("train", [False, True])
def test_dense_outputs_stay_channels_last(train: bool) -> None:
    model = _model().train(train)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs
    assert all(m.weight.is_contiguous(memory_format=CL) for m in convs)
    out = model(torch.randn(2, 3, 64, 64))
    assert out.feature.is_contiguous(memory_format=CL)
    for stack in range(out.dghr.shape[0]):
        assert out.dghr[stack].is_contiguous(memory_format=CL)
        assert out.joff[stack, :, 0].is_contiguous(memory_format=CL)
    assert all(out.qcc[s].is_contiguous(memory_format=CL) for s in range(out.qcc.shape[0]))
    x, _ = model.detection.attend(out.feature, out.lmap_prob)
    assert x.is_contiguous(memory_format=CL)


def test_no_layout_conversion_inside_the_dense_part() -> None:
    """Inference and a training forward + backward: only the 3-channel input image is converted, on entry."""
    model = _model().eval()
    images = torch.randn(2, 3, 64, 64)  # NCHW: converted once on entry, which the detector must see
    with torch.no_grad(), LayoutConversions(min_side=16) as conversions:
        model(images)
    assert conversions.found == [("aten.clone", [2, 3, 64, 64])]
    model.train()
    images = images.contiguous(memory_format=CL)
    with LayoutConversions(min_side=8) as conversions:
        outs = _outputs(model(images))
        # Gradients in the outputs' own layout (randn_like preserves strides), as the loss terms produce them.
        torch.autograd.backward(outs, [torch.randn_like(t) for t in outs])
    assert conversions.found == []
    convs = [m for m in model.detection.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.weight.grad is not None for m in convs)


@pytest.mark.parametrize("train", [False, True])
def test_channels_last_matches_nchw(train: bool) -> None:
    cl, nchw = _model(True).train(train), _model(False).train(train)
    assert nchw.memory_format == torch.contiguous_format
    assert cl.memory_format == CL
    images = torch.randn(2, 3, 64, 64)
    a, b = cl(images), nchw(images)
    assert b.feature.is_contiguous()
    assert not b.feature.is_contiguous(memory_format=CL)
    for x, y in zip(_outputs(a), _outputs(b), strict=True):
        # Training-mode BatchNorm over 2 images of 16² amplifies the convolutions' summation-order differences.
        torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-3 if train else 1e-5)
    if train:
        sum(t.square().mean() for t in _outputs(a)).backward()
        sum(t.square().mean() for t in _outputs(b)).backward()
        grads = [(n, p.grad, q.grad) for (n, p), q in zip(cl.named_parameters(), nchw.parameters(), strict=True)]
        assert [n for n, g, h in grads if (g is None) != (h is None)] == []
        assert sum(g is not None for _, g, _ in grads) > 50
        for name, g, h in grads:
            if g is not None:
                torch.testing.assert_close(g, h, rtol=1e-2, atol=1e-3, msg=name)


def test_official_state_dict_unchanged_and_loads_across_layouts() -> None:
    manifest = json.loads(MANIFEST.read_text())
    sd = RoofMapNet(ModelConfig()).state_dict()
    assert [(k, list(v.shape)) for k, v in sd.items()] == [(e["key"], e["shape"]) for e in manifest["entries"]]
    cl, nchw = _model(True).eval(), _model(False).eval()
    torch.manual_seed(1)
    other = RoofMapNet(ModelConfig(**{**TINY_MODEL, "num_stacks": 2, "channels_last": False}))
    nchw_sd = {k: v.contiguous() for k, v in other.state_dict().items()}
    cl.load_state_dict(nchw_sd, strict=True)  # a plain (NCHW) official-style file into the channels_last model
    nchw.load_state_dict(cl.state_dict(), strict=True)  # and back
    assert cl.detection.fc1.weight.is_contiguous(memory_format=CL)
    images = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(cl(images).qcc, nchw(images).qcc, rtol=1e-4, atol=1e-4)


def test_switching_the_memory_format_at_run_time() -> None:
    model = _model(True).eval()
    images = torch.randn(1, 3, 64, 64)
    before = model(images).feature
    model.set_memory_format(torch.contiguous_format)
    after = model(images).feature
    assert after.is_contiguous()
    assert model.detection.fc1.weight.is_contiguous()
    torch.testing.assert_close(before, after, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(8, 8, 16, 16), (5, 7, 10, 14), (1, 3, 2, 6)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_aligned_bilinear_upsampling_matches_interpolate(shape: tuple[int, int, int, int], channels_last: bool) -> None:
    h, w, out_h, out_w = shape
    x = torch.randn(2, 2, h, w, dtype=torch.float64)
    x = x.contiguous(memory_format=CL) if channels_last else x
    x.requires_grad_(True)
    got = upsample_bilinear_aligned(x, (out_h, out_w))
    want = F.interpolate(x, (out_h, out_w), mode="bilinear", align_corners=True)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)  # float32 weights, as PyTorch's own
    assert got.is_contiguous(memory_format=CL) == channels_last or out_h * out_w == 1
    grad = torch.randn_like(got)
    (g_got,) = torch.autograd.grad(got, x, grad)
    (g_want,) = torch.autograd.grad(want, x, grad)
    torch.testing.assert_close(g_got, g_want, rtol=0, atol=1e-5)


def test_stack_maps_keeps_layout() -> None:
    maps = [torch.randn(2, 3, 4, 5).contiguous(memory_format=CL) for _ in range(2)]
    stacked = stack_maps(maps)
    assert torch.equal(stacked, torch.stack(maps))
    assert stacked[1].is_contiguous(memory_format=CL)
    plain = [m.contiguous() for m in maps]
    assert stack_maps(plain).is_contiguous()
