"""Helpers shared by the CLI commands: consoles, error reporting, common option types."""

from __future__ import annotations

import functools
import inspect
import re
import sys
import typing
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from roofmapnet.errors import RoofMapError

#: Human-facing output (tables, summaries).
console = Console()
#: Errors and notices.
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


#: Library fields whose flag is not named after them (``PreprocessOptions.images_dir`` is ``--images``).
FIELD_FLAGS: dict[str, str] = {"images_dir": "--images", "raw_format": "--format", "out_dir": "--out"}


def flag_for(field: str) -> str:
    """The flag that sets a library field: :data:`FIELD_FLAGS`, else its last dotted part with ``-`` for ``_``
    (``infer.raster.tile`` → ``--tile``)."""
    return FIELD_FLAGS.get(field) or "--" + field.rsplit(".", 1)[-1].replace("_", "-")


def command_flags(func: Callable[..., Any]) -> set[str]:
    """The long options of a Typer command function: each parameter's declared ``--name`` (``--a/--no-a``: both),
    else ``--<parameter name>`` with ``-`` for ``_`` (Typer's default)."""
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except (NameError, TypeError):  # an annotation that cannot be evaluated: fall back to the parameter names
        hints = {}
    flags: set[str] = set()
    for name in inspect.signature(func).parameters:
        decls: tuple[str, ...] = ()
        for meta in getattr(hints.get(name), "__metadata__", ()):
            # typer.Option("--name", "-n") inside Annotated keeps the first declaration as ``default``.
            first = getattr(meta, "default", None)
            given = ((first,) if isinstance(first, str) else ()) + tuple(getattr(meta, "param_decls", None) or ())
            decls = given or decls
        longs = [part for d in decls for part in d.split("/") if part.startswith("--")]
        flags.update(longs or ["--" + name.replace("_", "-")])
    return flags


def as_flags(line: str, fields: Iterable[str], flags: Collection[str]) -> str:
    """``line`` with each field name written as the flag that sets it, where ``flags`` has that flag.

    Library messages name fields and values (``infer.raster.tile 8: ...``, ``precision 8: ...``); on the command
    line the user gave flags (``--tile 8: ...``).  A field whose flag the command does not have keeps its name.
    """
    for field in sorted(set(fields), key=len, reverse=True):
        flag = flag_for(field)
        if flag in flags:
            # Not inside a path or a longer name: ``data/raw`` and ``my_data`` keep their ``data``.
            line = re.sub(rf"(?<![\w./\\-]){re.escape(field)}(?![\w/\\])", flag, line)
    return line


def report_errors(func: F) -> F:
    """Turn :class:`RoofMapError` into ``error: …`` lines on stderr and its exit code, without a traceback.

    The fields the error names (:attr:`RoofMapError.fields`) are written as this command's flags (:func:`as_flags`).
    """
    flags: set[str] = set()

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RoofMapError as exc:
            if exc.fields and not flags:  # annotations are evaluated once the command's module is complete
                flags.update(command_flags(func))
            for line in exc.lines:
                text = as_flags(line, exc.fields, flags)
                err_console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def notice(message: str) -> None:
    """Print a one-line notice to stderr."""
    err_console.print(f"[cyan]note:[/] {escape(message)}", highlight=False, soft_wrap=True)


def default_config_path() -> Path | None:
    """The config of a command run without ``--config``: ``None``, the built-in defaults (the values of the
    repository's ``config/config.yaml``).

    Never a file of the current directory: a command means the same wherever it is started.  Kept as the one place
    that says so for the commands that still call it (``roofmap infer``).
    """
    return None


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config file. Default: the built-in defaults (the values of config/config.yaml).",
        dir_okay=False,
        rich_help_panel="Configuration",
    ),
]


def is_tty() -> bool:
    """Whether stdout is an interactive terminal (decides rich progress vs plain log lines)."""
    return sys.stdout.isatty()
