"""Validate and filter: every normalised row ends kept, dropped (with the filter's reason) or invalid (with the
validation error). Row-local checks are polars expressions (:mod:`.rows`); the token-length filters count
tokens of the target model (:mod:`.tokens`). A row gets the first reason that applies.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from prefkit.errors import SelectionError, option
from prefkit.filters import registry
from prefkit.filters.rows import (
    FLIPPED,
    NEGATIVE_MARGIN_FLAG,
    RM_DISAGREES_FLAG,
    RM_FLIPPED,
    TOOL_MISMATCH,
    orient,
    tool_call_mismatch,
    validation_reason,
)
from prefkit.frame import (
    DETAIL,
    INVALID_COLUMN,
    MARGIN,
    NORMALISER_DROP,
    REASON,
    STAGE,
    Stage,
    is_stage,
    kept,
)

__all__ = ["classify", "require_margins"]

#: the column of the first filter's reason, while classify runs
_DROP = "_drop"


def _apply_target(df: pl.DataFrame, target: Any) -> pl.DataFrame:
    """The target's drops (template refusals, token limits) on the rows still kept, with their details."""
    rows = df.with_row_index("_x").filter(pl.col(INVALID_COLUMN).is_null() & pl.col(_DROP).is_null())
    if not rows.height:
        return df
    reasons, details = target(rows)
    at = rows["_x"].cast(pl.Int64)

    def spread(values: list) -> pl.Series:
        return pl.Series([None] * df.height, dtype=pl.String).scatter(at, pl.Series(values, dtype=pl.String))

    return df.with_columns(
        pl.coalesce(pl.col(_DROP), spread(reasons)).alias(_DROP),
        pl.coalesce(pl.col(DETAIL), spread(details)).alias(DETAIL),
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
    valid = pl.col(INVALID_COLUMN).is_null()
    df = df.with_columns(((pl.col("rm_margin") <= 0).fill_null(False) & valid).alias(RM_DISAGREES_FLAG.flag))
    if options.flip_disagreeing:
        df = orient(df, (pl.col("rm_margin") < 0).fill_null(False) & valid, RM_FLIPPED)
    return df


def classify(df: pl.DataFrame, options: Any, target: Any = None) -> pl.DataFrame:
    """Add ``stage`` (kept / dropped / invalid), ``reason`` and ``detail`` to a normalised frame; rows stay in
    order.

    ``options`` are :class:`prefkit.options.FilterOptions`: the row filters they turn on
    (:data:`prefkit.filters.registry.FILTERS`) run in order; ``target`` (a
    :class:`prefkit.filters.tokens.TargetCheck`, with ``--tokenizer`` / ``--chat-template``) renders and
    length-filters the rows that pass the row filters, and adds its special tokens to the residue markers.
    ``detail`` says more about a reason: the residue marker found, the template's message.
    """
    # a normaliser may decide a drop from labels (``normaliser_drop``: SHP caps, equal ranks …): such rows hold no
    # pair to validate, and the decision is final (not undone by --keep-ties)
    pre = pl.col(NORMALISER_DROP) if NORMALISER_DROP in df.columns else pl.lit(None, dtype=pl.String)
    filters = registry.active(options)
    df = df.with_columns(tool_call_mismatch(df))
    df = df.with_columns(
        pl.when(pre.is_null()).then(validation_reason()).otherwise(pl.col(INVALID_COLUMN)).alias(INVALID_COLUMN)
    )
    df = registry.with_columns(df, filters, target.special_tokens if target is not None else ())
    negative = (pl.col(MARGIN) < 0).fill_null(False) & pl.col(INVALID_COLUMN).is_null()
    df = df.with_columns(negative.alias(NEGATIVE_MARGIN_FLAG.flag))
    if options.negative_margin == "flip":
        df = orient(df, pl.col(NEGATIVE_MARGIN_FLAG.flag), FLIPPED)
    df = _reward_model_disagreement(df, options)
    drop = pl.when(pl.col(INVALID_COLUMN).is_null()).then(
        pl.coalesce(pre, registry.drop_reason(options, df, filters))
    )
    df = df.with_columns(drop.alias(_DROP))
    df = df.with_columns(registry.drop_detail(pl.col(_DROP), filters).alias(DETAIL))
    if target is not None:
        df = _apply_target(df, target)
    stage = (
        pl.when(pl.col(INVALID_COLUMN).is_not_null())
        .then(pl.lit(Stage.INVALID.value))
        .when(pl.col(_DROP).is_not_null())
        .then(pl.lit(Stage.DROPPED.value))
        .otherwise(pl.lit(Stage.KEPT.value))
    )
    return df.with_columns(stage.alias(STAGE), pl.coalesce(INVALID_COLUMN, _DROP).alias(REASON)).drop(
        _DROP, INVALID_COLUMN, TOOL_MISMATCH, *registry.helper_columns(filters)
    )


def require_margins(df: pl.DataFrame, flags: list[str]) -> None:
    """Raise when options that rank by margin (``flags``) meet kept rows without one (a row without a margin is
    never below ``--min-margin``, so it would pass silently)."""
    if not flags:
        return
    missing = df.select((kept() & pl.col(MARGIN).is_null()).sum()).item()
    valid = df.select((~is_stage(Stage.INVALID)).sum()).item()
    if missing:
        raise SelectionError(
            f"{' and '.join(flags)} {'needs' if len(flags) == 1 else 'need'} a margin on every row, but {missing} "
            f"of {valid} valid rows have none",
            f"name the margin column with {option('margin_col')}; `prefkit detect SOURCE` shows which score "
            "columns were found",
        )
