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
    index = pl.select(pl.when(pl.lit(fields_wanted(df, full))).then(pl.lit(df["source_index"]))).to_series()
    return reject_rows(df, raw.take(index.to_arrow()), source_label)


def fields_wanted(df: pl.DataFrame, full: bool = False) -> pl.Series:
    """Which rejected rows carry their original fields: all with ``full``, else those not dropped by a selection."""
    if full:
        return pl.Series([True] * df.height, dtype=pl.Boolean)
    return ~df["reason"].is_in(list(selection_reasons()))


def reject_rows(df: pl.DataFrame, original: pa.Table, source_label: str) -> pa.Table:
    """The rejects' rows of ``df`` (its ``source_index``, ``stage``, ``reason``, ``margin``, ``detail``) with the
    ``original`` fields of each (one row per row of ``df``, null where not kept)."""
    detail = pl.col("detail") if "detail" in df.columns else pl.lit(None, dtype=pl.String).alias("detail")
    meta = df.select(
        pl.lit(source_label, dtype=pl.String).alias("source"),
        "source_index",
        "stage",
        "reason",
        "margin",
        detail,
    )
    meta_table = meta.to_arrow().cast(REJECT_META)
    for name in original.column_names:
        meta_table = meta_table.append_column(original_name(name), original.column(name))
    return meta_table


def original_name(name: str) -> str:
    """A source column's name in the rejects (``original.<name>`` where it would clash with a rejects column)."""
    return f"original.{name}" if name in REJECT_META.names else name


def rejects_schema(schemas: list[pa.Schema]) -> tuple[pa.Schema, set[str]]:
    """The one schema of several sources' rejects, and the original fields whose types clash between sources
    (written as text: strings as they are, messages and other values as JSON, so nothing is lost)."""
    types: dict[str, set] = {}
    for schema in schemas:
        for f in schema:
            if not pa.types.is_null(f.type):
                types.setdefault(f.name, set()).add(f.type)
    clash = {name for name, ts in types.items() if len(ts) > 1}
    fixed = [
        pa.schema([f.with_type(pa.string()) if f.name in clash else f for f in schema]) for schema in schemas
    ]
    return pa.unify_schemas(fixed, promote_options="permissive"), clash


def conform(table: pa.Table, schema: pa.Schema, clash: set[str]) -> pa.Table:
    """``table`` in the rejects' one ``schema`` (:func:`rejects_schema`): clashing fields as text, missing
    columns as nulls."""
    for name in clash & set(table.column_names):
        table = table.set_column(table.column_names.index(name), name, _as_text(table.column(name)))
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def concat_rejects(tables: list[pa.Table]) -> pa.Table:
    """Rejects of several sources in one table. An original field whose type differs between sources (``chosen``
    as a string in one, messages in another) becomes text in every source: strings stay as they are, messages and
    other values are written as JSON, so nothing is lost."""
    schema, clash = rejects_schema([t.schema for t in tables])
    return pa.concat_tables([conform(t, schema, clash) for t in tables])


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
