"""Atomic file writing: write to a temporary file in the destination folder, then rename.

A crash or kill never leaves a half-written output behind; readers see the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TMP_PREFIX = ".tmp-"


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Permissions of new files, as ``open()`` would create them (``mkstemp`` alone gives 0600).
FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``, on error delete it.

    The temporary name keeps ``path``'s suffix so that writers choosing a format by suffix still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX + path.stem + "-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(FILE_MODE)
    try:
        yield tmp
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing and atomically move it to ``path`` when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


@contextlib.contextmanager
def atomic_files(folder: str | Path) -> Iterator[Path]:
    """Yield a temporary folder inside ``folder``; on success move every file in it into ``folder``.

    For outputs that are several files (a Shapefile's ``.shp`` / ``.shx`` / ``.dbf`` / ``.prj``, one file per
    layer, a GeoPackage with its journal): everything is written into the temporary folder first, so a crash never
    leaves a partial set; once all are written, each one is renamed into place (same file system, atomic per file).
    On error the temporary folder is deleted.
    """
    import shutil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=folder))
    try:
        yield tmp
        for item in sorted(tmp.iterdir()):
            if item.is_file():
                item.chmod(FILE_MODE)
                item.replace(folder / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
