"""Docs stay true: the generated references are fresh, every config key is documented, the README's commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from roofmapnet.config.schema import RootConfig
from roofmapnet.docgen import DOCS, cli_markdown, config_markdown

REPO = Path(__file__).resolve().parents[2]


def test_cli_reference_is_fresh() -> None:
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == cli_markdown(), "run `python -m roofmapnet.docgen`"


def test_config_reference_is_fresh() -> None:
    assert (DOCS / "config.md").read_text(encoding="utf-8") == config_markdown(), "run `python -m roofmapnet.docgen`"


def _leaf_keys(model: type, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        ann = field.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            keys.extend(_leaf_keys(ann, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_every_config_key_is_in_the_reference() -> None:
    text = (DOCS / "config.md").read_text(encoding="utf-8")
    for key in _leaf_keys(RootConfig):
        assert f"`{key}`" in text, key


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors of a markdown text: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.replace("`", "").lower()).replace(" ", "-") for h in headings}


def _assert_link(source: Path, target: str) -> None:
    path, _, fragment = target.partition("#")
    file = (source.parent / path).resolve() if path else source
    assert file.is_file(), f"{source.name}: {target}"
    if fragment and file.suffix == ".md":
        assert fragment in _anchors(file.read_text(encoding="utf-8")), f"{source.name}: {target}"


def test_readme_and_docs_links_point_at_files_and_headings() -> None:
    for source in [REPO / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = source.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if not target.startswith(("http://", "https://", "mailto:")):
                _assert_link(source, target)


def test_readme_commands_exist() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    cli = cli_markdown()
    for command in set(re.findall(r"^roofmap ([a-z]+)", readme, flags=re.M)):
        assert f"roofmap {command}" in cli, command
    # The README's test command is what CI runs.
    assert "bash .ci/run" in readme
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "python -m pytest" in ci
    assert "pip install -q torch==2.13.0" in ci
