"""Pass 2 of a build: the kept rows read back from the spills in output order, made records and written as they
come (data shards, statistics, rejects); and the counts of every part."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from prefkit.accounting import Counts
from prefkit.chat.render import plain_table, text_table
from prefkit.filters.tokens import TEMPLATE_REFUSED
from prefkit.frame import (
    DETAIL,
    MARGIN,
    OUT,
    PROW,
    RANK,
    REASON,
    ROW,
    SOURCE_INDEX,
    STAGE,
    TEST,
    TRAIN,
    flag_columns,
    kept,
)
from prefkit.output import REJECTS_DIR, ParquetFile, ShardWriter
from prefkit.output.exports import check_export
from prefkit.output.rejects import (
    REJECT_META,
    conform,
    fields_wanted,
    original_name,
    reject_rows,
    rejects_schema,
)
from prefkit.output.stats import SplitStats
from prefkit.progress import bar
from prefkit.record import to_records
from prefkit.select.splits import by_output_split
from prefkit.spill import Spill, batch_rows, gather
from prefkit.stream.part import Part
from prefkit.stream.read import SOURCE_ROW


def plan_rows(part: Part, where: pl.Expr | None) -> tuple[np.ndarray, np.ndarray]:
    """The part's rows in output order (``_row`` values): the kept rows (in ``--top`` order when it ranked
    them), then the upsampled copies; ``where``: only the rows on one side of a test split."""
    df = part.df
    inside = pl.lit(True) if where is None else where
    rows = df.with_row_index("_r").filter(kept() & inside)
    if RANK in rows.columns:
        rows = rows.sort(RANK)
    records = rows["_r"].cast(pl.Int64).to_numpy()
    copies = part.copies
    if copies is None or not copies.height or PROW not in df.columns:
        return records, np.empty(0, dtype=np.int64)
    if where is not None:
        copies = copies.join(df.select(pl.col(PROW).filter(where)), on=PROW, how="semi")
    return records, copies[PROW].cast(pl.Int64).to_numpy()


def part_records(part: Part, where: pl.Expr | None, fields: tuple, work: Path) -> Iterator[pa.Table]:
    """The part's records for one output split, in output order, batch by batch (:func:`plan_rows`)."""

    carry = tuple(part.mapping.extra.get("carry") or ())
    margin = part.df[MARGIN]
    spill = _spill(part)
    for plan in plan_rows(part, where):
        if not len(plan):
            continue
        for frame in gather(spill, plan, work=work):
            frame = frame.with_columns(margin.gather(frame[ROW]).alias(MARGIN))
            yield to_records(frame, part.src.label, carry, fields)


def _spill(part: Part) -> Spill:
    if part.spill is None:
        raise RuntimeError(f"{part.src.label} ({part.split}) has not been read yet")
    return part.spill


def _raw_schema(part: Part) -> pa.Schema:
    if part.raw_schema is None:
        raise RuntimeError(f"{part.src.label} ({part.split}) has not been read yet")
    return part.raw_schema


class Originals:
    """A part's originals spill read alongside its rejects (both in source order): the source fields of the rows
    asked for, one row per row asked (null where not asked)."""

    def __init__(self, spill: Spill | None, schema: pa.Schema) -> None:
        self._batches = spill.batches() if spill is not None else iter(())
        self._schema = schema
        self._table = schema.empty_table()
        self._rows = np.empty(0, dtype=np.int64)

    def take(self, source_rows: np.ndarray) -> pa.Table:
        """``source_rows``: non-decreasing over calls, ``-1`` for a row without fields."""
        asked = source_rows >= 0
        if asked.any():
            low, high = source_rows[asked].min(), source_rows[asked].max()
            cut = int(np.searchsorted(self._rows, low))
            self._table, self._rows = self._table.slice(cut), self._rows[cut:]
            while not len(self._rows) or self._rows[-1] < high:
                batch = next(self._batches, None)
                if batch is None:
                    break
                rows = batch.column(SOURCE_ROW).to_numpy()
                batch = batch.drop_columns([SOURCE_ROW])
                self._table = pa.concat_tables([self._table, batch], promote_options="permissive")
                self._rows = np.concatenate([self._rows, rows])
        at = np.searchsorted(self._rows, np.where(asked, source_rows, 0))
        at = np.minimum(at, max(len(self._rows) - 1, 0))
        if asked.any() and not (self._rows[at[asked]] == source_rows[asked]).all():
            raise AssertionError("a rejected row's source fields were not kept")
        if not len(self._rows):
            columns = [pa.nulls(len(source_rows), f.type) for f in self._schema]
            return pa.Table.from_arrays(columns, schema=self._schema)
        return self._table.take(pa.array(at, mask=~asked))


def part_rejects(part: Part, full: bool, split_by_out: bool) -> Iterator[tuple[str, pa.Table]]:
    """The part's rejects in source order, batch by batch, each with the output split it goes to."""

    df = part.df.filter(~kept())
    originals = Originals(part.originals, _raw_schema(part))
    rows = batch_rows()
    for start in range(0, df.height, rows):
        chunk = df.slice(start, rows)
        wanted = fields_wanted(chunk, full).to_numpy()
        source_rows = np.where(wanted, chunk[SOURCE_INDEX].to_numpy(), -1)
        table = reject_rows(chunk, originals.take(source_rows), part.src.label)
        if not split_by_out:
            yield part.out, table
            continue
        sides = chunk[OUT]
        for name in (TRAIN, TEST):
            mask = (sides == name).to_numpy()
            if mask.any():
                yield name, table.filter(pa.array(mask))


def output_groups(part: Part, split_by_out: bool) -> list[tuple[str, pl.Expr | None]]:
    if split_by_out:
        return list(by_output_split(part.df))
    return [(part.out, None)]


def part_counts(part: Part, where: pl.Expr | None) -> Counts:
    """Counts of the part's rows on one side (``where``) or all."""
    df = part.df
    inside = df.select(pl.lit(True) if where is None else where).to_series()
    mine = df.filter(inside)
    read = mine[SOURCE_INDEX].n_unique()
    upsampled = len(plan_rows(part, where)[1])
    small = mine.select(STAGE, REASON, *flag_columns(df.columns))
    return Counts.of_frame(small, read=read, upsampled=upsampled)


@dataclass
class SplitSink:
    """What pass 2 writes for one output split."""

    shards: Any  # prefkit.output.ShardWriter
    stats: Any  # prefkit.output.stats.SplitStats
    keys: list[pl.DataFrame] = field(default_factory=list)
    keep: np.ndarray | None = None
    pairs: int = 0
    at: int = 0
    export_stats: dict | None = None
    empty: pa.Table | None = None


def write_set(
    parts: list[Part],
    folder: Path,
    work: Path,
    options: Any,
    target: Any,
    fields: tuple,
    split_by_out: bool,
    progress: bool = False,
) -> dict[str, Any]:
    """Pass 2: every output split's data shards and rejects under ``folder``. Returns per split its ``files``
    (paths), ``schema`` (None when it kept no row), ``stats`` (:func:`prefkit.output.stats.split_stats` of what
    was written) and the export's ``export`` stats."""
    export = check_export(options.output.export)
    shape = _shaper(options, target, export)
    groups = [(i, name, where) for i, p in enumerate(parts) for name, where in output_groups(p, split_by_out)]
    names = list(dict.fromkeys(name for _, name, _ in groups))
    sinks = {n: SplitSink(ShardWriter(folder / "data", n), SplitStats()) for n in names}
    unified, rejects = rejects_files(parts, groups, folder)
    total = sum(len(plan_rows(parts[i], w)[0]) for i, _, w in groups)
    with bar(desc="writing", total=total, show=progress, unit="row") as pbar:
        if export.choose is not None and export.keys is not None:  # the shape chooses over the whole split
            _choose(parts, groups, sinks, export, (fields, work))
        for i, name, where in groups:
            for records in part_records(parts[i], where, fields, work):
                _write(sinks[name], shape(records))
                pbar.update(records.num_rows)
        for part in parts:
            for name, table in part_rejects(part, options.output.full_rejects, split_by_out):
                schema, clash = unified[name]
                rejects[name].write(conform(table, schema, clash))
    out: dict[str, Any] = {}
    for name, sink in sinks.items():
        rejects[name].close()
        first = parts[next(i for i, n, _ in groups if n == name)]
        out[name] = _split_result(sink, partial(_empty_split, first, fields, shape))
    return out


def _shaper(options: Any, target: Any, export: Any) -> Callable[[pa.Table], pa.Table]:
    """What a batch of records becomes in the data files: TRL's plain text rows (``--output-format plain``), rows
    rendered with the target's template (``text``), or the export's shape."""
    text = options.chat.output_format == "text" and target is not None
    plain = options.chat.output_format == "plain"

    def shape(records: pa.Table) -> pa.Table:
        if plain:
            return plain_table(records)
        if text:
            records = text_table(records, target)
        return records if export.trl_shape else export.rows(records)

    return shape


def _choose(parts: list[Part], groups: list, sinks: dict[str, SplitSink], export: Any, where: tuple) -> None:
    """An export that chooses over the whole split (KTO writes a completion once per split): its keys of every
    record first, then which rows each split keeps (``sink.keep``) and the export's statistics."""
    fields, work = where
    for i, name, part_where in groups:
        for records in part_records(parts[i], part_where, fields, work):
            sinks[name].keys.append(export.keys(records))
            sinks[name].pairs += records.num_rows
    for sink in sinks.values():
        keys = pl.concat(sink.keys) if sink.keys else pl.DataFrame(schema={"_k": pl.UInt64, "label": pl.Boolean})
        sink.keep, sink.export_stats = export.choose(keys, sink.pairs)
        sink.keys = []


def _write(sink: SplitSink, table: pa.Table) -> None:
    """One shaped batch into its split's shards and statistics (the rows the export chose, when it chose)."""
    if sink.keep is not None:
        mask = sink.keep[sink.at : sink.at + table.num_rows]
        sink.at += table.num_rows
        table = table.filter(pa.array(mask))
    sink.shards.write(table)
    sink.stats.add(table)


def _empty_split(part: Part, fields: tuple, shape: Callable[[pa.Table], pa.Table]) -> pa.Table:
    """An empty table of the shape a split's rows would have had (a split that kept no row)."""
    return shape(empty_records(part, fields))


def _split_result(sink: SplitSink, empty: Callable[[], pa.Table]) -> dict[str, Any]:
    """One output split's files, schema, statistics and export statistics (``empty()``: the split's shape when
    it kept no row)."""
    files = sink.shards.close()
    schema = sink.shards.schema
    if schema is None:  # no row: an empty table of the split's shape
        sink.empty = empty()
    rows = sink.shards.rows
    return {
        "files": files,
        "schema": schema,
        "empty": sink.empty,
        "stats": sink.stats.result(list(schema.names)) if schema is not None and rows else None,
        "export": sink.export_stats if sink.export_stats is not None else {"rows": rows},
    }


def rejects_files(
    parts: list[Part], groups: list[tuple[int, str, Any]], folder: Path
) -> tuple[dict[str, tuple], dict[str, Any]]:
    """Per output split, the rejects schema over the parts that have rows on it
    (:func:`prefkit.output.rejects.rejects_schema`: ``(schema, clashing names)``) and its open
    ``rejects/<split>.parquet``."""

    schemas: dict[str, list[pa.Schema]] = {}
    for i, name, _ in groups:
        fields = [pa.field(original_name(f.name), f.type) for f in _raw_schema(parts[i])]
        schemas.setdefault(name, []).append(pa.schema([*REJECT_META, *fields]))
    unified = {n: rejects_schema(s) for n, s in schemas.items()}
    files = {
        n: ParquetFile(folder / REJECTS_DIR / f"{n}.parquet", unified[n][0], dictionary=False)
        for n in unified
    }
    return unified, files


def empty_records(part: Part, fields: tuple) -> pa.Table:
    """The records of a part with no row: the columns a split of its rows would have."""

    if part.template is None:
        raise RuntimeError(f"{part.src.label} ({part.split}) has not been read yet")
    frame = part.template.with_columns(pl.lit(None, dtype=pl.Float64).alias(MARGIN))
    return to_records(frame, part.src.label, tuple(part.mapping.extra.get("carry") or ()), fields)


def count_parts(parts: list[Part], split_by_out: bool) -> tuple[dict[str, dict], list[dict]]:
    """The counts per output split, and each source split's description (format, counts, unused columns)."""
    counts: dict[str, Counts] = {}
    described = []
    for part in parts:
        part_total = Counts()
        for out_name, where in output_groups(part, split_by_out):
            c = part_counts(part, where)
            counts[out_name] = counts.get(out_name, Counts()) + c
            part_total = part_total + c
        described.append(
            {
                "source": part.src.label,
                "split": part.split,
                "format": part.mapping.to_dict(),
                "counts": part_total.to_dict(),
                **({"unused_columns": part.unused} if part.unused else {}),
            }
        )
    return {n: c.to_dict() for n, c in counts.items()}, described


def refused_rows(parts: list[Part], split_by_out: bool) -> dict[str, pa.Table]:
    """Per output split, the ``reason`` and ``detail`` of the rows the target template refused (in rejects
    order): what :func:`prefkit.filters.tokens.refusal_warnings` reports."""

    found: dict[str, list[pl.DataFrame]] = {}
    for part in parts:
        for out_name, where in output_groups(part, split_by_out):
            inside = pl.lit(True) if where is None else where
            rows = part.df.filter(inside & (pl.col(REASON) == TEMPLATE_REFUSED.name)).select(REASON, DETAIL)
            found.setdefault(out_name, []).append(rows)
    return {name: pl.concat(frames).to_arrow() for name, frames in found.items()}
