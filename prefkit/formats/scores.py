"""Score and margin columns: the alias table, and the expressions that read them.

Sources name their scores in many ways (``delta_score``, ``score_chosen``, hyphenated ``chosen-rating`` …) and
on different scales; the mapping records which columns were used so the manifest can say so.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

import polars as pl
import pyarrow as pa

from prefkit.accounting import Reason, declare
from prefkit.errors import FormatError
from prefkit.formats.base import is_number, is_string

(UNPARSED_SCORE,) = declare(
    Reason(
        "unparsed_score",
        "flags",
        'rows with a score that is not a number ("N/A", or "7/10" in a column that mixes scales): read as null',
    )
)

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


#: a rating written as a fraction: "7/10", "4.5 / 5"
FRACTION = r"^\s*([-+]?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*$"


def fraction_denominators(df: pl.DataFrame, column: str) -> set[float] | None:
    """The denominators a string column writes its scores over (``a/b``); None for a column that is not text."""
    if df.schema.get(column) != pl.String:
        return None
    return set(
        df.select(pl.col(column).str.extract(FRACTION, 2).cast(pl.Float64).drop_nulls().unique())
        .to_series()
        .to_list()
    )


def fraction_scale(df: pl.DataFrame, column: str) -> float | None:
    """The common denominator when a string column writes its scores as ``a/b`` with one ``b`` (then ``a`` is
    the score: "7/10" is 7 on a 10-point scale); None when it does not, or mixes scales (those stay unparsed)."""
    scales = fraction_denominators(df, column)
    return next(iter(scales)) if scales is not None and len(scales) == 1 else None


def to_float(column: str, schema: pa.Schema, fraction: bool = False) -> pl.Expr:
    """A score column as Float64; strings like "8.5" parse (and ``a/b`` when ``fraction``: ``a``), anything else
    ("N/A", "", "7/10" next to "4/5") becomes null, counted by :func:`unparsed`."""
    if is_string(schema.field(column).type):
        text = pl.col(column).cast(pl.String).str.strip_chars()
        number = text.cast(pl.Float64, strict=False)
        if fraction:
            number = pl.coalesce(number, text.str.extract(FRACTION, 1).cast(pl.Float64, strict=False))
        return number
    return pl.col(column).cast(pl.Float64, strict=False)


def unparsed(columns: list[str], schema: pa.Schema, fractions: set[str]) -> pl.Expr:
    """Rows where a score column holds a value that is not a number (counted as ``flags.unparsed_score``)."""
    flags = []
    for column in columns:
        if is_string(schema.field(column).type):
            text = pl.col(column).cast(pl.String).str.strip_chars()
            given = text.is_not_null() & (text != "")
            flags.append(given & to_float(column, schema, column in fractions).is_null())
    return pl.any_horizontal(flags) if flags else pl.lit(False)


def score_exprs(
    schema: pa.Schema,
    score_chosen: str | None,
    score_rejected: str | None,
    margin: str | None,
    fractions: AbstractSet[str] = frozenset(),
) -> list[pl.Expr]:
    """``score_chosen``, ``score_rejected`` and ``margin`` (native, else chosen - rejected) as Float64, and the
    ``flag_unparsed_score`` of rows whose score text does not parse (``fractions``: columns read as ``a/b``)."""
    none = pl.lit(None, dtype=pl.Float64)
    sc = to_float(score_chosen, schema, score_chosen in fractions) if score_chosen else none
    sr = to_float(score_rejected, schema, score_rejected in fractions) if score_rejected else none
    if margin:
        m = to_float(margin, schema, margin in fractions)
    elif score_chosen and score_rejected:
        m = sc - sr
    else:
        m = none
    used = [c for c in (score_chosen, score_rejected, margin) if c]
    flag = unparsed(used, schema, set(fractions)).alias(UNPARSED_SCORE.flag)
    return [sc.alias("score_chosen"), sr.alias("score_rejected"), m.alias("margin"), flag]
