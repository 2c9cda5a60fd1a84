"""One precision vocabulary for train, infer, validate and export (roofmapnet.utils.device)."""

from __future__ import annotations

import pytest
import torch

from roofmapnet.errors import ConfigError
from roofmapnet.export.onnx import export_precision
from roofmapnet.train.trainer import lightning_precision as train_precision
from roofmapnet.utils.device import (
    EXPORT_PRECISIONS,
    INFER_PRECISIONS,
    TRAIN_PRECISIONS,
    Precision,
    autocast,
    choose_precision,
    parse_precision,
    resolve_precision,
)

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("32", Precision.fp32),
        ("32-true", Precision.fp32),
        (" FP32 ", Precision.fp32),
        (32, Precision.fp32),
        ("16", Precision.fp16),
        ("16-mixed", Precision.fp16),
        ("fp16", Precision.fp16),
        ("bf16", Precision.bf16),
        ("bf16-mixed", Precision.bf16),
        ("auto", Precision.auto),
        (Precision.bf16, Precision.bf16),
    ],
)
def test_every_spelling_maps_to_one_precision(spelling: str | int, expected: Precision) -> None:
    assert parse_precision(spelling) is expected


def test_lightning_names_and_dtypes() -> None:
    assert [p.lightning for p in TRAIN_PRECISIONS] == ["32-true", "16-mixed", "bf16-mixed", "64-true"]
    assert [p.dtype for p in INFER_PRECISIONS if p is not Precision.auto] == [
        torch.float32,
        torch.bfloat16,
        torch.float16,
    ]
    with pytest.raises(ValueError, match="choose_precision"):
        _ = Precision.auto.lightning
    with pytest.raises(ValueError, match="choose_precision"):
        _ = Precision.auto.dtype


def test_commands_share_the_vocabulary_within_their_choices() -> None:
    # The seed's `--precision 16` means fp16 mixed precision to train, infer and export alike.
    assert train_precision("16") == "16-mixed"
    assert train_precision("fp16") == "16-mixed"
    assert resolve_precision("16", CPU)[0] is None  # infer: fp16 autocast needs CUDA (notice, fp32)
    assert export_precision("16") == "fp16"
    assert export_precision(Precision.fp32) == "fp32"
    assert (Precision.fp32, Precision.fp16) == EXPORT_PRECISIONS
    for bad, choices in (("bf16", EXPORT_PRECISIONS), ("auto", TRAIN_PRECISIONS), ("64", INFER_PRECISIONS)):
        with pytest.raises(ConfigError, match=f"^precision {bad}: expected one of") as err:
            parse_precision(bad, choices)
        assert err.value.exit_code == 2


def test_auto_is_choose_precision() -> None:
    chosen = choose_precision(CPU)
    assert chosen in (Precision.fp32, Precision.bf16)
    expected = None if chosen is Precision.fp32 else chosen.dtype
    assert resolve_precision("auto", CPU) == (expected, None)


def test_autocast_contexts() -> None:
    x = torch.ones(4, 4)
    for spec in ("32", Precision.fp32, None, torch.float32):
        with autocast(CPU, spec):
            assert (x @ x).dtype == torch.float32
    for spec in ("bf16", torch.bfloat16):
        with autocast(CPU, spec):
            assert (x @ x).dtype == torch.bfloat16
    with autocast(CPU, "16"):  # falls back to fp32 on a CPU, as `roofmap infer --precision 16` does
        assert (x @ x).dtype == torch.float32


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "fma"}, Precision.fp32),
        ({"avx2", "avx512f", "avx512_bf16"}, Precision.fp32),  # native bf16 dot products, but no AMX
        ({"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}, Precision.bf16),
    ],
)
def test_auto_picks_bf16_only_with_amx(monkeypatch: pytest.MonkeyPatch, flags: set[str], expected: Precision) -> None:
    from roofmapnet.utils import device

    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset(flags))
    assert choose_precision(CPU) is expected
    assert device.cpu_has_amx_bf16() is (expected is Precision.bf16)
    assert resolve_precision("auto", CPU) == (None if expected is Precision.fp32 else torch.bfloat16, None)
    assert device.cpu_supports_bf16() is ("avx512_bf16" in flags or "amx_bf16" in flags)
    text = device.cpu_description()
    assert "torch capability" in text
    assert ("amx_bf16" in text) is ("amx_bf16" in flags)


def test_auto_on_cuda_is_fp32() -> None:
    # The rule only looks at the device type: a CUDA device object needs no GPU to be built.
    assert choose_precision(torch.device("cuda")) is Precision.fp32
    assert choose_precision(torch.device("cuda:1")) is Precision.fp32
