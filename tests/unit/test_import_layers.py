"""The package's import layers (docs/internals.md, "Layers"), checked on the source with ``ast``.

Every ``import`` counts, including those inside functions (a lazy import must not dodge a rule); imports under
``if TYPE_CHECKING:`` do not, since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "roofmapnet"

#: Rank of each layer (a sub-package or a top-level module of ``roofmapnet``): a module may import its own layer
#: and layers of a lower rank only. Layers of the same rank are independent of each other.
RANKS: dict[str, int] = {
    # The package root holds ``__version__`` (imported everywhere) and serves the API's names on first access
    # (``importlib``, no import statement): below everything.
    "__init__": 0,
    "errors": 0,
    "utils": 1,
    "config": 2,
    "models": 3,
    "data": 3,
    "losses": 4,
    "export": 5,
    "inference": 6,
    "evaluation": 7,
    "train": 8,
    "demo": 9,
    "api": 9,
    "cli": 10,
    "docgen": 11,
    "__main__": 11,
}
#: The upward imports there are, each with its reason (module → module it imports).
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("roofmapnet.train.main", "roofmapnet.cli.train"): (
        "the seed's `python -m roofmapnet.train.main` runs `roofmap train`: its options are declared once, by the CLI"
    ),
    ("roofmapnet.data.formats.gis", "roofmapnet.inference.raster.source"): (
        "`preprocess --format gis` reads orthophoto windows as tiled inference does (bands, stretch, nodata)"
    ),
}
#: The only modules outside ``cli/`` that may import Typer (the seed document's two program wrappers).
TYPER_OUTSIDE_CLI = {"roofmapnet.train.main", "roofmapnet.train.preprocess_rid2"}
#: Where Lightning may be imported: the training engine, the DDP predict loop, and the API that passes callbacks.
LIGHTNING_LAYERS = {"train", "api"}
LIGHTNING_MODULES = {"roofmapnet.inference.distributed"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.with_suffix("").relative_to(PACKAGE.parent).parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _layer(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _runtime_imports(path: Path) -> Iterator[tuple[str, int]]:
    """``(imported name, line)`` of every import that can run (``TYPE_CHECKING`` blocks skipped)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level:
            yield f"<relative import level {node.level}>", node.lineno


def _target(name: str) -> str | None:
    """The ``roofmapnet`` module an imported name lives in (a module, or an attribute of one)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _edges() -> Iterator[tuple[str, str, int]]:
    for module, path in MODULES.items():
        for name, line in _runtime_imports(path):
            if name.startswith("roofmapnet"):
                target = _target(name)
                if target is not None and target != module:
                    yield module, target, line


EDGES = sorted(set(_edges()))


def test_every_layer_has_a_rank() -> None:
    assert {_layer(m) for m in MODULES} <= set(RANKS), sorted({_layer(m) for m in MODULES} - set(RANKS))


def test_no_relative_imports() -> None:
    bad = [(m, line) for m, p in MODULES.items() for name, line in _runtime_imports(p) if name.startswith("<")]
    assert not bad


def test_layers_import_only_downwards() -> None:
    upward = [
        f"{source}:{line} imports {target} ({_layer(source)} may not import {_layer(target)})"
        for source, target, line in EDGES
        if _layer(source) != _layer(target)
        and RANKS[_layer(target)] >= RANKS[_layer(source)]
        and (source, target) not in EXCEPTIONS
    ]
    assert not upward, "\n".join(upward)


def test_the_exceptions_are_still_needed() -> None:
    used = {(s, t) for s, t, _ in EDGES}
    assert set(EXCEPTIONS) <= used, sorted(set(EXCEPTIONS) - used)


def test_nothing_outside_cli_imports_cli_but_the_seed_program_and_the_doc_tools() -> None:
    allowed = {"roofmapnet.train.main", "roofmapnet.docgen", "roofmapnet.__main__"}
    bad = [
        f"{s}:{line} imports {t}"
        for s, t, line in EDGES
        if _layer(t) == "cli" and _layer(s) != "cli" and s not in allowed
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("models", {"train", "inference", "evaluation", "export", "cli", "data", "losses", "api", "demo"}),
        ("losses", {"train", "inference", "evaluation", "export", "cli", "data"}),
        ("config", {"models", "data", "train", "inference", "evaluation", "export", "cli"}),
        ("train", {"cli", "api", "demo"}),  # but the listed exception of train/main.py
        ("data", {"models", "losses", "train", "evaluation", "export", "cli", "inference"}),  # ditto (gis)
    ],
)
def test_lower_layers_know_nothing_of_the_upper_ones(layer: str, forbidden: set[str]) -> None:
    bad = [
        f"{s}:{line} imports {t}"
        for s, t, line in EDGES
        if _layer(s) == layer and _layer(t) in forbidden and (s, t) not in EXCEPTIONS
    ]
    assert not bad, "\n".join(bad)


def test_typer_only_in_cli_and_the_seed_wrappers() -> None:
    bad = [
        f"{module}:{line}"
        for module, path in MODULES.items()
        for name, line in _runtime_imports(path)
        if name.split(".")[0] == "typer" and _layer(module) != "cli" and module not in TYPER_OUTSIDE_CLI
    ]
    assert not bad, "\n".join(bad)


def test_lightning_only_in_the_training_engine() -> None:
    bad = [
        f"{module}:{line}"
        for module, path in MODULES.items()
        for name, line in _runtime_imports(path)
        if name.split(".")[0] in ("pytorch_lightning", "lightning")
        and _layer(module) not in LIGHTNING_LAYERS
        and module not in LIGHTNING_MODULES
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for source, target, _ in EDGES:
        graph[source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert not cycles, cycles


def test_the_checker_sees_lazy_imports_and_skips_type_checking_ones(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from roofmapnet.cli.app import app\n"
        "def f():\n"
        "    from roofmapnet.train.run import fit\n"
        "    import typer\n"
    )
    names = [name for name, _ in _runtime_imports(source)]
    assert "roofmapnet.train.run.fit" in names
    assert "typer" in names
    assert "roofmapnet.cli.app.app" not in names
    assert _target("roofmapnet.train.run.fit") == "roofmapnet.train.run"
