"""Rows the ``--export`` shape's trainer cannot carry: dropped as ``export_unsupported`` while the build reads
them, with what the trainer has no place for as the rejects' detail, so an export never strips a field in
silence (the rules per trainer: :mod:`prefkit.output.shapes`)."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from prefkit.accounting import Reason, declare, drop_where
from prefkit.frame import kept
from prefkit.record import MESSAGE_FIELDS, decode_row

(EXPORT_UNSUPPORTED,) = declare(
    Reason(
        "export_unsupported",
        "dropped",
        "the --export shape's trainer has no place for something the row uses (tools, tool calls, reasoning, "
        "per-row template arguments, a multi-message answer); the rejects' detail names it",
    ),
)

#: the columns a check reads
_COLUMNS = ("prompt", "chosen", "rejected", "tools", "chat_template_kwargs")


def plain_rows(df: pl.DataFrame) -> pl.Expr:
    """Rows every trainer carries whole, found without decoding them: one-message answers, no optional message
    field set and no ``tools`` / ``chat_template_kwargs`` (a prompt of such rows alternates user / assistant and
    ends with a user turn, by the record's validation)."""

    plain = (pl.col("chosen").list.len() == 1) & (pl.col("rejected").list.len() == 1)
    for column in ("prompt", "chosen", "rejected"):
        dtype = df.schema[column]
        inner = dtype.inner if isinstance(dtype, pl.List) else None
        names = [f.name for f in inner.fields] if isinstance(inner, pl.Struct) else []
        for name in (n for n in MESSAGE_FIELDS if n in names):
            plain = (
                plain & ~pl.col(column).list.eval(pl.element().struct.field(name).is_not_null()).list.any()
            )
    for name in ("tools", "chat_template_kwargs"):
        if name in df.columns:
            plain = plain & pl.col(name).is_null()
    return plain.fill_null(False)


def export_refusals(df: pl.DataFrame, cannot: Callable[[dict], str | None]) -> pl.DataFrame:
    """``df`` (classified rows: ``stage`` / ``reason`` / ``detail``) with its kept rows that ``cannot(row)``
    refuses (a decoded record: :func:`prefkit.record.decode_row`) dropped as ``export_unsupported`` and the
    refusal as their ``detail``."""

    rows = df.with_row_index("_x").filter(kept() & ~plain_rows(df))
    if not rows.height:
        return df
    columns = [c for c in _COLUMNS if c in rows.columns]
    why = [cannot(decode_row(row)) for row in rows.select(columns).iter_rows(named=True)]
    refused = [(i, w) for i, w in zip(rows["_x"].to_list(), why, strict=True) if w is not None]
    if not refused:
        return df
    at = pl.Series([i for i, _ in refused], dtype=pl.Int64)
    detail = pl.Series([None] * df.height, dtype=pl.String).scatter(at, [w for _, w in refused])
    hit = pl.Series([False] * df.height, dtype=pl.Boolean).scatter(at, True)
    return drop_where(df, hit, EXPORT_UNSUPPORTED, detail)
