"""Validate and filter: every normalised row ends kept, dropped (with the filter's reason) or invalid (with the
validation error). Row-local checks are polars expressions (:mod:`.rows`); the token-length filters count
tokens of the target model (:mod:`.tokens`). A row gets the first reason that applies.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from prefkit.errors import SelectionError
from prefkit.filters.rows import drop_reason, identical_answers, validation_reason

__all__ = ["classify", "require_margins"]


def _apply_extra_drop(df: pl.DataFrame, extra_drop: Callable) -> pl.DataFrame:
    rows = df.with_row_index("_x").filter(pl.col("invalid").is_null() & pl.col("_drop").is_null())
    if not rows.height:
        return df
    reasons = pl.Series("_extra", [None] * df.height, dtype=pl.String).scatter(
        rows["_x"].cast(pl.Int64), pl.Series(extra_drop(rows), dtype=pl.String)
    )
    return df.with_columns(pl.coalesce(pl.col("_drop"), reasons).alias("_drop"))


def classify(df: pl.DataFrame, options, extra_drop: Callable | None = None) -> pl.DataFrame:
    """Add ``stage`` (kept / dropped / invalid) and ``reason`` to a normalised frame; rows stay in order.

    ``options`` are :class:`prefkit.options.FilterOptions`. ``extra_drop(rows) -> list[str | None]`` (the token
    filters) decides more drops on the rows that pass the row-local filters.
    """
    # a normaliser may decide a drop from labels (``normaliser_drop``: SHP caps, equal ranks …): such rows hold no
    # pair to validate, and the decision is final (not undone by --keep-ties)
    pre = pl.col("normaliser_drop") if "normaliser_drop" in df.columns else pl.lit(None, dtype=pl.String)
    df = df.with_columns(
        pl.when(pre.is_null()).then(validation_reason()).otherwise(pl.col("invalid")).alias("invalid"),
        identical_answers(df),
    )
    row_filters = drop_reason(
        keep_ties=options.keep_ties,
        keep_residue=options.keep_residue,
        min_margin=options.min_margin,
        has_tie_column="tie" in df.columns,
    )
    df = df.with_columns(
        pl.when(pl.col("invalid").is_null()).then(pl.coalesce(pre, row_filters)).alias("_drop")
    )
    if extra_drop is not None:
        df = _apply_extra_drop(df, extra_drop)
    stage = (
        pl.when(pl.col("invalid").is_not_null())
        .then(pl.lit("invalid"))
        .when(pl.col("_drop").is_not_null())
        .then(pl.lit("dropped"))
        .otherwise(pl.lit("kept"))
    )
    return df.with_columns(stage.alias("stage"), pl.coalesce("invalid", "_drop").alias("reason")).drop(
        "_drop", "invalid"
    )


def require_margins(df: pl.DataFrame, flags: list[str]) -> None:
    """Raise when options that rank by margin (``flags``) meet kept rows without one (a row without a margin is
    never below ``--min-margin``, so it would pass silently)."""
    if not flags:
        return
    missing = df.select(((pl.col("stage") == "kept") & pl.col("margin").is_null()).sum()).item()
    valid = df.select((pl.col("stage") != "invalid").sum()).item()
    if missing:
        raise SelectionError(
            f"{' and '.join(flags)} need a margin on every row, but {missing} of {valid} valid rows have none",
            "name the margin column with --margin-col (margin_col=); `prefkit detect SOURCE` shows which score "
            "columns were found",
        )
