"""The one writer: every file prefkit writes goes through here, atomically.

A file is written to a temporary name in its folder and ``os.replace``d into place; whole folders are staged next
to their target and renamed (:func:`prefkit.store.folder.staged_folder`). Files get the permissions the umask
gives (like any file the user writes), never less.

Parquet goes through :class:`ParquetFile` only (table by table, atomic): data files carry the ``datasets`` features in
their schema metadata (what ``push_to_hub`` writes) and use snappy, in shards of at most 500 MB
(:class:`ShardWriter`); rejects skip dictionary encoding (large, written once, rarely read).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.errors import OutputError, os_error  # noqa: F401 (os_error: prefkit.store.writer API)
from prefkit.record import features_dict

#: temporary names prefkit writes: ``.<name>.<pid>.<random>.tmp`` (files) and ``.<name>.stage-<pid>-<random>`` /
#: ``.<name>.old-<pid>-<random>`` (folders); a later run removes those whose process is gone
TEMP_NAME = re.compile(
    r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)\.[^.]+\.tmp|(?:stage|old)-(?P<dpid>\d+)-[0-9a-f]{8})$"
)
#: names of earlier prefkit versions (no pid): removed only when they hold a prefkit manifest
LEGACY_NAME = re.compile(r"^\.(?P<name>.+)\.(?:[a-z0-9_]{8}\.tmp|old-[0-9a-f]{8})$")


#: the most Arrow bytes a data shard holds: ``push_to_hub``'s ``max_shard_size`` (500MB)
SHARD_BYTES = 500 * 10**6


def shard_name(split: str, index: int, total: int, digest: str | None = None) -> str:
    """``<split>-00000-of-00001[-<digest>].parquet``: the Hub's shard names, with the file's content digest."""
    return f"{split}-{index:05d}-of-{total:05d}{'-' + digest if digest else ''}.parquet"


def content_digest(path: Path) -> str:
    """The first 16 hex digits of the file's SHA-256: shard names change whenever their rows do.

    ``datasets`` caches ``load_dataset(OUT)`` under a hash of the card, which lists the data files by name; with
    the same names a rebuilt folder holding other rows of the same size would load the previous build's rows."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (``EPERM`` counts as alive): the one check of the
    writer's stale files and the jobs' leases."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, another user's
        return True
    return True


def clean_stale(folder: Path, name: str | None = None) -> list[Path]:
    """Remove what a killed prefkit run left in ``folder`` (temporary files and staging / old folders of
    processes that are gone; only those of ``name`` when given). Returns what was removed."""
    removed: list[Path] = []
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
        if m is not None and pid_alive(int(m.group("pid") or m.group("dpid"))):
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

    plain = table_schema.remove_metadata()
    meta = {b"huggingface": json.dumps({"info": {"features": features_dict(plain)}}).encode()}
    return plain.with_metadata(meta)


def write_parquet(
    table: pa.Table, path: Path, *, features: bool = True, fast: bool = False, metadata: dict | None = None
) -> None:
    """Write one parquet file atomically (a :class:`ParquetFile` of one table).

    ``features``: attach the ``datasets`` features (data files); ``fast``: no dictionary encoding (rejects);
    ``metadata``: extra schema metadata (bytes keys and values), e.g. a work shard's fingerprint.
    """
    schema = hf_schema(table.schema) if features else table.schema
    if metadata:
        schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
    file = ParquetFile(Path(path), schema, dictionary=not fast)
    file.write(table)
    file.close()


#: rows per parquet row group, as ``datasets`` writes them (``to_parquet``, ``push_to_hub``: 1,000 rows a write);
#: fixed, so a file's bytes (and its content-digest name) do not depend on the batches it was written in
ROW_GROUP_ROWS = 1000


class Rechunk:
    """Tables in, tables of exactly ``rows`` rows out (the last one, from :meth:`rest`, shorter), in order, all
    cast to ``schema``: what a writer needs to lay out the same file whatever batches it was given."""

    def __init__(self, rows: int, schema: pa.Schema | None = None) -> None:
        self.rows = rows
        self.schema = schema
        self._pending: list[pa.Table] = []
        self._held = 0

    def add(self, table: pa.Table) -> Iterator[pa.Table]:
        if self.schema is None:
            self.schema = table.schema
        if not table.schema.equals(self.schema):
            table = table.cast(self.schema)
        self._pending.append(table)
        self._held += table.num_rows
        while self._held >= self.rows:
            joined = pa.concat_tables(self._pending)
            yield joined.slice(0, self.rows)
            rest = joined.slice(self.rows)
            self._pending, self._held = ([rest] if rest.num_rows else []), rest.num_rows

    def rest(self) -> pa.Table | None:
        if not self._held:
            return None
        table = pa.concat_tables(self._pending)
        self._pending, self._held = [], 0
        return table


class ParquetFile:
    """The one parquet writer: a file written table by table to a temporary name next to ``path``
    (``.<name>.<pid>.<random>.tmp``, which a later run removes if this process dies) and renamed into place by
    :meth:`close`. Every table is cast to ``schema``; snappy; dictionary encoding unless ``dictionary=False``
    (rejects: large, written once, rarely read). The file is there even when no row was written.

    Raises :class:`prefkit.errors.OutputError` (one line) when the disk refuses a write."""

    def __init__(self, path: Path, schema: pa.Schema, *, dictionary: bool = True) -> None:
        self.path = Path(path)
        self.schema = schema
        self.rows = 0
        self._groups = Rechunk(ROW_GROUP_ROWS, schema)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.tmp, schema, compression="snappy", use_dictionary=dictionary)
        except OSError as err:
            raise os_error(err, self.path) from None

    def write(self, table: pa.Table) -> None:
        """Add rows; they reach the file in row groups of :data:`ROW_GROUP_ROWS` rows."""
        if not table.num_rows:
            return
        for group in self._groups.add(table):
            self._write_group(group)
        self.rows += table.num_rows

    def _write_group(self, group: pa.Table) -> None:
        try:
            self._writer.write_table(group)
        except OSError as err:
            self.abort()
            raise os_error(err, self.path) from None

    def close(self, name: Callable[[Path], Path] | None = None) -> Path:
        """Finish the file and rename it to ``path`` (or to ``name(temporary file)``, e.g. a name from its
        content); returns where it is."""
        rest = self._groups.rest()
        if rest is not None:
            self._write_group(rest)
        try:
            self._writer.close()
            target = name(self.tmp) if name else self.path
            os.replace(self.tmp, target)
        except OSError as err:
            self.abort()
            raise os_error(err, self.path) from None
        return target

    def abort(self) -> None:
        """Close and remove the temporary file (nothing is renamed)."""
        with suppress(OSError, ValueError):
            self._writer.close()
        self.tmp.unlink(missing_ok=True)


class ShardWriter:
    """One split's data shards, written as tables arrive: a shard is closed once it holds ``max_bytes`` of Arrow
    data (500 MB, as ``push_to_hub`` shards; or ``max_rows`` rows), and :meth:`close` names them
    ``<split>-<k>-of-<N>-<digest>.parquet`` (:func:`shard_name`). Files carry the
    ``datasets`` features (:func:`hf_schema`). A split that gets no row gets no file."""

    def __init__(self, data_dir: Path, split: str, max_bytes: int | None = None, max_rows: int | None = None):
        self.data_dir = Path(data_dir)
        self.split = split
        self.max_bytes = max_bytes or SHARD_BYTES
        self.max_rows = max_rows
        self.rows = 0
        self.schema: pa.Schema | None = None
        self._done: list[Path] = []
        self._file: ParquetFile | None = None
        self._bytes = 0.0  # Arrow bytes in the open shard
        self._chunks: Rechunk | None = None

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        if self.schema is None:
            self.schema = hf_schema(table.schema)
            self._chunks = Rechunk(ROW_GROUP_ROWS, self.schema)
        assert self._chunks is not None
        for chunk in self._chunks.add(table):
            self._place(chunk)

    def _place(self, table: pa.Table) -> None:
        """Put a chunk of rows into the open shard, closing it (and opening the next) at the size limit: decided
        on chunks of :data:`ROW_GROUP_ROWS` rows, so the shards do not depend on the batches written."""
        per_row = max(table.nbytes / table.num_rows, 1.0)
        while table.num_rows:
            file = self._file or self._open()
            fit = min(table.num_rows, max(int((self.max_bytes - self._bytes) // per_row), 0))
            if self.max_rows is not None:
                fit = min(fit, self.max_rows - file.rows)
            if fit == 0 and file.rows == 0:
                fit = 1  # a row larger than a shard goes alone
            if fit == 0:
                self._close_shard()
                continue
            file.write(table.slice(0, fit))
            self.rows += fit
            self._bytes += fit * per_row
            table = table.slice(fit)
            full = self._bytes >= self.max_bytes - per_row / 2
            if full or (self.max_rows is not None and file.rows >= self.max_rows):
                self._close_shard()

    def _open(self) -> ParquetFile:
        assert self.schema is not None
        self._file = ParquetFile(self.data_dir / f"{self.split}-{len(self._done)}.parquet", self.schema)
        self._bytes = 0.0
        return self._file

    def _close_shard(self) -> None:
        if self._file is not None:
            self._done.append(self._file.close(name=lambda tmp: tmp))  # named once all are written
            self._file = None

    def close(self) -> list[Path]:
        """Close the last shard and give every shard its name; returns the paths, in order."""
        rest = self._chunks.rest() if self._chunks is not None else None
        if rest is not None:
            self._place(rest)
        self._close_shard()
        total = len(self._done)
        paths = []
        for i, done in enumerate(self._done):
            path = self.data_dir / shard_name(self.split, i, total, content_digest(done))
            os.replace(done, path)
            paths.append(path)
        self._done = []
        return paths


def write_text(path: Path, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    _atomic(Path(path), lambda tmp: _write_utf8(tmp, text))


def _write_utf8(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def write_json(path: Path, data: object) -> None:
    """Write a JSON file atomically (indented, non-JSON values as strings)."""
    write_text(Path(path), json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
