"""Package data, read the one way that works in a checkout, an editable install and an installed wheel:
:mod:`importlib.resources` traversables, never converted to filesystem paths (an editable install's
``MultiplexedPath`` has no single path)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib import resources

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # pragma: no cover - Python 3.10
    from importlib.abc import Traversable


def data_file(package: str, *parts: str) -> Traversable:
    """The data file ``parts`` (folders, then the file name) inside ``package`` (a dotted module name)."""
    entry = resources.files(package)
    for part in parts:
        entry = entry / part
    return entry


def read_text(package: str, *parts: str) -> str:
    """The UTF-8 text of a data file of ``package`` (see :func:`data_file`). Raises ``FileNotFoundError``."""
    return data_file(package, *parts).read_text(encoding="utf-8")


def data_files(package: str, folder: str, suffix: str) -> Iterator[Traversable]:
    """The files of ``folder`` inside ``package`` whose names end with ``suffix``, sorted by name."""
    entries = data_file(package, folder).iterdir()
    yield from sorted((e for e in entries if e.name.endswith(suffix)), key=lambda e: e.name)
