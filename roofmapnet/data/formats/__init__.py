r"""Readers of the raw annotation formats of ``roofmap preprocess --format NAME`` (one module per format).

===========  ==========================================================================================
``json``     :mod:`~roofmapnet.data.formats.wireframe`: ``{train,valid,test}.json`` + ``images/`` (L-CNN)
``rid2``     :mod:`~roofmapnet.data.formats.rid2`: ``<stem>.npz`` edge files + ``images/`` (RID2)
``roofvec``  :mod:`~roofmapnet.data.formats.roofvec`: RoofVec ``SimpleRoofTXT/{train,val}``
``heat``     :mod:`~roofmapnet.data.formats.heat`: HEAT / Conv-MPN ``rgb/`` + ``annot/*.npy`` graphs
``labelme``  :mod:`~roofmapnet.data.formats.labelme`: LabelMe JSON (``line`` / ``linestrip`` shapes)
``gis``      :mod:`~roofmapnet.data.formats.gis`: an orthophoto + a vector layer of roof lines
===========  ==========================================================================================

Every reader implements :class:`~roofmapnet.data.formats.base.FormatReader`; those that parse each sample in a
worker are :class:`~roofmapnet.data.formats.base.SampleReader`\ s (:func:`get_sample_reader`).  :func:`detect_format` picks the
format of a folder when exactly one reader recognises it.  Readers are imported on first use, so a worker
process imports only the one it needs.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Final

from roofmapnet.data.formats.base import Annotation, FormatReader, SampleReader
from roofmapnet.errors import DataError

#: ``--format`` name → ``module:class`` of its reader, in detection order.
READERS: Final = {
    "json": "roofmapnet.data.formats.wireframe:JsonReader",
    "rid2": "roofmapnet.data.formats.rid2:Rid2Reader",
    "roofvec": "roofmapnet.data.formats.roofvec:RoofVecReader",
    "heat": "roofmapnet.data.formats.heat:HeatReader",
    "labelme": "roofmapnet.data.formats.labelme:LabelMeReader",
    "gis": "roofmapnet.data.formats.gis:GisReader",
}
FORMAT_NAMES: Final = tuple(READERS)

__all__ = [
    "FORMAT_NAMES",
    "READERS",
    "Annotation",
    "FormatReader",
    "SampleReader",
    "detect_format",
    "get_reader",
    "get_sample_reader",
]


def get_reader(name: str) -> type[FormatReader]:
    """The reader class of format ``name``.

    Raises:
        DataError: unknown format.
    """
    target = READERS.get(name)
    if target is None:
        raise DataError(f"unknown format {name!r} (choose from {', '.join(READERS)})")
    module, cls = target.split(":")
    reader: type[FormatReader] = getattr(import_module(module), cls)
    return reader


def get_sample_reader(name: str) -> type[SampleReader]:
    """The reader class of format ``name``, which parses samples one by one (the ``reader`` of a ``RawSample``).

    Raises:
        DataError: unknown format, or one whose samples carry their lines (``json``, ``rid2``: no per-sample loader).
    """
    reader = get_reader(name)
    if not issubclass(reader, SampleReader):
        raise DataError(f"format {name!r} has no per-sample loader: its samples carry their lines")
    return reader


def detect_format(root: Path) -> str:
    """The one format that recognises ``root``.

    Raises:
        DataError: ``root`` does not exist, no reader recognises it, or several do (then ``raw_format`` decides).
    """
    if not root.exists():
        raise DataError(f"{root}: not found")
    found = [name for name in READERS if get_reader(name).detect(root)]
    if len(found) == 1:
        return found[0]
    if not found:
        msg = f"{root}: no known raw format found ({', '.join(READERS)}); see docs/data-format.md or set raw_format"
        raise DataError(msg, fields="raw_format")
    msg = f"{root}: looks like several formats ({', '.join(found)}); choose one with raw_format"
    raise DataError(msg, fields="raw_format")
