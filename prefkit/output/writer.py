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
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.errors import OutputError, os_error  # noqa: F401 (os_error: prefkit.output.writer API)

#: temporary names prefkit writes: ``.<name>.<pid>.<random>.tmp`` (files) and ``.<name>.stage-<pid>-<random>`` /
#: ``.<name>.old-<pid>-<random>`` (folders); a later run removes those whose process is gone
TEMP_NAME = re.compile(
    r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)\.[^.]+\.tmp|(?:stage|old)-(?P<dpid>\d+)-[0-9a-f]{8})$"
)
#: names of earlier prefkit versions (no pid): removed only when they hold a prefkit manifest
LEGACY_NAME = re.compile(r"^\.(?P<name>.+)\.(?:[a-z0-9_]{8}\.tmp|old-[0-9a-f]{8})$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(folder: Path, name: str | None = None) -> list[Path]:
    """Remove what a killed prefkit run left in ``folder`` (temporary files and staging / old folders of
    processes that are gone; only those of ``name`` when given). Returns what was removed."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = TEMP_NAME.match(entry.name)
        legacy = LEGACY_NAME.match(entry.name) if m is None else None
        found = m or legacy
        if found is None or (name is not None and found.group("name") != name):
            continue
        if m is not None and _alive(int(m.group("pid") or m.group("dpid"))):
            continue
        if legacy is not None and not (entry / "prefkit.json").is_file():
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(tmp)`` to a temporary file next to ``path``, then rename it into place."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
        write(tmp)
        tmp.chmod(0o666 & ~_umask())  # mkstemp makes 0600; a written file follows the umask
        os.replace(tmp, path)
    except OSError as err:
        raise os_error(err, path) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """A new folder next to ``target`` (``.<name>.stage-<pid>-<random>``), removed on error; the caller renames
    it into place with :func:`swap_in`."""
    clean_stale(target.parent, target.name)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stage = target.with_name(f".{target.name}.stage-{os.getpid()}-{os.urandom(4).hex()}")
        stage.mkdir(mode=0o777)  # the umask applies, like any folder the user makes
    except OSError as err:
        raise os_error(err, target) from None
    try:
        yield stage
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def swap_in(stage: Path, target: Path) -> None:
    """Rename ``stage`` to ``target``; an existing ``target`` is moved aside first and removed after."""
    try:
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}-{os.urandom(4).hex()}")
            os.replace(target, old)
            os.replace(stage, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, target)
    except OSError as err:
        raise os_error(err, target) from None


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
