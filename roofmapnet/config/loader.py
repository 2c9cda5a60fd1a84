"""Load and validate configuration files.

``load_config(path, overrides)`` reads YAML with a :class:`yaml.SafeLoader` (YAML 1.2 booleans), applies dotted overrides (for
example from CLI flags), resolves relative paths against the config file's folder, validates with the
pydantic schema and returns an immutable :class:`~roofmapnet.config.schema.RootConfig`.  Every problem is
reported as one line naming the source and the dotted field, collected into a :class:`ConfigError`.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from roofmapnet.config.schema import RootConfig
from roofmapnet.errors import ConfigError

#: Where the repository keeps its commented copy of the built-in defaults, relative to the repository root (a
#: test checks that it loads to exactly ``RootConfig()``).  Never read implicitly: without a path,
#: :func:`load_config` returns the built-in defaults, wherever the process was started.
DEFAULT_CONFIG_PATH = Path("config/config.yaml")

OVERRIDE_SOURCE = "command line"
_PATH_FIELDS = (("io", "logdir"), ("io", "datadir"))


class _Yaml12SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 booleans: only true/false, so the loss weight key ``off`` stays a string."""


_Yaml12SafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def safe_load_yaml(text: str) -> Any:
    """Parse YAML safely (no object construction) with YAML 1.2 booleans."""
    return yaml.load(text, Loader=_Yaml12SafeLoader)


#: What a YAML 1.1 reader (PyYAML's ``safe_load``, ruamel in 1.1 mode, ...) turns into ``False`` / ``True``.
_YAML11_BOOLS = {False: ("off", "no", "n", "false"), True: ("on", "yes", "y", "true")}


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """``invalid YAML (line L, column C): problem`` as one line, for every kind of PyYAML error."""
    if isinstance(exc, yaml.reader.ReaderError):  # a byte or character YAML does not allow
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return f"invalid YAML (character {exc.position + 1}): character #x{char:04x} is not allowed in YAML text"
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = getattr(exc, "problem", None) or "invalid YAML"
    return f"invalid YAML{where}: {' '.join(str(problem).split())}"


def _bool_key_problem(
    node: Any, model: type[BaseModel], dotted: tuple[str, ...] = (), seen: set[int] | None = None
) -> str | None:
    """Name the first mapping key that is not a string, with the likely cause when it is a boolean.

    A config that went through a YAML 1.1 tool has the loss weight ``off`` as the key ``false`` (PyYAML reads the
    unquoted word as a boolean and writes it back as one); pydantic would only say "Keys should be strings".
    """
    seen = set() if seen is None else seen
    if not isinstance(node, dict) or id(node) in seen:  # YAML anchors can make a mapping contain itself
        return None
    seen.add(id(node))
    where = ".".join(_printable(p) for p in dotted) or "the top level"
    for key, value in node.items():
        if isinstance(key, bool):
            fields = _known_fields(model, (*dotted, ""))
            meant = [w for w in _YAML11_BOOLS[key] if w in fields and w not in node]
            guess = f"'{meant[0]}'" if meant else "off/on/yes/no"
            word = str(key).lower()
            return (
                f"{where}: the key {word} is a boolean, not a name: an unquoted {guess.strip(chr(39))} (YAML 1.1 "
                f"tools such as PyYAML read off/on/yes/no as booleans and write them back as false/true); write "
                f"the key as {guess} in quotes"
            )
        if not isinstance(key, str):
            return f"{where}: the key {_printable(key)} ({type(key).__name__}) is not a name"
        found = _bool_key_problem(value, model, (*dotted, key), seen)
        if found:
            return found
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror or exc})"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [
                f"{path}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at offset {exc.start}); a config is YAML text"
            ]
        ) from None
    try:
        data = safe_load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: {_yaml_problem(exc)}"]) from None
    except RecursionError:
        raise ConfigError([f"{path}: invalid YAML: nested too deeply"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of sections, not {type(data).__name__}"])
    problem = _bool_key_problem(data, RootConfig)
    if problem:
        raise ConfigError([f"{path}: {problem}"])
    return data


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _get_dotted(tree: Mapping[str, Any], parts: tuple[str, ...]) -> Any:
    node: Any = tree
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _known_fields(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Field names valid at the parent of ``loc`` (for "did you mean" hints)."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = fields[part].annotation
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def _printable(part: object) -> str:
    """A location part as it can be printed on one line (keys with newlines or control characters quoted)."""
    text = str(part)
    return text if text.isprintable() else repr(text)


def _format_errors(exc: ValidationError, source: str, overridden: set[str]) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        dotted = ".".join(_printable(p) for p in loc) or "<root>"
        where = OVERRIDE_SOURCE if dotted in overridden else source
        if err["type"] == "extra_forbidden":
            hint = difflib.get_close_matches(str(loc[-1]), _known_fields(RootConfig, loc), n=1)
            msg = "unknown key" + (f" (did you mean '{hint[0]}'?)" if hint else "")
        else:
            msg = err["msg"]
        lines.append(f"{where}: {dotted}: {msg}")
    return lines


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RootConfig:
    """Load, override and validate a configuration.

    Args:
        path: YAML file; ``None`` gives the built-in defaults (the values of ``config/config.yaml``).
        overrides: dotted keys to values, e.g. ``{"model.batch_size": 4}``; ``None`` values are ignored so
            CLI options that were not given can be passed straight through.  Relative paths given here are
            taken relative to the current directory (they come from the command line).

    Raises:
        ConfigError: one line per problem, each naming the file (or "command line") and the dotted field.
    """
    source = str(path) if path is not None else "<defaults>"
    data: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path)
        data = _read_yaml(path)
        base = path.resolve().parent
    data = copy.deepcopy(data)
    # Relative paths inside the file are relative to the file's folder.
    for parts in _PATH_FIELDS:
        value = _get_dotted(data, parts)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            _set_dotted(data, ".".join(parts), str((base / value).resolve()))
    overridden: set[str] = set()
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if isinstance(value, Path):
            value = str(value.expanduser().resolve())
        _set_dotted(data, key, value)
        overridden.add(key)
    try:
        return RootConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, overridden)) from None


def override_config(cfg: RootConfig, overrides: Mapping[str, Any] | None = None) -> RootConfig:
    """``cfg`` with dotted ``overrides`` applied and validated once (``cfg`` itself when there are none).

    Overrides behave as in :func:`load_config` (``None`` values are ignored, relative paths are taken relative to
    the current directory); the problems name the field, as there.

    Raises:
        ConfigError: one line per problem.
    """
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    if not given:
        return cfg
    return load_config(None, {**_flatten(cfg.model_dump(mode="json")), **given})


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def dump_config(cfg: RootConfig, path: str | Path) -> None:
    """Write the fully resolved config as YAML (atomically), e.g. into a run directory."""
    from roofmapnet.utils.io import atomic_write_text

    text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    atomic_write_text(Path(path), text)


def config_from_dict(data: Mapping[str, Any], source: str = "<checkpoint>") -> RootConfig:
    """Validate a plain mapping (e.g. hyper-parameters stored in a checkpoint)."""
    try:
        return RootConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, set())) from None
