"""Batches and spill files: how `build` stays within a memory bound whatever the size of its sources.

A build reads every source split in record batches (:func:`batch_rows` rows each), keeps compact per-row data in
memory (stage, reason, margin, hashes, lengths) and writes what it may still need of the rows to *spill files* in
its work folder: the normalised records of rows that may still be kept, the original fields of rows the rejects
will list. Later stages read them back batch by batch (:class:`Spill`), in source order or in any other order
(:func:`gather`: a sorted scan, or buckets on disk when the order is not the files' order).

Spill files are Arrow IPC files, one record batch per write; a writer whose batches change schema (a column that
is null in one batch and text in the next) starts a new file, so every batch is read back with its own types.

``PREFKIT_BATCH_ROWS`` (environment) fixes the rows per batch (tests use a few rows to check that a build in many
batches gives the same set as a build in one); by default a batch holds about :data:`BATCH_BYTES` of source data,
between :data:`MIN_BATCH_ROWS` and :data:`MAX_BATCH_ROWS` rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from prefkit.errors import OptionError, os_error

#: environment variable: rows per batch (an integer >= 1); unset = sized by :data:`BATCH_BYTES`
BATCH_ROWS_ENV = "PREFKIT_BATCH_ROWS"
#: source bytes (uncompressed Arrow) per batch when the rows' size is known
BATCH_BYTES = 32 << 20
#: rows per batch when the rows' size is not known, and the bounds of a sized batch
DEFAULT_BATCH_ROWS = 20_000
MIN_BATCH_ROWS = 256
MAX_BATCH_ROWS = 100_000
#: compression of spill files (None: written as fast as the disk takes them)
SPILL_COMPRESSION: str | None = None


def batch_rows(bytes_per_row: float | None = None) -> int:
    """Rows per batch: ``PREFKIT_BATCH_ROWS`` when set, else about :data:`BATCH_BYTES` of rows of
    ``bytes_per_row`` (uncompressed), else :data:`DEFAULT_BATCH_ROWS`."""
    given = os.environ.get(BATCH_ROWS_ENV)
    if given:
        try:
            rows = int(given)
        except ValueError:
            rows = 0
        if rows < 1:
            raise OptionError(
                f"{BATCH_ROWS_ENV}={given!r} is not a positive row count", "unset it or give e.g. 20000"
            )
        return rows
    if not bytes_per_row or bytes_per_row <= 0:
        return DEFAULT_BATCH_ROWS
    return int(min(MAX_BATCH_ROWS, max(MIN_BATCH_ROWS, BATCH_BYTES // bytes_per_row)))


def rebatch(tables: Iterable[pa.Table | pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Tables of exactly ``rows`` rows (the last one fewer) from tables of any size, in order."""
    pending: list[pa.Table] = []
    held = 0
    for table in tables:
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        while table.num_rows:
            take = min(rows - held, table.num_rows)
            pending.append(table.slice(0, take))
            held += take
            table = table.slice(take)
            if held == rows:
                yield pa.concat_tables(pending) if len(pending) > 1 else pending[0]
                pending, held = [], 0
    if held:
        yield pa.concat_tables(pending) if len(pending) > 1 else pending[0]


class Spill:
    """Spill files written by :class:`SpillWriter`, read back batch by batch in the order they were written."""

    def __init__(self, paths: list[Path], rows: int, schema: pa.Schema | None) -> None:
        self.paths = paths
        self.rows = rows
        self.schema = schema

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """Every batch in order (as a table; ``columns``: only those, when present)."""
        for path in self.paths:
            with pa.OSFile(str(path)) as f:
                reader = pa.ipc.open_file(f)
                for i in range(reader.num_record_batches):
                    batch = reader.get_batch(i)
                    if columns is not None:
                        batch = batch.select([c for c in columns if c in batch.schema.names])
                    yield pa.Table.from_batches([batch])

    def frames(self, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
        """Every batch in order, as polars frames."""
        for table in self.batches(columns):
            yield _frame(table)

    def remove(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)


def _frame(table: pa.Table) -> pl.DataFrame:
    df = pl.from_arrow(table, rechunk=False)
    return df.to_frame() if isinstance(df, pl.Series) else df


class SpillWriter:
    """Appends tables (or polars frames) to spill files ``<prefix>.<n>.arrow``; :meth:`close` gives the
    :class:`Spill`."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = Path(prefix)
        self.paths: list[Path] = []
        self.rows = 0
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._sink: pa.OSFile | None = None
        self._schema: pa.Schema | None = None

    def write(self, data: pa.Table | pl.DataFrame) -> None:
        table = data.to_arrow() if isinstance(data, pl.DataFrame) else data
        if table.num_rows == 0:
            return
        try:
            self._write(table)
        except OSError as err:  # the disk is full …: one line, like any other write
            raise os_error(err, self.prefix.parent) from None

    def _write(self, table: pa.Table) -> None:
        if self._schema is None or not table.schema.equals(self._schema):
            self._close_file()
            path = self.prefix.with_name(f"{self.prefix.name}.{len(self.paths)}.arrow")
            path.parent.mkdir(parents=True, exist_ok=True)
            self._sink = pa.OSFile(str(path), "wb")
            options = pa.ipc.IpcWriteOptions(compression=SPILL_COMPRESSION)
            self._writer = pa.ipc.new_file(self._sink, table.schema, options=options)
            self._schema = table.schema
            self.paths.append(path)
        assert self._writer is not None
        self._writer.write(table.combine_chunks() if table.column(0).num_chunks > 1 else table)
        self.rows += table.num_rows

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def close(self) -> Spill:
        try:
            self._close_file()
        except OSError as err:
            raise os_error(err, self.prefix.parent) from None
        return Spill(list(self.paths), self.rows, self._schema)


def detached(df: pl.DataFrame) -> pl.DataFrame:
    """A copy of ``df`` that holds its own rows' data only. A few rows taken from a large frame share its string
    buffers (polars' string views), which would keep the whole frame in memory as long as they live."""
    return _frame(df.to_arrow())


def is_sorted(values: np.ndarray) -> bool:
    """Non-decreasing (an empty or one-element array is)."""
    return bool(len(values) < 2 or (values[1:] >= values[:-1]).all())


def gather(
    spill: Spill, plan: np.ndarray, *, key: str = "_row", rows: int | None = None, work: Path | None = None
) -> Iterator[pl.DataFrame]:
    """The spill's rows in the order ``plan`` names them (values of column ``key``; a value may repeat), as
    frames of at most about ``rows`` rows.

    The spill's rows are sorted by ``key``. A sorted plan is one scan; a small plan (at most ``rows`` rows) is
    one scan that keeps the rows it needs; a larger plan in another order is distributed by output position into
    bucket files under ``work`` in one scan, then each bucket is read and put in order (memory: one bucket)."""
    rows = rows or batch_rows()
    plan = np.asarray(plan, dtype=np.int64)
    if not len(plan):
        return
    if is_sorted(plan):
        yield from _gather_sorted(spill, plan, key, rows)
    elif len(plan) <= rows or work is None:
        yield from _gather_small(spill, plan, key, rows)
    else:
        yield from _gather_buckets(spill, plan, key, rows, work)


def _gather_sorted(spill: Spill, plan: np.ndarray, key: str, rows: int) -> Iterator[pl.DataFrame]:
    start = 0
    out: list[pl.DataFrame] = []
    held = 0
    for frame in spill.frames():
        if start >= len(plan):
            break
        keys = frame[key].to_numpy()
        if not len(keys):
            continue
        end = int(np.searchsorted(plan, keys[-1], side="right"))
        wanted = plan[start:end]
        start = end
        if not len(wanted):
            continue
        at = np.searchsorted(keys, wanted)
        out.append(frame[at] if len(at) * 2 >= len(keys) else detached(frame[at]))
        held += len(at)
        if held >= rows:
            yield pl.concat(out, how="vertical_relaxed") if len(out) > 1 else out[0]
            out, held = [], 0
    if out:
        yield pl.concat(out, how="vertical_relaxed") if len(out) > 1 else out[0]


def _gather_small(spill: Spill, plan: np.ndarray, key: str, rows: int) -> Iterator[pl.DataFrame]:
    need = np.unique(plan)
    found = pl.concat(list(_gather_sorted(spill, need, key, rows)), how="vertical_relaxed")
    at = np.searchsorted(found[key].to_numpy(), plan)
    for start in range(0, len(at), rows):
        yield found[at[start : start + rows]]


def _gather_buckets(
    spill: Spill, plan: np.ndarray, key: str, rows: int, work: Path
) -> Iterator[pl.DataFrame]:
    order = np.argsort(plan, kind="stable")
    sorted_plan = plan[order]  # sorted spill keys, with their output positions in ``order``
    writers: dict[int, SpillWriter] = {}
    start = 0
    for frame in spill.frames():
        keys = frame[key].to_numpy()
        if not len(keys) or start >= len(sorted_plan):
            continue
        end = int(np.searchsorted(sorted_plan, keys[-1], side="right"))
        if end == start:
            continue
        positions = order[start:end]
        picked = frame[np.searchsorted(keys, sorted_plan[start:end])].with_columns(
            pl.Series("_pos", positions, dtype=pl.Int64)
        )
        start = end
        bucket = positions // rows
        for b in np.unique(bucket):
            part = picked.filter(pl.Series(bucket == b))
            if b not in writers:
                writers[int(b)] = SpillWriter(work / f"bucket-{int(b)}")
            writers[int(b)].write(part)
    try:
        for b in sorted(writers):
            spilled = writers[b].close()
            frame = pl.concat(list(spilled.frames()), how="vertical_relaxed")
            spilled.remove()
            yield frame.sort("_pos").drop("_pos")
    finally:
        for writer in writers.values():
            writer.close().remove()
