"""Pass 1 of a build: every batch of a source split normalised, validated and filtered; what the build keeps of
it is compact (:class:`Needs`), the messages of rows that may still be kept are spilled (:mod:`prefkit.spill`)."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from prefkit.filters import classify, require_margins
from prefkit.filters.exportable import export_refusals
from prefkit.formats import normalise, prepare, used_columns
from prefkit.formats.base import ColumnMapping
from prefkit.formats.system import apply_system
from prefkit.frame import (
    DETAIL,
    FIELDS,
    GROUP,
    GROUP_HASH,
    MARGIN,
    REASON,
    ROW,
    SOURCE_INDEX,
    STAGE,
    Stage,
    flag_columns,
    kept,
)
from prefkit.output.exports import check_export
from prefkit.progress import bar
from prefkit.record import MESSAGE_FIELDS, ROW_FIELDS
from prefkit.select import select_within
from prefkit.select.dedup import row_keys
from prefkit.sources import non_null_counts
from prefkit.sources.splits import CsvSplit, JsonLinesSplit, known_rows, split_batches
from prefkit.spill import SpillWriter, detached
from prefkit.stream.part import Part

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
    return df.select(bits.alias(FIELDS)).to_series()


def used_fields(parts: list[Part]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(message fields, row fields) some kept row of ``parts`` uses: what the set's schema holds."""
    bits = 0
    for part in parts:
        for value in part.df.filter(kept())[FIELDS].unique().to_list():
            bits |= int(value or 0)
    message = tuple(f for i, f in enumerate(MESSAGE_FIELDS) if bits >> i & 1)
    row = tuple(f for j, f in enumerate(ROW_FIELDS) if bits >> (4 + j) & 1)
    return message, row


def read_part(
    part: Part, index: int, options: Any, target_check: Any, work: Path, needs: Needs, progress: bool = False
) -> None:
    """Pass 1 over one part: ``part.df`` (compact rows, ``--top`` / ``--max-rows`` applied), ``part.spill``,
    ``part.originals``, ``part.unused``. Raises :class:`prefkit.sources.StreamChanged` when a streamed file
    turns out to need reading whole (the caller reads the part again)."""

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
                is_kept, keep, first_left = _admitted(df, rows, top, first_left)
                frames.append(compact(df, needs, keep, index))
                if part.template is None:
                    part.template = detached(spill_rows(df, np.zeros(df.height, dtype=bool), rows, mapping))
                if keep.any():
                    rows_out.write(spill_rows(df, keep, rows, mapping))
                spill_originals(originals, df, raw, start, ~is_kept | (keep & needs.later_drops) | needs.full)
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
    part.df = select_part(df, options)
    part.unused = unused_counts(part, unused, counts if inline else None)


def _admitted(
    df: pl.DataFrame, rows: np.ndarray, top: TopRows | None, first_left: int | None
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Which rows of a classified batch the filters kept, which of them go on to pass 2 (``--top``'s bounded heap of
    margins, or ``--max-rows``' first rows) and how many more ``--max-rows`` still admits (bool arrays, int)."""
    is_kept = (df[STAGE] == Stage.KEPT.value).to_numpy()
    keep = is_kept.copy()
    if top is not None and is_kept.any():
        keep[is_kept] = top.admit(df[MARGIN].cast(pl.Float64).to_numpy()[is_kept], rows[is_kept])
    elif first_left is not None:
        keep[np.flatnonzero(is_kept)[first_left:]] = False
        first_left = max(0, first_left - int(is_kept.sum()))
    return is_kept, keep, first_left


def spill_originals(
    originals: SpillWriter, df: pl.DataFrame, raw: pa.Table, start: int, want: np.ndarray
) -> None:
    """Spill the source fields of the batch's rows that ``want`` marks (classified rows of ``df``; ``raw`` holds
    the batch's source rows from ``start`` on), with their source row (:data:`SOURCE_ROW`)."""
    if not want.any():
        return
    source_rows = df.filter(pl.Series(want))[SOURCE_INDEX].unique(maintain_order=True).to_numpy()
    taken = raw.take(pa.array(source_rows - start))
    originals.write(taken.append_column(SOURCE_ROW, pa.array(source_rows, pa.int64())))


def select_part(df: pl.DataFrame, options: Any) -> pl.DataFrame:
    """``--top`` / ``--max-rows`` within a part (:func:`prefkit.select.select_within`), once every row of it is
    classified; ``--top`` and ``--min-margin`` need margins (:func:`prefkit.filters.require_margins`)."""

    sel = options.select
    ranked = [
        flag
        for flag, on in (
            ("--top", sel.top is not None),
            ("--min-margin", options.filters.min_margin is not None),
        )
        if on
    ]
    require_margins(df, ranked)
    return select_within(df, sel.top, sel.max_rows, sel.seed)


def workers() -> int:
    """Batches classified at once: one per core, at most 4 (polars runs most list expressions of one batch on one
    core; two batches at once use both cores of a small machine). ``PREFKIT_WORKERS`` overrides it."""

    given = os.environ.get("PREFKIT_WORKERS")
    if given and given.isdigit() and int(given) > 0:
        return int(given)
    return max(1, min(4, os.cpu_count() or 1))


def classified(
    batches: Iterator[pa.Table],
    read: list[str],
    mapping: ColumnMapping,
    options: Any,
    target_check: Any,
    threads: int,
) -> Iterator[tuple[pa.Table, pa.Table, pl.DataFrame]]:
    """``(batch, its read columns, classified rows)`` for every batch, in order, ``threads`` batches classified at
    once (polars and Arrow release the GIL); at most ``threads + 1`` batches are held."""

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
    raw: pa.Table, mapping: ColumnMapping, options: Any, target_check: Any = None, start: int = 0
) -> pl.DataFrame:
    """One batch of one split (its rows from ``start`` on): normalise, apply ``--system``, validate, filter.

    One row per candidate pair with ``stage`` / ``reason`` / ``detail`` and ``source_index``; rows the
    ``--export`` shape's trainer cannot carry are dropped as ``export_unsupported``."""

    df = normalise(raw, mapping, start)
    df = apply_system(df, options.formats.system, options.formats.system_text)
    df = classify(df, options.filters, target_check)
    cannot = check_export(options.output.export).cannot
    return df if cannot is None else export_refusals(df, cannot)


def compact(df: pl.DataFrame, needs: Needs, candidates: np.ndarray, index: int = 0) -> pl.DataFrame:
    """What pass 1 keeps of a classified batch: no message, only what counts and selections read (the source's
    group key as a hash seeded by the part's position ``index``, as the leak-free split links them)."""

    columns: list[Any] = [
        pl.col(SOURCE_INDEX).cast(pl.Int64),
        STAGE,
        REASON,
        pl.col(DETAIL).cast(pl.String),
        pl.col(MARGIN).cast(pl.Float64),
        *flag_columns(df.columns),
    ]
    if needs.group and GROUP in df.columns:
        columns.append(pl.col(GROUP).cast(pl.String).hash(seed=index).alias(GROUP_HASH))
    out = detached(df.select(columns))  # not the batch's string buffers
    at = np.flatnonzero(candidates)
    rows = df[at] if len(at) < df.height else df
    fields = pl.Series(FIELDS, np.zeros(df.height, dtype=np.uint8), dtype=pl.UInt8)
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


def spill_rows(df: pl.DataFrame, keep: np.ndarray, rows: np.ndarray, mapping: ColumnMapping) -> pl.DataFrame:
    """The messages (and the other record columns) of the rows that may still be kept, with ``_row``."""
    carry = list(mapping.extra.get("carry") or [])
    columns = [SOURCE_INDEX, "prompt", "chosen", "rejected", "score_chosen", "score_rejected"]
    columns += [c for c in ROW_FIELDS if c in df.columns] + [c for c in carry if c in df.columns]
    mask = pl.Series(keep)
    return df.filter(mask).select(pl.Series(ROW, rows[keep], dtype=pl.Int64), *columns)


def _cheap_columns(reader: Any) -> bool:
    """A reader that parses every column anyway (text files) or holds them (a table): count unused columns while
    reading, instead of reading them again."""

    return isinstance(reader, (pa.Table, JsonLinesSplit, CsvSplit))


def unused_candidates(part: Part) -> list[str]:
    read = set(used_columns(part.mapping)) | {"source", SOURCE_INDEX, "id"}
    return [c for c in part.raw.column_names if c not in read]


def unused_counts(part: Part, candidates: list[str], counted: dict[str, int] | None) -> dict[str, int]:
    """Source columns no mapping reads that hold values (name → non-null count): reported, never dropped in
    silence (a prefkit set's own bookkeeping columns are not listed)."""

    counts = counted if counted is not None else non_null_counts(part.raw, candidates)
    return {c: n for c, n in counts.items() if n}
