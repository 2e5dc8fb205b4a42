"""The two passes of a build over its rows, batch by batch, so memory follows the batch size and not the sources.

**Pass 1** (:func:`read_part`, one split of one source): every batch is normalised, validated and filtered
(row-local stages); what the build keeps of it is compact: one row per candidate pair in ``part.df``
(``source_index``, ``stage``, ``reason``, ``detail``, ``margin``, ``flag_*``, and the keys selections compare: content
and prompt hashes, which optional fields the row uses). The messages of the rows that may still be kept go to the
part's spill (with ``--top N`` only the rows among the best N so far), the source fields of the rows the rejects
will list go to its originals spill (:mod:`prefkit.spill`). ``--top`` / ``--max-rows`` then choose on ``part.df``.

Selections across the parts (weights, dedup, the quality pass, the leak-free split: :mod:`prefkit.select`) work on
the compact frames; the quality pass reads the kept rows' messages back from the spills batch by batch.

**Pass 2** (:func:`write_set`): per output split, the kept rows are read back from the spills in output order
(:func:`prefkit.spill.gather`), made records (ids over the set's fields), rendered or exported, and written to data
shards as they come (:class:`prefkit.output.ShardWriter`); statistics are accumulated per row
(:class:`prefkit.output.stats.SplitStats`); rejects are joined with their source fields and streamed to
``rejects/<split>.parquet``.

A split that fits in one batch goes through the same code in one batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from prefkit.accounting import Counts
from prefkit.record import MESSAGE_FIELDS, ROW_FIELDS
from prefkit.spill import SpillWriter, batch_rows, detached, gather

#: the column of the originals spill that holds the source row
SOURCE_ROW = "__prefkit_source_row"


@dataclass
class Needs:
    """What the build will need of every part's rows after pass 1 (from its options)."""

    exact: bool = False  # content hashes (--dedup)
    prompts: bool = False  # prompt keys (--one-pair-per-prompt, a test split)
    group: bool = False  # the source's group key (a test split)
    later_drops: bool = (
        False  # a non-selection drop may come after pass 1 (dedup, quality): keep their fields
    )
    full: bool = False  # --full-rejects: every row's every field
    top: int | None = None  # keep messages only of the best N kept rows so far
    first: int | None = None  # keep messages only of the first N kept rows

    @classmethod
    def of(cls, options: Any) -> Needs:
        sel = options.select
        test = sel.test_size is not None or sel.test_rows is not None
        quality = bool(sel.decontaminate or sel.near_dedup or sel.length_balance)
        first = sel.max_rows if sel.max_rows is not None and sel.seed is None and sel.top is None else None
        return cls(
            exact=sel.dedup,
            prompts=sel.one_pair_per_prompt or test,
            group=test,
            later_drops=sel.dedup or sel.one_pair_per_prompt or quality,
            full=options.output.full_rejects,
            top=sel.top,
            first=first,
        )


class TopRows:
    """The best ``n`` kept rows seen so far by ``--top``'s order (margin descending, a missing margin last, then
    source order): :meth:`admit` says which rows of a batch are among them now. A row that ends in the top ``n``
    of the whole split is among the best ``n`` of every prefix, so its messages are always kept."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.keys = np.empty(0, dtype=np.float64)
        self.rows = np.empty(0, dtype=np.int64)

    def admit(self, margins: np.ndarray, rows: np.ndarray) -> np.ndarray:
        keys = np.where(np.isnan(margins), -np.inf, margins)
        held = len(self.keys)
        all_keys = np.concatenate([self.keys, keys])
        all_rows = np.concatenate([self.rows, rows])
        best = np.lexsort((all_rows, -all_keys))[: self.n]
        self.keys, self.rows = all_keys[best], all_rows[best]
        admitted = np.zeros(len(rows), dtype=bool)
        admitted[best[best >= held] - held] = True
        return admitted


def field_bits(df: pl.DataFrame) -> pl.Series:
    """Per row, which optional record fields it uses (bit i: message field ``MESSAGE_FIELDS[i]`` in any message;
    bit 4 + j: row field ``ROW_FIELDS[j]``): a set's schema holds the fields its kept rows use
    (:func:`used_fields`)."""
    bits = pl.lit(0, dtype=pl.UInt8)
    for i, name in enumerate(MESSAGE_FIELDS):
        has = []
        for column in ("prompt", "chosen", "rejected"):
            dtype = df.schema.get(column)
            if not (isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct)):
                continue
            if name not in [f.name for f in dtype.inner.fields]:
                continue
            values = df[column].explode().struct.field(name)
            if values.null_count() == len(values):
                continue  # no message of the batch has it
            has.append(pl.col(column).list.eval(pl.element().struct.field(name).is_not_null()).list.any())
        if has:
            bits = bits | pl.when(pl.any_horizontal(has).fill_null(False)).then(1 << i).otherwise(0).cast(
                pl.UInt8
            )
    for j, name in enumerate(ROW_FIELDS):
        if name in df.columns and df[name].null_count() < df.height:
            bits = bits | pl.when(pl.col(name).is_not_null()).then(1 << (4 + j)).otherwise(0).cast(pl.UInt8)
    return df.select(bits.alias("_fields")).to_series()


def used_fields(parts: list[Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(message fields, row fields) some kept row of ``parts`` uses: what the set's schema holds."""
    bits = 0
    for part in parts:
        for value in part.df.filter(pl.col("stage") == "kept")["_fields"].unique().to_list():
            bits |= int(value or 0)
    message = tuple(f for i, f in enumerate(MESSAGE_FIELDS) if bits >> i & 1)
    row = tuple(f for j, f in enumerate(ROW_FIELDS) if bits >> (4 + j) & 1)
    return message, row


# ------------------------------------------------------------------------------------------------------- pass 1
def read_part(
    part: Any, index: int, options: Any, target_check: Any, work: Path, needs: Needs, progress: bool = False
) -> None:
    """Pass 1 over one part: ``part.df`` (compact rows, ``--top`` / ``--max-rows`` applied), ``part.spill``,
    ``part.originals``, ``part.unused``. Raises :class:`prefkit.sources.StreamChanged` when a streamed file
    turns out to need reading whole (the caller reads the part again)."""
    from prefkit.filters import require_margins
    from prefkit.formats import prepare
    from prefkit.progress import bar
    from prefkit.select import select_within
    from prefkit.sources import known_rows, split_batches

    reader = part.raw
    read = list(part.read_columns)
    unused = unused_candidates(part)
    inline = _cheap_columns(reader)
    columns = read + [c for c in unused if c not in read] if inline and unused else read
    mapping = prepare(part.mapping, reader.schema, lambda cols: split_batches(reader, cols))
    rows_out = SpillWriter(work / f"part-{index}-rows")
    originals = SpillWriter(work / f"part-{index}-originals")
    top = TopRows(needs.top) if needs.top is not None else None
    first_left = needs.first
    counts = dict.fromkeys(unused, 0) if inline else {}
    frames: list[pl.DataFrame] = []
    start = row = 0
    part.raw_schema = pa.schema([reader.schema.field(c) for c in read])
    sequential = target_check is not None or (mapping.facts or {}).get("sequential", False)
    batches = classified(
        split_batches(reader, columns), read, mapping, options, target_check, 1 if sequential else workers()
    )
    try:
        with bar(
            desc=f"reading {part.src.label} ({part.split})",
            total=known_rows(reader),
            show=progress,
            unit="row",
        ) as pbar:
            for batch, raw, df in batches:
                for name in counts:
                    column = batch.column(name)
                    counts[name] += len(column) - column.null_count
                rows = np.arange(row, row + df.height, dtype=np.int64)
                kept = (df["stage"] == "kept").to_numpy()
                keep = kept.copy()
                if top is not None and kept.any():
                    keep[kept] = top.admit(df["margin"].cast(pl.Float64).to_numpy()[kept], rows[kept])
                elif first_left is not None:
                    at = np.flatnonzero(kept)[first_left:]
                    keep[at] = False
                    first_left = max(0, first_left - int(kept.sum()))
                frames.append(compact(df, needs, keep, index))
                if part.template is None:
                    part.template = detached(spill_rows(df, np.zeros(df.height, dtype=bool), rows, mapping))
                if keep.any():
                    rows_out.write(spill_rows(df, keep, rows, mapping))
                want = ~kept | (keep if needs.later_drops else np.zeros(len(kept), dtype=bool))
                if needs.full:
                    want[:] = True
                if want.any():
                    source_rows = (
                        df.filter(pl.Series(want))["source_index"].unique(maintain_order=True).to_numpy()
                    )
                    taken = raw.take(pa.array(source_rows - start))
                    originals.write(taken.append_column(SOURCE_ROW, pa.array(source_rows, pa.int64())))
                start += raw.num_rows
                row += df.height
                pbar.update(raw.num_rows)
    except BaseException:  # a file that must be read whole after all, or an error: no half-written spill
        rows_out.close().remove()
        originals.close().remove()
        raise
    if not frames:  # no row at all: the columns of an empty batch
        empty = classify_batch(reader.schema.empty_table().select(read), mapping, options, target_check, 0)
        frames.append(compact(empty, needs, np.zeros(0, dtype=bool), index))
        part.template = spill_rows(empty, np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64), mapping)
    df = pl.concat(frames, how="vertical_relaxed") if len(frames) > 1 else frames[0]
    part.spill, part.originals = rows_out.close(), originals.close()
    sel = options.select
    ranked = [
        f
        for f, on in (
            ("--top", sel.top is not None),
            ("--min-margin", options.filters.min_margin is not None),
        )
        if on
    ]
    require_margins(df, ranked)
    part.df = select_within(df, sel.top, sel.max_rows, sel.seed)
    part.unused = unused_counts(part, unused, counts if inline else None)


def workers() -> int:
    """Batches classified at once: one per core, at most 4 (polars runs most list expressions of one batch on one
    core; two batches at once use both cores of a small machine). ``PREFKIT_WORKERS`` overrides it."""
    import os

    given = os.environ.get("PREFKIT_WORKERS")
    if given and given.isdigit() and int(given) > 0:
        return int(given)
    return max(1, min(4, os.cpu_count() or 1))


def classified(
    batches: Iterator[pa.Table], read: list[str], mapping: Any, options: Any, target_check: Any, threads: int
) -> Iterator[tuple[pa.Table, pa.Table, pl.DataFrame]]:
    """``(batch, its read columns, classified rows)`` for every batch, in order, ``threads`` batches classified at
    once (polars and Arrow release the GIL); at most ``threads + 1`` batches are held."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    if threads <= 1:
        start = 0
        for batch in batches:
            raw = batch.select(read)
            yield batch, raw, classify_batch(raw, mapping, options, target_check, start)
            start += raw.num_rows
        return
    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()
        start = 0
        for batch in batches:
            raw = batch.select(read)
            pending.append(
                (batch, raw, pool.submit(classify_batch, raw, mapping, options, target_check, start))
            )
            start += raw.num_rows
            if len(pending) >= threads:
                batch, raw, done = pending.popleft()
                yield batch, raw, done.result()
        while pending:
            batch, raw, done = pending.popleft()
            yield batch, raw, done.result()


def classify_batch(
    raw: pa.Table, mapping: Any, options: Any, target_check: Any = None, start: int = 0
) -> pl.DataFrame:
    """One batch of one split (its rows from ``start`` on): normalise, apply ``--system``, validate, filter.

    One row per candidate pair with ``stage`` / ``reason`` / ``detail`` and ``source_index``."""
    from prefkit.filters import classify
    from prefkit.formats import normalise
    from prefkit.formats.system import apply_system

    df = normalise(raw, mapping, start)
    df = apply_system(df, options.formats.system, options.formats.system_text)
    return classify(df, options.filters, target_check)


def compact(df: pl.DataFrame, needs: Needs, candidates: np.ndarray, index: int = 0) -> pl.DataFrame:
    """What pass 1 keeps of a classified batch: no message, only what counts and selections read (the source's
    group key as a hash seeded by the part's position ``index``, as the leak-free split links them)."""
    from prefkit.select.dedup import row_keys

    flags = [c for c in df.columns if c.startswith("flag_")]
    columns: list[Any] = [
        pl.col("source_index").cast(pl.Int64),
        "stage",
        "reason",
        pl.col("detail").cast(pl.String),
        pl.col("margin").cast(pl.Float64),
        *flags,
    ]
    if needs.group and "group" in df.columns:
        columns.append(pl.col("group").cast(pl.String).hash(seed=index).alias("_ghash"))
    out = detached(df.select(columns))  # not the batch's string buffers
    at = np.flatnonzero(candidates)
    rows = df[at] if len(at) < df.height else df
    fields = pl.Series("_fields", np.zeros(df.height, dtype=np.uint8), dtype=pl.UInt8)
    if len(at):
        fields = fields.scatter(at, field_bits(rows))
    keys = []
    for key in row_keys(rows, exact=needs.exact, prompts=needs.prompts):
        keys.append(
            key
            if len(at) == df.height
            else pl.Series(key.name, [None] * df.height, dtype=key.dtype).scatter(at, key)
        )
    return out.with_columns(*keys, fields)


def spill_rows(df: pl.DataFrame, keep: np.ndarray, rows: np.ndarray, mapping: Any) -> pl.DataFrame:
    """The messages (and the other record columns) of the rows that may still be kept, with ``_row``."""
    carry = list(mapping.extra.get("carry") or [])
    columns = ["source_index", "prompt", "chosen", "rejected", "score_chosen", "score_rejected"]
    columns += [c for c in ROW_FIELDS if c in df.columns] + [c for c in carry if c in df.columns]
    mask = pl.Series(keep)
    return df.filter(mask).select(pl.Series("_row", rows[keep], dtype=pl.Int64), *columns)


def _cheap_columns(reader: Any) -> bool:
    """A reader that parses every column anyway (text files) or holds them (a table): count unused columns while
    reading, instead of reading them again."""
    from prefkit.sources.splits import CsvSplit, JsonLinesSplit

    return isinstance(reader, (pa.Table, JsonLinesSplit, CsvSplit))


def unused_candidates(part: Any) -> list[str]:
    from prefkit.formats import used_columns

    read = set(used_columns(part.mapping)) | {"source", "source_index", "id"}
    return [c for c in part.raw.column_names if c not in read]


def unused_counts(part: Any, candidates: list[str], counted: dict[str, int] | None) -> dict[str, int]:
    """Source columns no mapping reads that hold values (name → non-null count): reported, never dropped in
    silence (a prefkit set's own bookkeeping columns are not listed)."""
    from prefkit.sources import non_null_counts

    counts = counted if counted is not None else non_null_counts(part.raw, candidates)
    return {c: n for c, n in counts.items() if n}


# ------------------------------------------------------------------------------------------------------- pass 2
def plan_rows(part: Any, where: pl.Expr | None) -> tuple[np.ndarray, np.ndarray]:
    """The part's rows in output order (``_row`` values): the kept rows (in ``--top`` order when it ranked
    them), then the upsampled copies; ``where``: only the rows on one side of a test split."""
    df = part.df
    inside = pl.lit(True) if where is None else where
    kept = df.with_row_index("_r").filter((pl.col("stage") == "kept") & inside)
    if "_rank" in kept.columns:
        kept = kept.sort("_rank")
    records = kept["_r"].cast(pl.Int64).to_numpy()
    copies = part.copies
    if copies is None or not copies.height or "_prow" not in df.columns:
        return records, np.empty(0, dtype=np.int64)
    if where is not None:
        copies = copies.join(df.select(pl.col("_prow").filter(where)), on="_prow", how="semi")
    return records, copies["_prow"].cast(pl.Int64).to_numpy()


def part_records(part: Any, where: pl.Expr | None, fields: tuple, work: Path) -> Iterator[pa.Table]:
    """The part's records for one output split, in output order, batch by batch (:func:`plan_rows`)."""
    from prefkit.record import to_records

    carry = tuple(part.mapping.extra.get("carry") or ())
    margin = part.df["margin"]
    for plan in plan_rows(part, where):
        if not len(plan):
            continue
        for frame in gather(part.spill, plan, work=work):
            frame = frame.with_columns(margin.gather(frame["_row"]).alias("margin"))
            yield to_records(frame, part.src.label, carry, fields)


class Originals:
    """A part's originals spill read alongside its rejects (both in source order): the source fields of the rows
    asked for, one row per row asked (null where not asked)."""

    def __init__(self, spill: Any, schema: pa.Schema) -> None:
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


def part_rejects(part: Any, full: bool, split_by_out: bool) -> Iterator[tuple[str, pa.Table]]:
    """The part's rejects in source order, batch by batch, each with the output split it goes to."""
    from prefkit.output.rejects import fields_wanted, reject_rows

    df = part.df.filter(pl.col("stage") != "kept")
    originals = Originals(part.originals, part.raw_schema)
    rows = batch_rows()
    for start in range(0, df.height, rows):
        chunk = df.slice(start, rows)
        wanted = fields_wanted(chunk, full).to_numpy()
        source_rows = np.where(wanted, chunk["source_index"].to_numpy(), -1)
        table = reject_rows(chunk, originals.take(source_rows), part.src.label)
        if not split_by_out:
            yield part.out, table
            continue
        sides = chunk["_out"]
        for name in ("train", "test"):
            mask = (sides == name).to_numpy()
            if mask.any():
                yield name, table.filter(pa.array(mask))


def output_groups(part: Any, split_by_out: bool) -> list[tuple[str, pl.Expr | None]]:
    from prefkit.select.splits import by_output_split

    return by_output_split(part.df) if split_by_out else [(part.out, None)]


def part_counts(part: Any, where: pl.Expr | None) -> Counts:
    """Counts of the part's rows on one side (``where``) or all."""
    df = part.df
    inside = df.select(pl.lit(True) if where is None else where).to_series()
    mine = df.filter(inside)
    read = mine["source_index"].n_unique()
    upsampled = len(plan_rows(part, where)[1])
    small = mine.select("stage", "reason", *[c for c in df.columns if c.startswith("flag_")])
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
    parts: list[Any],
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
    from prefkit.output import REJECTS_DIR, ParquetFile, ShardWriter
    from prefkit.output.exports import check_export
    from prefkit.output.rejects import REJECT_META, conform, original_name, rejects_schema
    from prefkit.output.stats import SplitStats
    from prefkit.progress import bar

    export = check_export(options.output.export)
    text = options.chat.output_format == "text" and target is not None

    def shape(records: pa.Table) -> pa.Table:
        if text:
            from prefkit.chat.render import text_table

            records = text_table(records, target)
        return export.rows(records) if export.name != "trl" else records

    groups = [(i, name, where) for i, p in enumerate(parts) for name, where in output_groups(p, split_by_out)]
    names = list(dict.fromkeys(name for _, name, _ in groups))
    sinks = {n: SplitSink(ShardWriter(folder / "data", n), SplitStats()) for n in names}
    # rejects: one schema per split over the parts that have rows on it
    schemas: dict[str, list[pa.Schema]] = {n: [] for n in names}
    for i, name, _ in groups:
        raw = parts[i].raw_schema
        fields_ = [pa.field(original_name(f.name), f.type) for f in raw]
        schemas[name].append(pa.schema([*REJECT_META, *fields_]))
    unified = {n: rejects_schema(s) for n, s in schemas.items()}
    rejects = {
        n: ParquetFile(folder / REJECTS_DIR / f"{n}.parquet", unified[n][0], dictionary=False) for n in names
    }
    choose = export.choose is not None and export.keys is not None
    with bar(
        desc="writing",
        total=sum(len(plan_rows(parts[i], w)[0]) for i, _, w in groups),
        show=progress,
        unit="row",
    ) as pbar:
        if choose:  # the shape chooses over the whole split: its keys first, then the rows
            for i, name, where in groups:
                for records in part_records(parts[i], where, fields, work):
                    sinks[name].keys.append(export.keys(records))  # type: ignore[misc]
                    sinks[name].pairs += records.num_rows
            for sink in sinks.values():
                keys = (
                    pl.concat(sink.keys)
                    if sink.keys
                    else pl.DataFrame(schema={"_k": pl.UInt64, "label": pl.Boolean})
                )
                sink.keep, sink.export_stats = export.choose(keys, sink.pairs)  # type: ignore[misc]
                sink.keys = []
        for i, name, where in groups:
            sink = sinks[name]
            for records in part_records(parts[i], where, fields, work):
                table = shape(records)
                if sink.keep is not None:
                    mask = sink.keep[sink.at : sink.at + table.num_rows]
                    sink.at += table.num_rows
                    table = table.filter(pa.array(mask))
                sink.shards.write(table)
                sink.stats.add(table)
                pbar.update(records.num_rows)
        for part in parts:
            for name, table in part_rejects(part, options.output.full_rejects, split_by_out):
                schema, clash = unified[name]
                rejects[name].write(conform(table, schema, clash))
    out: dict[str, Any] = {}
    for name, sink in sinks.items():
        files = sink.shards.close()
        rejects[name].close()
        schema = sink.shards.schema
        if schema is None:  # no row: an empty table of the split's shape
            first = next(i for i, n, _ in groups if n == name)
            sink.empty = shape(empty_records(parts[first], fields))
        rows = sink.shards.rows
        out[name] = {
            "files": files,
            "schema": schema,
            "empty": sink.empty,
            "stats": sink.stats.result(list(schema.names)) if schema is not None and rows else None,
            "export": sink.export_stats if sink.export_stats is not None else {"rows": rows},
        }
    return out


def empty_records(part: Any, fields: tuple) -> pa.Table:
    """The records of a part with no row: the columns a split of its rows would have."""
    from prefkit.record import to_records

    frame = part.template.with_columns(pl.lit(None, dtype=pl.Float64).alias("margin"))
    return to_records(frame, part.src.label, tuple(part.mapping.extra.get("carry") or ()), fields)
