"""``roofmap export``: the export pipeline, ONNX / TorchScript / state-dict exports, runtimes, parity and the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from roofmapnet import __version__
from roofmapnet.cli import export as cli_export
from roofmapnet.config import RootConfig, load_config
from roofmapnet.config.schema import InferConfig
from roofmapnet.errors import CheckpointError, RoofMapError
from roofmapnet.export import parity as parity_mod
from roofmapnet.export.onnx import check_trace_device, export_onnx
from roofmapnet.export.parity import (
    TOLERANCES,
    Tolerance,
    check_parity,
    compare_wireframes,
    exported_predictor,
    normalise,
    parity_images,
    to_pixels,
)
from roofmapnet.export.pipeline import OUTPUT_NAMES, ExportPipeline, export_config, ieee_fp32, with_config
from roofmapnet.export.runtime import (
    OnnxModel,
    TorchScriptModel,
    is_exported_model,
    load_exported_model,
)
from roofmapnet.export.state_dict import export_state_dict, sidecar_path
from roofmapnet.export.torchscript import export_torchscript
from roofmapnet.inference.predictor import Predictor
from roofmapnet.inference.runner import run_inference
from roofmapnet.models.loading import SIDECAR_FORMAT, load_model
from roofmapnet.models.outputs import Wireframe
from roofmapnet.models.roofmapnet import RoofMapNet

TESTS = Path(__file__).resolve().parents[1]
TINY_YAML = TESTS.parent / "config" / "presets" / "tiny.yaml"
MANIFEST = TESTS / "data" / "roofmapnet_state_dict_manifest.json"
#: Score threshold of the test model: the flat grey image has no line above it, the other two images have some.
SCORE_THRESHOLD = 0.5103


# ------------------------------------------------------------------------------------------------ fixtures
pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_model(cfg: RootConfig, seed: int = 1) -> RoofMapNet:
    """A tiny untrained model whose line scores differ enough between images (fc2's last layer × 10)."""
    torch.manual_seed(seed)
    model = RoofMapNet(cfg.model).eval()
    with torch.no_grad():
        model.detection.fc2[-1].weight.mul_(10.0)
    return model


@pytest.fixture(scope="module")
def cfg() -> RootConfig:
    return load_config(TINY_YAML, {"model.line_score_thres": SCORE_THRESHOLD})


@pytest.fixture(scope="module")
def model(cfg: RootConfig) -> RoofMapNet:
    return _tiny_model(cfg)


@pytest.fixture(scope="module")
def images(cfg: RootConfig) -> list[tuple[str, np.ndarray]]:
    return parity_images(cfg.model)


@pytest.fixture(scope="module")
def eager(model: RoofMapNet, images: list[tuple[str, np.ndarray]]) -> list[Wireframe]:
    """PyTorch eager wireframes of the three synthetic images; checks the test's premise (some empty, some not)."""
    wfs = model.predict(normalise(to_pixels([im for _, im in images]), model.cfg))
    counts = [len(w.scores) for w in wfs]
    assert counts[0] > 0, counts
    assert counts[1] > 0, counts
    assert counts[2] == 0, counts
    all_scores = model.predict(normalise(to_pixels([im for _, im in images]), model.cfg), score_threshold=0.0)
    gap = min(float((w.scores - SCORE_THRESHOLD).abs().min()) for w in all_scores)
    assert gap > 2e-4  # no line within 2× the fp32 tolerance of the threshold: no borderline line may be excused
    return wfs


@pytest.fixture(scope="module")
def onnx_path(model: RoofMapNet, cfg: RootConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(model, cfg, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="module")
def onnx_model(onnx_path: Path) -> OnnxModel:
    return OnnxModel(onnx_path, providers=["CPUExecutionProvider"], threads=1)


@pytest.fixture(scope="module")
def ts_path(model: RoofMapNet, cfg: RootConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_torchscript(model, cfg, tmp_path_factory.mktemp("ts") / "tiny.ts")


def _pixels(images: list[tuple[str, np.ndarray]]) -> torch.Tensor:
    return to_pixels([im for _, im in images])


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def _assert_same(ref: list[Wireframe], got: list[Wireframe], score_tol: float, coord_tol: float) -> None:
    """Same line / junction counts and, line by line in score order, the same lines and scores within tolerance."""
    assert len(ref) == len(got)
    for r, g in zip(ref, got, strict=True):
        assert r.lines.shape == g.lines.shape
        assert r.junctions.shape == g.junctions.shape
        assert _max_diff(r.scores, g.scores) <= score_tol
        assert _max_diff(r.lines, g.lines) <= coord_tol
        assert _max_diff(r.junctions, g.junctions) <= coord_tol
        assert _max_diff(r.junction_scores, g.junction_scores) <= score_tol
        assert r.heatmap_size == g.heatmap_size
        assert r.image_size == g.image_size


# ------------------------------------------------------------------------------------------------ pipeline
def test_pipeline_eager_is_bit_identical_to_predict(
    model: RoofMapNet, images: list[tuple[str, np.ndarray]], eager: list[Wireframe]
) -> None:
    pipe = ExportPipeline(model).eval()
    pixels = _pixels(images)
    with torch.no_grad():
        lines, scores, counts, junc, jscores, jcounts = pipe(pixels, *pipe.default_thresholds())
    assert counts.tolist() == [len(w.scores) for w in eager]
    assert lines.shape == (3, max(counts.tolist()), 2, 2)
    for i, wf in enumerate(eager):
        n, k = int(counts[i]), int(jcounts[i])
        assert torch.equal(scores[i, :n], wf.scores)
        assert torch.equal(lines[i, :n].flip(-1) / 4, wf.lines)  # (x, y) input pixels -> (y, x) heatmap
        assert torch.equal(jscores[i, :k], wf.junction_scores)
        assert torch.equal(junc[i, :k].flip(-1) / 4, wf.junctions)
        assert not lines[i, n:].any()
        assert not scores[i, n:].any()
        assert not junc[i, k:].any()
        assert torch.all(wf.scores[:-1] >= wf.scores[1:])
    # Nothing above the threshold anywhere: empty padded outputs, junctions still there.
    with torch.no_grad():
        lines, scores, counts, _, _, jcounts = pipe(pixels, torch.tensor(1.0), torch.tensor(0.008))
    assert lines.shape == (3, 0, 2, 2)
    assert scores.shape == (3, 0)
    assert counts.tolist() == [0, 0, 0]
    assert (jcounts >= 2).all()


def test_half_precision_tracing_of_a_full_size_model_is_refused_on_cpu(tmp_path: Path) -> None:
    big = load_config(TINY_YAML, {"model.image_size": 256, "model.heatmap_size": 64})
    torch.manual_seed(0)
    net = RoofMapNet(big.model).eval()
    with pytest.raises(RoofMapError, match=r"^precision fp16: .*export with device cuda") as info:
        export_onnx(net, big, tmp_path / "half.onnx", precision="fp16")
    assert info.value.exit_code == 2
    with pytest.raises(RoofMapError, match=r"^precision fp16"):
        export_torchscript(net, big, tmp_path / "half.ts", precision="fp16")
    assert list(tmp_path.iterdir()) == []
    check_trace_device("fp16", torch.device("cpu"), 128)  # small models are traced on CPU (as in these tests)
    check_trace_device("fp32", torch.device("cpu"), 4096)


def test_export_config_caps_junctions(cfg: RootConfig, model: RoofMapNet) -> None:
    capped = export_config(cfg, 5)
    assert capped.model.n_dyn_junc == 5
    assert cfg.model.n_dyn_junc == 20
    clone = with_config(model, capped.model)
    assert clone.cfg.n_dyn_junc == 5
    assert clone.detection is model.detection
    assert export_config(cfg, None) is cfg
    with pytest.raises(RoofMapError, match=r"^max_junctions 21: must be between 2 and model.n_dyn_junc \(20\)"):
        export_config(cfg, 21)


# ------------------------------------------------------------------------------------------------ ONNX
def test_onnx_graph_is_dynamic_and_self_contained(onnx_path: Path, cfg: RootConfig) -> None:
    proto = onnx.load(str(onnx_path))
    ops = {n.op_type for n in proto.graph.node}
    assert {"NonZero", "TopK", "Range", "Conv", "Sigmoid"} <= ops  # NMS/top-K/pairs/verifier inside the graph
    assert "Loop" not in ops
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert dims["image"] == ["batch", 3, 64, 64]
    out_dims = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES)
    assert out_dims["lines"] == ["batch", "max_lines", 2, 2]
    assert out_dims["junctions"] == ["batch", "max_junctions", 2]
    # Thresholds are overridable initializers: only the image is required.
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]
    assert sorted(i.name for i in sess.get_overridable_initializers()) == ["junction_threshold", "score_threshold"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["roofmapnet.config"]) == cfg.model_dump(mode="json")
    assert json.loads(meta["input_size"]) == [64, 64]
    assert json.loads(meta["heatmap_size"]) == [16, 16]
    assert json.loads(meta["mean"]) == list(cfg.model.image.mean)
    assert json.loads(meta["stddev"]) == list(cfg.model.image.stddev)
    assert float(meta["score_threshold"]) == SCORE_THRESHOLD
    assert float(meta["junction_threshold"]) == 0.008
    assert meta["roofmapnet.version"] == __version__
    assert meta["roofmapnet.contract_version"] == "1"
    assert meta["precision"] == "fp32"
    assert meta["opset"] == "17"


def test_onnx_matches_eager_on_several_images_and_batch_sizes(
    onnx_model: OnnxModel, model: RoofMapNet, images: list[tuple[str, np.ndarray]], eager: list[Wireframe]
) -> None:
    assert onnx_model.cfg == load_config(TINY_YAML, {"model.line_score_thres": SCORE_THRESHOLD})
    pixels = _pixels(images)
    _assert_same(eager, onnx_model.predict_pixels(pixels), score_tol=1e-4, coord_tol=1e-4)
    # Batch of one (traced with two), and another junction threshold (other K per image) through the input.
    single = onnx_model.predict_pixels(pixels[1:2])
    _assert_same(eager[1:2], single, score_tol=1e-4, coord_tol=1e-4)
    ref = model.predict(normalise(pixels, model.cfg), junction_threshold=0.5, score_threshold=0.0)
    got = onnx_model.predict_pixels(pixels, junction_threshold=0.5, score_threshold=0.0)
    assert [len(w.junction_scores) for w in got] == [len(w.junction_scores) for w in ref]
    assert [len(w.junction_scores) for w in ref] != [len(w.junction_scores) for w in eager]
    _assert_same(ref, got, score_tol=1e-4, coord_tol=1e-4)
    # The raw padded contract: only the image fed, defaults from the initializers.
    raw = onnx_model.session.run(None, {"image": pixels.numpy()})
    assert raw[2].tolist() == [len(w.scores) for w in eager]
    assert raw[0].shape[1] == max(raw[2])


def test_parity_report_of_onnx(
    onnx_model: OnnxModel, model: RoofMapNet, images: list[tuple[str, np.ndarray]], eager: list[Wireframe]
) -> None:
    predict = exported_predictor(onnx_model, score_threshold=SCORE_THRESHOLD, junction_threshold=0.008)
    report = check_parity(model, predict, images, label="onnx fp32")
    assert report.passed, [im.reason for im in report.images]
    assert [im.ref_lines for im in report.images] == [len(w.scores) for w in eager]
    assert [im.matched for im in report.images] == [im.ref_lines for im in report.images]
    assert report.images[2].ref_lines == report.images[2].exp_lines == 0
    assert 0.0 <= report.max_score_diff <= 1e-4
    assert all(im.borderline == 0 and im.tie_flipped == 0 for im in report.images)

    def perturbed(pixels: torch.Tensor) -> list[Wireframe]:
        out = predict(pixels)
        out[0].scores = out[0].scores + 5e-4
        return out

    bad = check_parity(model, perturbed, images, label="perturbed")
    assert not bad.passed
    assert not bad.images[0].passed
    assert bad.images[1].passed
    assert "max |Δscore| 0.0005" in bad.images[0].reason


def test_onnx_fp16_export_within_the_fp16_tolerance(
    model: RoofMapNet, cfg: RootConfig, images: list[tuple[str, np.ndarray]], tmp_path: Path
) -> None:
    path = export_onnx(model, cfg, tmp_path / "half.onnx", precision="fp16", opset=18)
    proto = onnx.load(str(path))
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in proto.graph.initializer)
    half = OnnxModel(path, providers=["CPUExecutionProvider"], threads=1)
    assert half.info.precision == "fp16"
    assert half.info.metadata["opset"] == "18"
    predict = exported_predictor(half, score_threshold=SCORE_THRESHOLD, junction_threshold=0.008)
    report = check_parity(model, predict, images, label="onnx fp16", precision="fp16")
    assert report.passed, [im.reason for im in report.images]
    assert report.tolerance == TOLERANCES["fp16"]
    assert 0.0 < report.max_score_diff <= 2e-2  # half precision is not bit-exact, but close


# ------------------------------------------------------------------------------------------------ TorchScript
def test_torchscript_matches_eager_and_loads_without_roofmapnet(
    ts_path: Path, model: RoofMapNet, images: list[tuple[str, np.ndarray]], eager: list[Wireframe], tmp_path: Path
) -> None:
    ts = TorchScriptModel(ts_path)
    assert ts.info.config == load_config(TINY_YAML, {"model.line_score_thres": SCORE_THRESHOLD})
    assert ts.info.format == "roofmapnet-torchscript"
    assert ts.info.precision == "fp32"
    pixels = _pixels(images)
    _assert_same(eager, ts.predict_pixels(pixels), score_tol=1e-5, coord_tol=1e-5)
    _assert_same(eager[:1], ts.predict_pixels(pixels[:1]), score_tol=1e-5, coord_tol=1e-5)
    # A fresh interpreter in which importing roofmapnet fails: only torch.jit is needed.
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["roofmapnet"] = None
        import numpy as np, torch
        torch.set_num_threads(1)
        extra = {{"roofmapnet.json": ""}}
        m = torch.jit.load({str(ts_path)!r}, _extra_files=extra)
        x = torch.from_numpy(np.load({str(tmp_path / "pixels.npy")!r}))
        lines, scores, counts, junc, jscores, jcounts = m(x)
        strict = m(x, 1.0)[2]
        meta = json.loads(extra["roofmapnet.json"])
        print(json.dumps({{"counts": counts.tolist(), "top": scores[:, 0].tolist() if scores.shape[1] else [],
                          "strict": strict.tolist(), "input_size": json.loads(meta["input_size"])}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["counts"] == [len(w.scores) for w in eager]
    assert got["strict"] == [0, 0, 0]
    assert np.allclose(got["top"][:2], [float(w.scores[0]) for w in eager[:2]], atol=1e-6)
    assert got["input_size"] == [64, 64]


def test_torchscript_fp32_archive_keeps_tf32_off_in_every_convolution(ts_path: Path) -> None:
    # A trace records cuDNN's allow_tf32 flag (True by default) as the last argument of each aten::_convolution;
    # an fp32 export must compute in fp32 on a GPU too, so the exporter traces with TF32 off.
    graph = TorchScriptModel(ts_path).module.inlined_graph
    convs = [node for node in graph.nodes() if node.kind() == "aten::_convolution"]
    assert convs
    flags = {node.inputsAt(node.inputsSize() - 1).toIValue() for node in convs}
    assert flags == {False}


# ------------------------------------------------------------------------------------------------ state dict
def test_state_dict_export_has_the_official_keys_and_reloads(
    model: RoofMapNet, cfg: RootConfig, images: list[tuple[str, np.ndarray]], tmp_path: Path
) -> None:
    manifest = json.loads(MANIFEST.read_text())
    weights, side = export_state_dict(RoofMapNet(RootConfig().model), RootConfig(), tmp_path / "official.pth")
    sd = torch.load(weights, weights_only=True)
    got = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()]
    assert got == [(e["key"], e["shape"], e["dtype"]) for e in manifest["entries"]]
    assert side == tmp_path / "official.pth.json" == sidecar_path(weights)
    meta = json.loads(side.read_text())
    assert meta["format"] == SIDECAR_FORMAT
    assert meta["version"] == __version__
    assert meta["config"] == RootConfig().model_dump(mode="json")
    # The tiny model: reloads with its own config and predicts bit-identically; fp16 halves the floats.
    weights, _ = export_state_dict(model, cfg, tmp_path / "tiny.pth")
    reloaded, root = load_model(weights)
    assert root == cfg
    pixels = normalise(_pixels(images), cfg.model)
    _assert_same(model.predict(pixels), reloaded.predict(pixels), score_tol=0.0, coord_tol=0.0)
    half, _ = export_state_dict(model, cfg, tmp_path / "half.pth", precision="fp16")
    sd = torch.load(half, weights_only=True)
    assert sd["detection.fc1.weight"].dtype == torch.float16
    assert sd["detection.backbone.backbone.bn1.num_batches_tracked"].dtype == torch.int64
    assert load_model(half)[1] == cfg


# ------------------------------------------------------------------------------------------------ infer
def _write_png(path: Path, height: int, width: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3)), np.ones((8, 8, 1)))
    Image.fromarray(base[:height, :width].astype(np.uint8)).save(path)
    return path


def test_infer_with_the_onnx_model_writes_the_same_json(
    onnx_model: OnnxModel, model: RoofMapNet, cfg: RootConfig, tmp_path: Path
) -> None:
    inputs = [_write_png(tmp_path / "a.png", 80, 120, 0), _write_png(tmp_path / "b.png", 64, 64, 1)]
    options = InferConfig(outputs=("json",), workers=0, threshold=0.3)
    docs: dict[str, list[dict[str, Any]]] = {}
    for name, net in (("torch", model), ("onnx", onnx_model)):
        predictor = Predictor(net, cfg, "cpu", checkpoint="model")
        report = run_inference(predictor, inputs, tmp_path / name, options)
        assert report.exit_code == 0
        assert len(report.results) == 2
        docs[name] = [json.loads((tmp_path / name / f"{p.stem}.json").read_text()) for p in inputs]
    for ref, got in zip(docs["torch"], docs["onnx"], strict=True):
        assert len(ref["lines"]) > 0
        assert set(ref) == set(got)
        for key in ref.keys() - {"lines", "scores", "junctions", "junction_scores"}:
            assert ref[key] == got[key], key
        for key, tol in (("lines", 2e-3), ("junctions", 2e-3), ("scores", 1e-4), ("junction_scores", 1e-4)):
            assert np.asarray(ref[key]).shape == np.asarray(got[key]).shape, key
            assert np.allclose(ref[key], got[key], atol=tol, rtol=0), key


def test_cli_infer_with_model_onnx_equals_checkpoint_path(
    model: RoofMapNet, cfg: RootConfig, onnx_path: Path, tmp_path: Path
) -> None:
    """`roofmap infer --model model.onnx` writes the same JSON as `roofmap infer --checkpoint weights`."""
    from typer.testing import CliRunner

    from roofmapnet.cli.app import app

    weights, _ = export_state_dict(model, cfg, tmp_path / "weights.pth")
    image = _write_png(tmp_path / "roof.png", 96, 128, 3)
    docs = {}
    for flag, path in (("--checkpoint", weights), ("--model", onnx_path)):
        out = tmp_path / flag.strip("-")
        args = ["infer", flag, str(path), str(image), "--out", str(out), "--outputs", "json", "--device", "cpu"]
        result = CliRunner().invoke(app, [*args, "--threshold", str(SCORE_THRESHOLD), "--workers", "0"])
        assert result.exit_code == 0, result.output
        docs[flag] = json.loads((out / "roof.json").read_text())
    ref, got = docs["--checkpoint"], docs["--model"]
    assert len(ref["lines"]) > 0
    assert (ref["width"], ref["height"]) == (got["width"], got["height"]) == (128, 96)
    for key, tol in (("lines", 2e-3), ("scores", 1e-4), ("junctions", 2e-3)):
        assert np.asarray(ref[key]).shape == np.asarray(got[key]).shape, key
        assert np.allclose(ref[key], got[key], atol=tol, rtol=0), key
    both = CliRunner().invoke(
        app, ["infer", "--model", str(onnx_path), "--checkpoint", str(weights), str(image), "-o", str(tmp_path)]
    )
    assert both.exit_code == 2


# ------------------------------------------------------------------------------------------------ errors
def test_runtime_rejects_corrupt_and_foreign_files(onnx_path: Path, ts_path: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(onnx_path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"truncated\.onnx: not a loadable ONNX model \("):
        load_exported_model(truncated)
    foreign = onnx.load(str(onnx_path))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(CheckpointError, match=r"foreign\.onnx: metadata field 'roofmapnet\.format' is missing"):
        OnnxModel(tmp_path / "foreign.onnx")
    weights = tmp_path / "weights.pt"
    torch.save({"a": torch.zeros(1)}, weights)
    assert not is_exported_model(weights)
    assert is_exported_model(ts_path)
    assert is_exported_model(onnx_path)
    with pytest.raises(CheckpointError, match=r"weights\.pt: not an exported model"):
        load_exported_model(weights)
    with pytest.raises(CheckpointError, match=r"missing\.onnx: file not found"):
        load_exported_model(tmp_path / "missing.onnx")
    ts, _ = load_exported_model(ts_path)
    assert isinstance(ts, TorchScriptModel)


def _cli(args: list[str]) -> Any:
    app = typer.Typer()
    cli_export.register(app)

    @app.callback()
    def _root() -> None:
        """Test root."""

    return CliRunner().invoke(app, ["export", *args], env={"COLUMNS": "200"})


def test_cli_state_dict_with_max_junctions_and_bad_checkpoints(model: RoofMapNet, tmp_path: Path) -> None:
    official = tmp_path / "official.pth"
    torch.save(model.state_dict(), official)  # the official format: a plain state_dict, config from --config
    out = tmp_path / "export" / "tiny.pth"
    result = _cli(
        ["-k", str(official), "-c", str(TINY_YAML), "-f", "state-dict", "-o", str(out), "--max-junctions", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "parity PASS" in result.output
    # 4 junctions -> 6 candidate lines, all above tiny.yaml's threshold 0.1; 4 of 4 junctions on both sides.
    assert re.search(r"synthetic-roofs\s*│\s*6\s*│\s*6\s*│\s*6\s*│\s*0\s*│\s*4/4\s*│", result.output), result.output
    assert json.loads(sidecar_path(out).read_text())["config"]["model"]["n_dyn_junc"] == 4
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(official.read_bytes()[:2000])  # truncated download
    result = _cli(["-k", str(corrupt), "-c", str(TINY_YAML), "-f", "onnx", "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 1
    assert result.output.startswith("error: ")
    assert len(result.output.strip().splitlines()) == 1
    assert "corrupt.pth: corrupt or truncated PyTorch file" in result.output
    other = tmp_path / "other.pth"
    torch.manual_seed(0)
    torch.save(RoofMapNet(model.cfg.model_copy(update={"dim_fc": 32})).state_dict(), other)
    result = _cli(["-k", str(other), "-c", str(TINY_YAML), "-f", "onnx", "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 1
    assert "other.pth: detection.fc2.0.weight has shape [32, 40]" in result.output
    assert not (tmp_path / "x.onnx").exists()
    result = _cli(["-k", str(official), "-c", str(TINY_YAML), "-f", "tflite", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "--format tflite: expected one of onnx, torchscript, state-dict" in result.output


def test_cli_onnx_parity_failure_exits_1_and_keeps_the_file(
    model: RoofMapNet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    official = tmp_path / "official.pth"
    torch.save(model.state_dict(), official)
    # A tolerance no comparison can meet, whatever the CPU's kernels: every difference, even an exact 0, exceeds a
    # negative bound.  Which check trips first (scores, junction ties, coordinates) depends on the last bits of
    # onnxruntime's and torch's kernels (AVX2 and AVX-512/AMX differ), so the test asserts only what it means:
    # parity failed, exit 1, the file is kept.
    monkeypatch.setitem(parity_mod.TOLERANCES, "fp32", Tolerance(score=-1.0, coord=-1.0))
    out = tmp_path / "tiny.onnx"
    result = _cli(["-k", str(official), "-c", str(TINY_YAML), "-f", "onnx", "-o", str(out), "--opset", "17"])
    assert result.exit_code == 1, result.output
    assert "parity FAIL" in result.output
    assert re.search(r"│\s*FAIL\s+\S", result.output), result.output  # a failed row, with its reason
    assert "parity failed on" in result.output
    assert f"{out} was written" in " ".join(result.output.split())
    assert out.is_file()
    assert OnnxModel(out).info.config.model.n_dyn_junc == 20
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_compare_wireframes_excuses_only_legitimate_differences() -> None:
    junc = torch.tensor([[2.5, 3.5], [8.5, 1.5], [5.5, 9.5]])
    jsc = torch.tensor([0.9, 0.9, 0.4])  # junctions 0 and 1 tie

    def wf(
        pairs: list[tuple[int, int]], scores: list[float], j: torch.Tensor = junc, js: torch.Tensor = jsc
    ) -> Wireframe:
        lines = torch.stack([torch.stack([j[a], j[b]]) for a, b in pairs]) if pairs else torch.zeros(0, 2, 2)
        return Wireframe(lines, torch.tensor(scores), j, js, (16, 16), (64, 64))

    tol = Tolerance(score=1e-4, coord=1e-3)

    def compare(ref: Wireframe, got: Wireframe, thr: float = 0.1, k_cap: int = 300, t: Tolerance = tol) -> Any:
        return compare_wireframes(ref, got, score_threshold=thr, junction_threshold=0.008, k_cap=k_cap, tol=t)

    ref = wf([(0, 2), (0, 1)], [0.8, 0.5])
    ok = compare(ref, wf([(0, 2), (0, 1)], [0.80005, 0.5]))
    assert ok.passed
    assert ok.matched == 2
    assert ok.max_score_diff == pytest.approx(5e-5, abs=1e-7)
    assert not compare(ref, wf([(0, 2), (0, 1)], [0.8003, 0.5])).passed
    # Endpoint order swapped between the two tied junctions: excused; with an untied junction: a failure.
    flipped = compare(ref, wf([(0, 2), (1, 0)], [0.8, 0.7]))
    assert flipped.passed
    assert flipped.tie_flipped == 1
    swapped = compare(ref, wf([(2, 0), (0, 1)], [0.8, 0.5]))
    assert not swapped.passed
    assert "other order" in swapped.reason
    # A line missing on one side: excused only at the threshold.
    missing = compare(ref, wf([(0, 2)], [0.8]))
    assert not missing.passed
    assert "1 eager-only" in missing.reason
    border = compare(ref, wf([(0, 2)], [0.8]), thr=0.49995)
    assert border.passed
    assert border.borderline == 1
    # A junction moved inside its pixel is an error, whatever the tolerances; the junction_match fraction
    # (fp16) tolerates it, and then its lines too.
    moved = junc.clone()
    moved[2] += 0.2
    far = compare(ref, wf([(0, 2), (0, 1)], [0.8, 0.5], moved))
    assert not far.passed
    assert "junctions differ (1 eager-only, 1 exported-only)" in far.reason
    assert not compare(ref, wf([(0, 2), (0, 1)], [0.8, 0.5], moved), k_cap=2).passed
    loose = Tolerance(score=1e-4, coord=1e-3, junction_match=0.5)
    tolerated = compare(ref, wf([(0, 2), (0, 1)], [0.8, 0.5], moved), t=loose)
    assert tolerated.passed
    assert tolerated.matched == 1
    assert tolerated.borderline == 2
    # The NMS peak moved to the neighbouring pixel with the same score (a near-tie): excused.
    neighbour = junc.clone()
    neighbour[2] = torch.tensor([6.3, 9.6])
    assert compare(ref, wf([(0, 2), (0, 1)], [0.8, 0.5], neighbour)).passed
    # Another junction at the rank cut (K = n_dyn_junc = 3 on both sides, equal lowest score): excused only then.
    other = junc.clone()
    other[2] = torch.tensor([12.5, 12.5])
    assert compare(ref, wf([(0, 2), (0, 1)], [0.8, 0.5], other), k_cap=3).passed
    assert not compare(ref, wf([(0, 2), (0, 1)], [0.8, 0.5], other), k_cap=300).passed
    empty = compare(wf([], []), wf([], []))
    assert empty.passed
    assert empty.matched == 0
    assert empty.max_score_diff == 0.0


def test_compare_wireframes_excuses_nms_ties_on_a_plateau_of_the_eager_heatmap() -> None:
    # Eager keeps a plateau pixel at (12, 12), the export one at (5, 12), 7 px away from it and from any junction
    # both found: the 3x3-NMS decisions of both pixels are within 1e-7 of a neighbour (a barely trained model).
    common = [[2.5, 3.5], [8.5, 1.5]]
    ref_j = torch.tensor([*common, [12.5, 12.5]])
    exp_j = torch.tensor([*common, [5.5, 12.5]])
    js = torch.tensor([0.9, 0.8, 0.42803279])

    def wf(j: torch.Tensor) -> Wireframe:
        lines = torch.stack([torch.stack([j[0], j[1]]), torch.stack([j[0], j[2]])])
        return Wireframe(lines, torch.tensor([0.7, 0.6]), j, js, (16, 16), (64, 64))

    heat = np.full((16, 16), 0.1, dtype=np.float32)
    heat[2, 3], heat[8, 1] = 0.9, 0.8
    heat[12, 12], heat[12, 13] = 0.42803279, 0.42803270  # eager kept (12, 12) by 1e-7
    heat[5, 12], heat[5, 11] = 0.42803270, 0.42803279  # eager dropped (5, 12) by 1e-7

    def compare(h: np.ndarray | None) -> Any:
        return compare_wireframes(
            wf(ref_j),
            wf(exp_j),
            score_threshold=0.1,
            junction_threshold=0.008,
            k_cap=300,
            tol=TOLERANCES["fp32"],
            heat=h,
        )

    without = compare(None)
    assert not without.passed
    assert "junctions differ (1 eager-only, 1 exported-only)" in without.reason
    tie = compare(heat)
    assert tie.passed, tie.reason
    assert (tie.matched, tie.borderline, tie.matched_junctions) == (1, 2, 2)
    # A clear NMS peak (0.43 against neighbours of 0.1) that the export lost is a real difference.
    peak = heat.copy()
    peak[12, 13] = 0.1
    lost = compare(peak)
    assert not lost.passed
    assert "junctions differ (1 eager-only, 0 exported-only)" in lost.reason


def test_ieee_fp32_switches_tf32_off_and_restores_the_settings() -> None:
    conv = torch.backends.cudnn.conv
    before = (conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
    with ieee_fp32():
        assert (conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == ("ieee", "ieee")
    assert (conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == before
