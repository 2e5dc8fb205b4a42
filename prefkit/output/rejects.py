"""Rejects: every row not kept, with where it came from, why, and its original fields
(``OUT/rejects/<split>.parquet``)."""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa

from prefkit.accounting import selection_reasons

REJECT_META = pa.schema(
    [
        ("source", pa.string()),
        ("source_index", pa.int64()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("margin", pa.float64()),
        ("detail", pa.string()),
    ]
)


def reject_table(df: pl.DataFrame, raw: pa.Table, source_label: str, full: bool = False) -> pa.Table:
    """Rows not kept: source, source_index, stage, reason, margin, detail, then the row's original fields.

    ``detail`` says more about the reason where there is more to say (the residue marker found, the template's
    message, the row a near-duplicate kept), else null.
    The original fields are the source columns the build read (its mapping), or all columns with ``full``.
    Rows dropped by a selection (``--top``, ``--max-rows``) carry null original fields unless ``full``: they are
    good rows not chosen, often most of the source, and ``source_index`` at the pinned revision finds them.
    """
    detail = pl.col("detail") if "detail" in df.columns else pl.lit(None, dtype=pl.String).alias("detail")
    meta = df.select(
        pl.lit(source_label).alias("source"), "source_index", "stage", "reason", "margin", detail
    )
    meta_table = meta.to_arrow().cast(REJECT_META)
    index = meta["source_index"]
    if not full:
        index = pl.select(
            pl.when(~pl.lit(meta["reason"]).is_in(list(selection_reasons()))).then(pl.lit(index))
        ).to_series()
    original = raw.take(index.to_arrow())
    for name in original.column_names:
        column = original.column(name)
        meta_table = meta_table.append_column(
            f"original.{name}" if name in REJECT_META.names else name, column
        )
    return meta_table


def concat_rejects(tables: list[pa.Table]) -> pa.Table:
    """Rejects of several sources in one table. An original field whose type differs between sources (``chosen``
    as a string in one, messages in another) becomes text in every source: strings stay as they are, messages and
    other values are written as JSON, so nothing is lost."""
    types: dict[str, set] = {}
    for t in tables:
        for f in t.schema:
            if not pa.types.is_null(f.type):
                types.setdefault(f.name, set()).add(f.type)
    clash = {name for name, ts in types.items() if len(ts) > 1}
    if clash:
        fixed = []
        for t in tables:
            for name in clash & set(t.column_names):
                t = t.set_column(t.column_names.index(name), name, _as_text(t.column(name)))
            fixed.append(t)
        tables = fixed
    return pa.concat_tables(tables, promote_options="permissive")


def _as_text(column: pa.ChunkedArray) -> pa.Array:
    """A column as strings: strings unchanged, message lists as JSON arrays, anything else as JSON."""
    t = column.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return column.cast(pa.string())
    series = pl.from_arrow(column)
    if (
        isinstance(series, pl.Series)
        and isinstance(series.dtype, pl.List)
        and isinstance(series.dtype.inner, pl.Struct)
    ):
        encoded = pl.select(
            pl.when(pl.lit(series).is_not_null()).then(
                "[" + pl.lit(series).list.eval(pl.element().struct.json_encode()).list.join(",") + "]"
            )
        ).to_series()
        return encoded.to_arrow().cast(pa.string())
    return pa.array(
        [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()], pa.string()
    )
