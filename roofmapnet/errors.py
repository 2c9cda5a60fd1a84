"""Exceptions that carry a message meant for the user (printed as one line, without a traceback)."""

from __future__ import annotations


class RoofMapError(Exception):
    """An error caused by user input (a file, an option, a config value); the CLI prints it and exits non-zero.

    The library names options by their field (``precision``, ``infer.raster.tile``), never by a command-line
    flag: ``fields`` lists the dotted field names that occur in the message, and the CLI alone writes them as
    its flags (:func:`roofmapnet.cli._common.report_errors`).
    """

    exit_code: int = 1

    def __init__(
        self, message: str, *, exit_code: int | None = None, fields: tuple[str, ...] | str | None = None
    ) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
        self.fields: tuple[str, ...] = (fields,) if isinstance(fields, str) else tuple(fields or ())

    @property
    def lines(self) -> list[str]:
        """The message as the lines to print."""
        return str(self).splitlines() or [type(self).__name__]


class ConfigError(RoofMapError):
    """The configuration (file or overrides) is invalid; one line per problem."""

    exit_code = 2

    def __init__(self, problems: list[str], *, fields: tuple[str, ...] | str | None = None) -> None:
        super().__init__("\n".join(problems), fields=fields)
        self.problems = problems


class DataError(RoofMapError):
    """A data file is missing, unreadable or malformed."""


class CheckpointError(RoofMapError):
    """A checkpoint or weights file is missing, corrupt or of the wrong model."""
