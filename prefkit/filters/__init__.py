"""Validate and filter: every normalised row ends kept, dropped (with the filter's reason) or invalid (with the
validation error). Row-local checks are polars expressions (:mod:`.rows`); the token-length filters count
tokens of the target model (:mod:`.tokens`). A row gets the first reason that applies.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from prefkit.errors import SelectionError, option
from prefkit.filters.residue import residue_markers
from prefkit.filters.rows import (
    drop_reason,
    identical_answers,
    orient,
    tool_call_mismatch,
    validation_reason,
)

__all__ = ["classify", "require_margins"]


def _apply_target(df: pl.DataFrame, target: Any) -> pl.DataFrame:
    """The target's drops (template refusals, token limits) on the rows still kept, with their details."""
    rows = df.with_row_index("_x").filter(pl.col("invalid").is_null() & pl.col("_drop").is_null())
    if not rows.height:
        return df
    reasons, details = target(rows)
    at = rows["_x"].cast(pl.Int64)

    def spread(values: list) -> pl.Series:
        return pl.Series([None] * df.height, dtype=pl.String).scatter(at, pl.Series(values, dtype=pl.String))

    return df.with_columns(
        pl.coalesce(pl.col("_drop"), spread(reasons)).alias("_drop"),
        pl.coalesce(pl.col("detail"), spread(details)).alias("detail"),
    )


def _reward_model_disagreement(df: pl.DataFrame, options: Any) -> pl.DataFrame:
    """Count (``flag_rm_disagrees``) the rows of a scored set whose reward model does not prefer the chosen
    answer, and turn round those it orders the other way with ``--flip-disagreeing``."""
    asked = options.drop_disagreeing or options.flip_disagreeing
    if "rm_margin" not in df.columns:
        if asked:
            flag = "--drop-disagreeing" if options.drop_disagreeing else "--flip-disagreeing"
            raise SelectionError(
                f"{flag} needs reward-model scores (an rm_margin column), and the source has none",
                "score the set first (`prefkit score OUT --reward-model RM`) and build from OUT",
            )
        return df
    valid = pl.col("invalid").is_null()
    df = df.with_columns(((pl.col("rm_margin") <= 0).fill_null(False) & valid).alias("flag_rm_disagrees"))
    if options.flip_disagreeing:
        df = orient(df, (pl.col("rm_margin") < 0).fill_null(False) & valid, "rm_flipped")
    return df


def classify(df: pl.DataFrame, options: Any, target: Any = None) -> pl.DataFrame:
    """Add ``stage`` (kept / dropped / invalid), ``reason`` and ``detail`` to a normalised frame; rows stay in
    order.

    ``options`` are :class:`prefkit.options.FilterOptions`; ``target`` (a
    :class:`prefkit.filters.tokens.TargetCheck`, with ``--tokenizer`` / ``--chat-template``) renders and
    length-filters the rows that pass the row-local filters, and adds its special tokens to the residue markers.
    ``detail`` says more about a reason: the residue marker found, the template's message.
    """
    # a normaliser may decide a drop from labels (``normaliser_drop``: SHP caps, equal ranks …): such rows hold no
    # pair to validate, and the decision is final (not undone by --keep-ties)
    pre = pl.col("normaliser_drop") if "normaliser_drop" in df.columns else pl.lit(None, dtype=pl.String)
    df = df.with_columns(tool_call_mismatch(df))
    df = df.with_columns(
        pl.when(pre.is_null()).then(validation_reason()).otherwise(pl.col("invalid")).alias("invalid"),
        identical_answers(df),
        residue_markers(df, target.special_tokens if target is not None else ()),
    )
    negative = (pl.col("margin") < 0).fill_null(False) & pl.col("invalid").is_null()
    df = df.with_columns(negative.alias("flag_negative_margin"))
    if options.negative_margin == "flip":
        df = orient(df, pl.col("flag_negative_margin"), "flipped")
    df = _reward_model_disagreement(df, options)
    row_filters = drop_reason(
        keep_ties=options.keep_ties,
        keep_residue=options.keep_residue,
        min_margin=options.min_margin,
        has_tie_column="tie" in df.columns,
        drop_negative=options.negative_margin == "drop",
        drop_disagreeing=options.drop_disagreeing,
    )
    drop = pl.when(pl.col("invalid").is_null()).then(pl.coalesce(pre, row_filters))
    detail = pl.when(drop == "template_residue").then(pl.col("_residue"))
    df = df.with_columns(drop.alias("_drop")).with_columns(detail.alias("detail"))
    if target is not None:
        df = _apply_target(df, target)
    stage = (
        pl.when(pl.col("invalid").is_not_null())
        .then(pl.lit("invalid"))
        .when(pl.col("_drop").is_not_null())
        .then(pl.lit("dropped"))
        .otherwise(pl.lit("kept"))
    )
    return df.with_columns(stage.alias("stage"), pl.coalesce("invalid", "_drop").alias("reason")).drop(
        "_drop", "invalid", "_identical", "_residue", "_tool_mismatch"
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
            f"{' and '.join(flags)} {'needs' if len(flags) == 1 else 'need'} a margin on every row, but {missing} "
            f"of {valid} valid rows have none",
            f"name the margin column with {option('margin_col')}; `prefkit detect SOURCE` shows which score "
            "columns were found",
        )
