"""Score and margin columns: the alias table, and the expressions that read them.

Sources name their scores in many ways (``delta_score``, ``score_chosen``, hyphenated ``chosen-rating`` …) and
on different scales; the mapping records which columns were used so the manifest can say so.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from prefkit.errors import FormatError
from prefkit.formats.base import is_number, is_string

#: native margin columns, in order of preference
MARGIN_ALIASES = ("delta_score", "margin", "score_diff", "score_delta")

#: (chosen, rejected) score column pairs, in order of preference
SCORE_PAIRS = (
    ("score_chosen", "score_rejected"),
    ("chosen_score", "rejected_score"),
    ("chosen-rating", "rejected-rating"),
    ("chosen_rating", "rejected_rating"),
    ("rating_chosen", "rating_rejected"),
    ("chosen_avg_rating", "rejected_avg_rating"),
    ("chosen-avg-rating", "rejected-avg-rating"),
    ("chosen_reward", "rejected_reward"),
    ("reward_chosen", "reward_rejected"),
)


def _numeric(schema: pa.Schema, name: str) -> bool:
    return name in schema.names and (is_number(schema.field(name).type) or is_string(schema.field(name).type))


def pick_score_columns(schema: pa.Schema, margin_col: str | None = None) -> dict[str, str]:
    """Which columns give ``score_chosen`` / ``score_rejected`` / ``margin`` (keys present only when found)."""
    found: dict[str, str] = {}
    for chosen, rejected in SCORE_PAIRS:
        if _numeric(schema, chosen) and _numeric(schema, rejected):
            found["score_chosen"], found["score_rejected"] = chosen, rejected
            break
    if margin_col is not None:
        if margin_col not in schema.names:
            raise FormatError(
                f"--margin-col {margin_col!r} is not a column; columns are {schema.names}",
                "pass one of the listed columns to --margin-col",
            )
        if not _numeric(schema, margin_col):
            raise FormatError(
                f"--margin-col {margin_col!r} has type {schema.field(margin_col).type}, not a number",
                "pass a numeric column to --margin-col",
            )
        found["margin"] = margin_col
    else:
        for name in MARGIN_ALIASES:
            if _numeric(schema, name):
                found["margin"] = name
                break
    return found


def to_float(column: str, schema: pa.Schema) -> pl.Expr:
    """A score column as Float64; strings like "8.5" parse, anything else ("N/A", "") becomes null."""
    if is_string(schema.field(column).type):
        return pl.col(column).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    return pl.col(column).cast(pl.Float64, strict=False)


def score_exprs(
    schema: pa.Schema, score_chosen: str | None, score_rejected: str | None, margin: str | None
) -> list[pl.Expr]:
    """``score_chosen``, ``score_rejected`` and ``margin`` (native, else chosen - rejected) as Float64."""
    none = pl.lit(None, dtype=pl.Float64)
    sc = to_float(score_chosen, schema) if score_chosen else none
    sr = to_float(score_rejected, schema) if score_rejected else none
    if margin:
        m = to_float(margin, schema)
    elif score_chosen and score_rejected:
        m = sc - sr
    else:
        m = none
    return [sc.alias("score_chosen"), sr.alias("score_rejected"), m.alias("margin")]
