"""The one writer: every file prefkit writes goes through here, atomically.

A file is written to a temporary name in its folder and ``os.replace``d into place; whole folders are staged next
to their target and renamed (:func:`prefkit.output.folder.staged_folder`). Files get the permissions the umask
gives (like any file the user writes), never less.

Parquet: data files carry the ``datasets`` features in their schema metadata (what ``push_to_hub`` writes) and
use snappy; rejects skip dictionary encoding (large, written once, rarely read).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(tmp)`` to a temporary file next to ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.chmod(0o666 & ~_umask())  # mkstemp makes 0600; a written file follows the umask
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def hf_schema(table_schema: pa.Schema) -> pa.Schema:
    """The schema with the ``datasets`` features attached, so every reader gets the same types back."""
    from prefkit.record import features_dict

    plain = table_schema.remove_metadata()
    meta = {b"huggingface": json.dumps({"info": {"features": features_dict(plain)}}).encode()}
    return plain.with_metadata(meta)


def write_parquet(
    table: pa.Table, path: Path, *, features: bool = True, fast: bool = False, metadata: dict | None = None
) -> None:
    """Write one parquet file atomically.

    ``features``: attach the ``datasets`` features (data files); ``fast``: no dictionary encoding (rejects);
    ``metadata``: extra schema metadata (bytes keys and values), e.g. a work shard's fingerprint.
    """
    schema = hf_schema(table.schema) if features else table.schema
    if metadata:
        schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
    table = table.cast(schema) if features else table.replace_schema_metadata(schema.metadata)

    def write(tmp: Path) -> None:
        pq.write_table(table, tmp, compression="snappy", use_dictionary=not fast)

    _atomic(Path(path), write)


def write_text(path: Path, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    _atomic(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, data: object) -> None:
    """Write a JSON file atomically (indented, non-JSON values as strings)."""
    write_text(Path(path), json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
