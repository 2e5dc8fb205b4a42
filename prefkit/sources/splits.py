"""Source splits read lazily and in record batches: what `build` streams through its stages.

A split is a ``pa.Table`` (rows already in memory: a JSON array, a sample, a file Arrow could only read row by row)
or one of the readers here, each with the table's ``schema`` / ``column_names``, ``select(columns)`` (the whole
columns), ``head(n)`` and ``batches(columns, rows)`` (consecutive tables of ``rows`` rows, in order):

* :class:`ParquetSplit`: one or several parquet files, decoded row group by row group (a row group much larger
  than a batch is read in batches);
* :class:`ArrowStreamSplit`: the Arrow files a ``datasets`` dataset is backed by (a Hub download, a
  ``save_to_disk`` folder), read batch by batch rather than memory-mapped, so the pages read do not stay resident;
* :class:`JsonLinesSplit`, :class:`CsvSplit`: Arrow's streaming readers, with the types the whole-file readers give
  when every block agrees; a file whose blocks disagree (a column that changes type further down) raises
  :class:`StreamChanged` and is read whole instead (:meth:`fallback`), as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from prefkit.errors import SourceError
from prefkit.spill import batch_rows, rebatch


class StreamChanged(Exception):
    """A streamed file turned out not to fit the types of its first block: read it whole instead."""

    def __init__(self, split: LazySplit) -> None:
        super().__init__(f"{split} changed shape while streamed")
        self.split = split


class LazySplit:
    """Base of the lazy readers: a whole-table view for everything else (read once, on first use)."""

    schema: pa.Schema
    _table: pa.Table | None = None

    @property
    def column_names(self) -> list[str]:
        return self.schema.names

    def batches(self, columns: list[str] | None = None, rows: int | None = None) -> Iterator[pa.Table]:
        raise NotImplementedError

    def bytes_per_row(self, columns: list[str] | None = None) -> float | None:
        """Uncompressed bytes of a row of ``columns`` when the files say (for sizing batches)."""
        return None

    def select(self, columns: list[str]) -> pa.Table:
        if self._table is not None:
            return self._table.select(columns)
        parts = list(self.batches(columns))
        if not parts:
            return pa.schema([self.schema.field(c) for c in columns]).empty_table()
        return pa.concat_tables(parts)

    def head(self, n: int) -> pa.Table:
        first = next(self.batches(None, max(n, 1)), None)
        return first.slice(0, n) if first is not None else self.schema.empty_table()

    def non_null(self, column: str) -> int | None:
        """Non-null values of a column from file statistics (None when they do not say)."""
        return None

    def fallback(self) -> pa.Table:
        """The whole split as a table (what a streamed file is read as when its blocks disagree)."""
        return self._whole()

    def _whole(self) -> pa.Table:
        if self._table is None:
            self._table = self.select(self.schema.names)
        return self._table

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._whole(), name)


class ParquetSplit(LazySplit):
    """Local parquet file(s), decoded lazily: a build reads only the columns it maps, a row group at a time.

    Behaves like the ``pa.Table`` it stands for (any other attribute reads the whole split once)."""

    def __init__(self, path: Path | list[Path]) -> None:
        self.paths = [Path(p) for p in (path if isinstance(path, list) else [path])]
        self.path = self.paths[0]
        # no pre-buffering: it reads a whole row group's column chunks ahead (2-3x slower here, and more memory)
        self._files = [pq.ParquetFile(p, pre_buffer=False) for p in self.paths]
        self._file = self._files[0]
        self.schema = self._file.schema_arrow
        self.num_rows = sum(f.metadata.num_rows for f in self._files)
        twice = sorted({n for n in self.schema.names if self.schema.names.count(n) > 1})
        if twice:
            raise SourceError(
                f"column {twice[0]!r} appears twice in {str(self.path)!r}", "rename one of the two columns"
            )

    def __repr__(self) -> str:
        return f"ParquetSplit({', '.join(map(str, self.paths))})"

    def select(self, columns: list[str]) -> pa.Table:
        if self._table is not None:
            return self._table.select(columns)
        if len(self._files) > 1:
            return pa.concat_tables([ParquetSplit(p).select(columns) for p in self.paths])
        try:
            # polars' reader decodes nested string columns 1.5-2.5x faster than pyarrow's; cast back to the
            # file's exact Arrow types, so callers see the same table either way
            target = pa.schema([self.schema.field(c) for c in columns])
            read = pl.read_parquet(self.path, columns=columns).to_arrow(compat_level=pl.CompatLevel.oldest())
            return read.cast(target)
        except Exception:  # any type polars cannot round-trip: pyarrow reads it as it is
            return self._file.read(
                columns=columns
            )  # not pq.read_table: that imports pyarrow.dataset (+ pandas)

    def bytes_per_row(self, columns: list[str] | None = None) -> float | None:
        wanted = set(columns) if columns is not None else None
        total = rows = 0
        for f in self._files:
            meta = f.metadata
            for g in range(meta.num_row_groups):
                group = meta.row_group(g)
                rows += group.num_rows
                for c in range(group.num_columns):
                    chunk = group.column(c)
                    if wanted is None or chunk.path_in_schema.split(".")[0] in wanted:
                        total += chunk.total_uncompressed_size
        return total / rows if rows and total else None

    def batches(self, columns: list[str] | None = None, rows: int | None = None) -> Iterator[pa.Table]:
        rows = rows or batch_rows(self.bytes_per_row(columns))
        return rebatch(self._groups(columns, rows), rows)

    def _groups(self, columns: list[str] | None, rows: int) -> Iterator[pa.Table | pa.RecordBatch]:
        for f in self._files:
            meta = f.metadata
            for g in range(meta.num_row_groups):
                if meta.row_group(g).num_rows <= 2 * rows:
                    yield f.read_row_group(g, columns=columns)
                else:  # a row group much larger than a batch: in batches, so memory stays bounded
                    yield from f.iter_batches(batch_size=rows, row_groups=[g], columns=columns)

    def non_null(self, column: str) -> int | None:
        """Non-null values of a top-level column: a flat column's from the files' statistics; a nested one (list,
        struct) by reading only its smallest leaf, whose definition levels carry the row-level nulls (a
        millisecond where the whole column takes a second). None when neither works."""
        total = 0
        for f in self._files:
            meta = f.metadata
            leaves = [
                i for i in range(meta.num_columns) if meta.schema.column(i).path.split(".")[0] == column
            ]
            if not leaves:
                return None
            if meta.schema.column(leaves[0]).path != column:  # nested: leaf statistics count items, not rows
                count = self._nested_non_null(f, leaves)
                if count is None:
                    return None
                total += count
                continue
            for g in range(meta.num_row_groups):
                stats = meta.row_group(g).column(leaves[0]).statistics
                if stats is None or not stats.has_null_count:
                    return None
                total += meta.row_group(g).num_rows - stats.null_count
        return total

    @staticmethod
    def _nested_non_null(f, leaves: list[int]) -> int | None:
        meta = f.metadata

        def size(i: int) -> int:
            return sum(meta.row_group(g).column(i).total_compressed_size for g in range(meta.num_row_groups))

        path = meta.schema.column(min(leaves, key=size)).path
        try:
            column = f.read(columns=[path]).column(0)
        except (pa.ArrowException, KeyError, ValueError):
            return None
        return len(column) - column.null_count

    def head(self, n: int) -> pa.Table:
        batch = next(self._file.iter_batches(batch_size=max(n, 1)), None)
        return pa.Table.from_batches([batch]).slice(0, n) if batch is not None else self.schema.empty_table()


class ArrowStreamSplit(LazySplit):
    """The Arrow stream files behind a ``datasets`` dataset, read batch by batch (not memory-mapped)."""

    def __init__(self, paths: list[Path], schema: pa.Schema, num_rows: int) -> None:
        self.paths = [Path(p) for p in paths]
        self.schema = schema
        self.num_rows = num_rows

    def __repr__(self) -> str:
        return f"ArrowStreamSplit({', '.join(map(str, self.paths))})"

    def batches(self, columns: list[str] | None = None, rows: int | None = None) -> Iterator[pa.Table]:
        rows = rows or batch_rows()
        return rebatch(self._read(columns), rows)

    def _read(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        for path in self.paths:
            with pa.OSFile(str(path)) as f:
                for batch in pa.ipc.open_stream(f):
                    yield batch.select(columns) if columns is not None else batch


def arrow_split(ds) -> pa.Table | ArrowStreamSplit:
    """A ``datasets.Dataset`` as a split: its Arrow files read in batches when the dataset is exactly them (no
    indices mapping, no transform replayed on the table), else its table."""
    table = ds.data
    files = [Path(f["filename"]) for f in ds.cache_files]
    plain = (
        ds._indices is None
        and files
        and not getattr(table, "replays", None)
        and all(p.suffix == ".arrow" and p.exists() for p in files)
    )
    if not plain:
        return table.table
    return ArrowStreamSplit(files, table.schema, ds.num_rows)


class _StreamedFile(LazySplit):
    """A text file read with one of Arrow's streaming readers; ``whole`` reads it the way it always was."""

    block_size: int

    def __init__(
        self, path: Path, whole: Callable[[Path], pa.Table], fix: Callable[[pa.Table], pa.Table]
    ) -> None:
        self.path = Path(path)
        self._whole_reader = whole
        self._fix = fix
        self._rows: int | None = None
        self._first = fix(pa.Table.from_batches([self._open().read_next_batch()]))
        self.schema = self._first.schema

    @classmethod
    def open(
        cls, path: Path, whole: Callable[[Path], pa.Table], fix: Callable[[pa.Table], pa.Table]
    ) -> _StreamedFile | pa.Table:
        """The file streamed, or (when even its first block does not read) read whole by ``whole``, which names
        what is wrong with it."""
        try:
            return cls(path, whole, fix)
        except Exception:  # the whole-file reader gives the one-line error (or reads what Arrow could not)
            return whole(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path})"

    def _open(self):
        raise NotImplementedError

    @property
    def num_rows(self) -> int:
        if self._rows is None:
            self._rows = sum(t.num_rows for t in self.batches(self.schema.names[:1]))
        return self._rows

    def fallback(self) -> pa.Table:
        if self._table is None:
            self._table = self._whole_reader(self.path)
        return self._table

    def _whole(self) -> pa.Table:
        return self.fallback()

    def select(self, columns: list[str]) -> pa.Table:
        return self.fallback().select(columns)

    def head(self, n: int) -> pa.Table:
        return self._first.slice(0, n)

    def batches(self, columns: list[str] | None = None, rows: int | None = None) -> Iterator[pa.Table]:
        if self._table is not None:
            return table_batches(self._table, columns, rows)
        return rebatch(self._stream(columns), rows or batch_rows())

    def _stream(self, columns: list[str] | None) -> Iterator[pa.Table]:
        reader = self._open()
        count = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowException, OSError, ValueError, UnicodeDecodeError):
                raise StreamChanged(self) from None
            try:
                table = self._fix(pa.Table.from_batches([batch]))
            except Exception:  # the whole-file reader says what is wrong, or reads what streaming cannot
                raise StreamChanged(self) from None
            if not table.schema.equals(self.schema):
                raise StreamChanged(self)
            try:
                table.validate(full=True)  # invalid UTF-8 is only found this way
            except pa.ArrowException:
                raise StreamChanged(self) from None
            count += table.num_rows
            yield table.select(columns) if columns is not None else table
        self._rows = count


class JsonLinesSplit(_StreamedFile):
    """A JSON Lines file (optionally .gz) read block by block."""

    block_size = 1 << 24  # what the whole-file reader uses, so the first block's types are the same

    def _open(self):
        return pajson.open_json(self.path, read_options=pajson.ReadOptions(block_size=self.block_size))


class CsvSplit(_StreamedFile):
    """A CSV file (optionally .gz) read block by block."""

    block_size = 1 << 20  # Arrow's default, what the whole-file reader infers the types from

    def _open(self):
        return pacsv.open_csv(self.path, read_options=pacsv.ReadOptions(block_size=self.block_size))


def known_rows(split: pa.Table | LazySplit) -> int | None:
    """The split's rows when known without reading it (a streamed text file: once it was read)."""
    if isinstance(split, _StreamedFile):
        return split._rows if split._table is None else split._table.num_rows
    return split.num_rows


def table_batches(
    table: pa.Table, columns: list[str] | None = None, rows: int | None = None
) -> Iterator[pa.Table]:
    """Consecutive slices of ``rows`` rows of a table (zero-copy)."""
    if columns is not None:
        table = table.select(columns)
    rows = rows or batch_rows(table.nbytes / table.num_rows if table.num_rows else None)
    for start in range(0, table.num_rows, rows):
        yield table.slice(start, rows)


def split_batches(
    split: pa.Table | LazySplit, columns: list[str] | None = None, rows: int | None = None
) -> Iterator[pa.Table]:
    """The split's rows in batches of ``rows`` rows (sized by :func:`prefkit.spill.batch_rows` by default)."""
    if isinstance(split, LazySplit):
        return split.batches(columns, rows)
    return table_batches(split, columns, rows)


def plain_type(dtype: pa.DataType) -> pa.DataType:
    """The type prefkit reads a column as: dictionary-encoded values as their values' type, binary as UTF-8 text,
    decimals as float64 (scores); lists and structs of them likewise. Other types are returned as they are."""
    if pa.types.is_dictionary(dtype):
        return plain_type(dtype.value_type)
    if pa.types.is_binary(dtype) or pa.types.is_fixed_size_binary(dtype):
        return pa.string()
    if pa.types.is_large_binary(dtype):
        return pa.large_string()
    if pa.types.is_decimal(dtype):
        return pa.float64()
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        inner = dtype.value_field.with_type(plain_type(dtype.value_type))
        return pa.list_(inner) if pa.types.is_list(dtype) else pa.large_list(inner)
    if pa.types.is_struct(dtype):
        return pa.struct([f.with_type(plain_type(f.type)) for f in dtype])
    return dtype


def plain_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_type(plain_type(f.type)) for f in schema], metadata=schema.metadata)


def plain_table(table: pa.Table) -> pa.Table:
    """``table`` cast to :func:`plain_schema` (no copy when it already is). Raises SourceError when a binary
    column holds bytes that are not UTF-8 text."""
    target = plain_schema(table.schema)
    if target.equals(table.schema):
        return table
    try:
        return table.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise SourceError(
            f"a column cannot be read as text or numbers: {' '.join(str(err).split())[:200]}",
            "store text columns as UTF-8 strings (not bytes) and numbers as ints or floats",
        ) from None


class PlainSplit(LazySplit):
    """A split whose columns need :func:`plain_type` (dictionary-encoded, binary or decimal columns), read through
    the split it wraps and cast batch by batch."""

    def __init__(self, inner: pa.Table | LazySplit) -> None:
        self.inner = inner
        self.schema = plain_schema(inner.schema)

    @property
    def num_rows(self) -> int:
        return self.inner.num_rows

    def __repr__(self) -> str:
        return f"PlainSplit({self.inner!r})"

    def batches(self, columns: list[str] | None = None, rows: int | None = None) -> Iterator[pa.Table]:
        for batch in split_batches(self.inner, columns, rows):
            yield plain_table(batch)


def plain_split(split: pa.Table | LazySplit) -> pa.Table | LazySplit:
    """``split`` itself when its columns are already plain, else read as :class:`PlainSplit`."""
    if plain_schema(split.schema).equals(split.schema):
        return split
    return plain_table(split) if isinstance(split, pa.Table) else PlainSplit(split)
