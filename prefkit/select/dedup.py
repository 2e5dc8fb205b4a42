"""Dedup across every source of a build: exact duplicates, and (optionally) one pair per prompt.

Works on the rows still kept after validation and filters, in mix order (sources as listed, rows in source
order); a row it removes is dropped with a reason, so the accounting identity still holds:

* ``duplicate``: same normalised ``prompt``, ``chosen`` and ``rejected`` messages as an earlier kept row;
* ``not_best_for_prompt`` (``--one-pair-per-prompt``): another pair of the same prompt has a higher margin (the
  first of equal margins wins; rows without a margin come last). Margins are the mix-normalised ones when the
  sources' scales differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from prefkit.accounting import Reason, declare, mark_dropped
from prefkit.frame import CONTENT_HASH_PREFIX, MARGIN, PART, PROMPT_KEY, REASON, ROW, content_hash, kept
from prefkit.select.selectable import Selectable

DUPLICATE, NOT_BEST_FOR_PROMPT = declare(
    Reason("duplicate", "dropped", "same normalised prompt, chosen and rejected as an earlier row (--dedup)"),
    Reason(
        "not_best_for_prompt",
        "dropped",
        "another pair of the same prompt has a higher margin (--one-pair-per-prompt)",
    ),
)

_WHITESPACE_RUNS = ["  ", "\n", "\t", "\r", "\x0b", "\x0c"]


def _turns(squash: bool) -> pl.Expr:
    el = pl.element().struct
    content = el.field("content").str.to_lowercase().str.strip_chars()
    if squash:
        content = content.str.replace_all(r"\s+", " ")
    return pl.col("prompt").list.eval(content.filter(el.field("role") != "system"))


def prompt_keys(df: pl.DataFrame) -> pl.Series:
    """A hash per row of the prompt's non-system turns, lower-cased with whitespace squashed (what "same prompt"
    means for one-pair-per-prompt and for leak-free splits); null for a null prompt.

    The whitespace regex only runs on the rows that hold a run of spaces or a tab/newline: for the others
    squashing changes nothing."""
    lowered = df.select(_turns(squash=False).alias("_t"))
    keys = lowered.select(
        pl.when(pl.col("_t").is_not_null()).then(pl.col("_t").hash(seed=0)).alias("_k")
    ).to_series()
    needs = lowered.select(
        pl.col("_t").list.eval(pl.element().str.contains_any(_WHITESPACE_RUNS)).list.any().fill_null(False)
    ).to_series()
    rows = needs.arg_true()
    if rows.len():
        squashed = df[rows].select(_turns(squash=True).hash(seed=0)).to_series()
        keys = keys.scatter(rows, squashed)
    return keys


def row_keys(df: pl.DataFrame, *, exact: bool, prompts: bool) -> list[pl.Series]:
    """The per-row keys dedup and leak-free splits compare, for every row of a normalised frame (row-local, so
    a split read in batches gets them batch by batch): ``_h_prompt`` / ``_h_chosen`` / ``_h_rejected`` (content
    hashes, with ``exact``) and ``_pkey`` (:func:`prompt_keys`, with ``prompts``)."""
    out = []
    if exact:
        out += [df[c].hash(seed=0).alias(content_hash(c)) for c in ("prompt", "chosen", "rejected")]
    if prompts:
        out.append(prompt_keys(df).alias(PROMPT_KEY))
    return out


def key_frame(df: pl.DataFrame, *, exact: bool, one_per_prompt: bool) -> pl.DataFrame:
    """The small frame dedup works on, for the kept rows only: ``_row`` (place in ``df``), ``margin`` and the
    content / prompt hashes (the ``_h_*`` / ``_pkey`` columns of :func:`row_keys` when ``df`` has them, else
    computed from its messages)."""
    hashes = [content_hash(c) for c in ("prompt", "chosen", "rejected")]
    have = set(hashes) <= set(df.columns) if exact else True
    have_p = PROMPT_KEY in df.columns if one_per_prompt else True
    if not (have and have_p):
        df = df.with_columns(row_keys(df, exact=exact and not have, prompts=one_per_prompt and not have_p))
    cols = [pl.int_range(pl.len(), dtype=pl.Int64).filter(kept()).alias(ROW), pl.col(MARGIN).filter(kept())]
    if exact:
        cols += [pl.col(h).filter(kept()) for h in hashes]
    if one_per_prompt:
        cols.append(pl.col(PROMPT_KEY).filter(kept()).alias("_p"))
    return df.select(cols)


def dedup_reasons(pool: pl.DataFrame, *, exact: bool, one_per_prompt: bool) -> pl.DataFrame:
    """``(_part, _row, reason)`` for the kept rows of ``pool`` that dedup drops.

    ``pool`` is :func:`key_frame` of every part, in mix order, with ``_part``.
    """
    key_cols = [c for c in pool.columns if c.startswith(CONTENT_HASH_PREFIX)]
    left = pool.with_row_index("_order")
    out = []
    if exact:
        dup = pl.int_range(pl.len()).over(key_cols) > 0
        out.append(left.filter(dup).select(PART, ROW, DUPLICATE.lit().alias(REASON)))
        left = left.filter(~dup)
    if one_per_prompt:
        ranked = left.sort(
            pl.col(MARGIN).fill_nan(None), "_order", descending=[True, False], nulls_last=True
        )
        worse = ranked.filter(pl.int_range(pl.len()).over("_p") > 0)
        out.append(worse.select(PART, ROW, NOT_BEST_FOR_PROMPT.lit().alias(REASON)))
    if not out:
        return pl.DataFrame(schema={PART: pl.Int64, ROW: pl.Int64, REASON: pl.String})
    return pl.concat(out).cast({PART: pl.Int64, ROW: pl.Int64})


def dedup_parts(parts: Sequence[Selectable], *, exact: bool, one_per_prompt: bool) -> None:
    """Drop duplicates across every part (in mix order), updating each ``part.df``."""
    if not (exact or one_per_prompt):
        return
    pool = pl.concat(
        [
            key_frame(p.df, exact=exact, one_per_prompt=one_per_prompt).with_columns(
                pl.lit(i, dtype=pl.Int64).alias(PART)
            )
            for i, p in enumerate(parts)
        ]
    )
    drops = dedup_reasons(pool, exact=exact, one_per_prompt=one_per_prompt)
    for i, part in enumerate(parts):
        mine = drops.filter(pl.col(PART) == i)
        if mine.height:
            part.df = mark_dropped(part.df, mine[ROW], mine[REASON])
