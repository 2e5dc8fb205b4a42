"""Binarisation, shared by the ``ranked`` family (k answers with ranks, berkeley-nest/Nectar) and the ``rated`` one
(N completions with ratings, openbmb/UltraFeedback).

Both are *binarised*: one source row gives zero, one or several pairs, by a strategy
(``ColumnMapping.extra["pairs"]``):

``best-vs-worst``   the best answer against the worst
``best-vs-next``    the best against the best of the next lower score level
``best-vs-random``  the best against a random answer with a strictly lower score (seeded: ``extra["seed"]``)
``all-pairs``       every pair whose score gap is at least ``min_gap``, largest gaps first, at most
                    ``max_pairs_per_prompt`` pairs per source row

Equal scores never make a pair. A source row that yields no pair still yields one row, so it is counted: invalid
``too_few_answers`` (fewer than two answers with text and a score), or dropped ``tie`` (all scores equal) or
``below_min_gap`` (scores differ, but by less than ``--min-gap``). Every emitted row carries ``source_index``;
the pipeline counts the rows beyond one per source row as ``added.extra_pairs`` so the accounting identity holds.

A family module gives one row per answer (``_src`` source row, ``_pos``, ``text``, ``score``: higher is better,
``native``: the source's own value) and :func:`normalise` makes the pairs; ``higher_is_better`` says how the
native values order (ranks: lower is better).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa

from prefkit.accounting import EXTRA_PAIRS, Reason, declare
from prefkit.errors import FormatError
from prefkit.formats.base import (
    MESSAGE_DTYPE,
    NULL_VALUE,
    TIE,
    ColumnMapping,
    FamilyOption,
    is_messages,
    is_string,
    message,
    pick_column,
)
from prefkit.formats.transcript import parse_transcript
from prefkit.frame import NORMALISER_DROP

STRATEGIES = ("best-vs-worst", "best-vs-next", "best-vs-random", "all-pairs")
DEFAULT_STRATEGY = "best-vs-worst"
PROMPT_ALIASES = ("prompt", "instruction", "question", "input")

#: options of every binarising family
OPTIONS = (
    FamilyOption(
        "pairs",
        Literal["best-vs-worst", "best-vs-next", "best-vs-random", "all-pairs"],
        "Ranked/rated sets (Nectar, UltraFeedback raw): how to make pairs. Equal scores never pair. "
        "best-vs-random is seeded by --seed.",
    ),
    FamilyOption("min_gap", float, "Ranked/rated sets: smallest score (rank) gap a pair may have."),
    FamilyOption(
        "max_pairs_per_prompt",
        int,
        "Ranked/rated sets with --pairs all-pairs: keep the N largest-gap pairs per prompt.",
        ge=1,
    ),
)

TOO_FEW_ANSWERS, BELOW_MIN_GAP = declare(
    Reason("too_few_answers", "invalid", "fewer than two answers with text and a score to make a pair from"),
    Reason("below_min_gap", "dropped", "the answers' scores differ, but by less than --min-gap"),
)
#: the reasons of the binarising families (ranked, rated)
REASONS = (NULL_VALUE, TOO_FEW_ANSWERS, TIE, BELOW_MIN_GAP, EXTRA_PAIRS)


def struct_fields(dtype: pa.DataType) -> dict[str, pa.DataType]:
    if not (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)):
        return {}
    item = dtype.value_type
    if not pa.types.is_struct(item):
        return {}
    return {item.field(i).name: item.field(i).type for i in range(item.num_fields)}


def prompt_column(schema: pa.Schema, override: str | None) -> str | None:
    """The prompt: text, or messages (a generated set's prompt, `prefkit generate`)."""
    return pick_column(schema, override, PROMPT_ALIASES, lambda t: is_string(t) or is_messages(t))


def prompt_messages(texts: list[str | list[dict] | None]) -> list[list[dict] | None]:
    """Prompts as messages; Nectar's "\\n\\nHuman: …\\n\\nAssistant:" markup is split into turns; a prompt
    already given as messages is kept as it is."""
    out: list[list[dict] | None] = []
    for text in texts:
        if text is None:
            out.append(None)
            continue
        if isinstance(text, list):
            out.append(text)
            continue
        turns = parse_transcript(text.rstrip() + " x") if "Human:" in text else None
        if turns is not None and turns[-1][0] == "assistant":
            # the trailing "Assistant:" opens the answer to come: drop it (the " x" only made it parse)
            msgs = [{"role": r, "content": c} for r, c in turns[:-1]]
            out.append(msgs)
        else:
            out.append([{"role": "user", "content": text.strip()}])
    return out


# ------------------------------------------------------------------------------------------------ binarisation
def binarise(
    answers: pl.DataFrame,
    strategy: str,
    *,
    seed: int | None = None,
    min_gap: float | None = None,
    max_pairs: int | None = None,
    state: dict | None = None,
) -> pl.DataFrame:
    """Pairs ``(_src, _c, _r)`` (answer positions) from one-row-per-answer frame ``answers`` (``_src``, ``_pos``,
    ``score``; higher is better). Answers with a null score or text are not candidates; equal scores never pair.
    ``state``: shared by the batches of one split (``best-vs-random`` draws continue from the previous batch, so
    a split in batches draws what it draws at once)."""
    if strategy not in STRATEGIES:
        raise FormatError(f"unknown --pairs strategy {strategy!r}", f"use one of: {', '.join(STRATEGIES)}")
    gap = min_gap if min_gap is not None and min_gap > 0 else 0.0
    cand = answers.filter(
        pl.col("score").is_not_null() & pl.col("text").is_not_null() & pl.col("score").is_not_nan()
    )
    best = (
        cand.sort("_src", pl.col("score"), "_pos", descending=[False, True, False])
        .group_by("_src", maintain_order=True)
        .first()
        .select("_src", pl.col("_pos").alias("_c"), pl.col("score").alias("_cs"))
    )
    lower = (
        cand.join(best, on="_src")
        .filter(pl.col("_cs") - pl.col("score") >= gap)
        .filter(pl.col("score") < pl.col("_cs"))
    )
    if strategy == "all-pairs":
        left = cand.select("_src", pl.col("_pos").alias("_c"), pl.col("score").alias("_cs"))
        right = cand.select("_src", pl.col("_pos").alias("_r"), pl.col("score").alias("_rs"))
        pairs = (
            left.join(right, on="_src")
            .filter((pl.col("_cs") > pl.col("_rs")) & (pl.col("_cs") - pl.col("_rs") >= gap))
            .with_columns((pl.col("_cs") - pl.col("_rs")).alias("_gap"))
            .sort("_src", "_gap", "_c", "_r", descending=[False, True, False, False])
        )
        if max_pairs is not None:
            pairs = pairs.filter(pl.int_range(pl.len()).over("_src") < max_pairs)
        return pairs.select("_src", "_c", "_r")
    if strategy == "best-vs-worst":
        pick = lower.sort("_src", "score", "_pos").group_by("_src", maintain_order=True).first()
    elif strategy == "best-vs-next":
        pick = (
            lower.sort("_src", pl.col("score"), "_pos", descending=[False, True, False])
            .group_by("_src", maintain_order=True)
            .first()
        )
    else:  # best-vs-random: a seeded uniform key per candidate, the smallest wins
        rng = (
            np.random.default_rng(seed)
            if state is None
            else state.setdefault("rng", np.random.default_rng(seed))
        )
        keyed = lower.sort("_src", "_pos").with_columns(pl.Series("_key", rng.random(lower.height)))
        pick = keyed.sort("_src", "_key").group_by("_src", maintain_order=True).first()
    return pick.select("_src", "_c", pl.col("_pos").alias("_r"))


def normalise(
    df: pl.DataFrame, mapping: ColumnMapping, answers: pl.DataFrame, higher_is_better: bool
) -> pl.DataFrame:
    """Pairs (several or none per source row) with ``source_index``; pair-less rows as one counted row each.

    ``answers``: one row per answer (``_src``, ``_pos``, ``text``, ``score`` higher = better, ``native``)."""
    extra = mapping.extra
    pairs = binarise(
        answers,
        extra.get("pairs", DEFAULT_STRATEGY),
        seed=extra.get("seed"),
        min_gap=extra.get("min_gap"),
        max_pairs=extra.get("max_pairs_per_prompt"),
        state=(mapping.facts or {}).get("state"),
    )
    a = answers.select("_src", "_pos", "text", "native")
    pairs = (
        pairs.join(a.rename({"_pos": "_c", "text": "_ct", "native": "_cn"}), on=["_src", "_c"], how="left")
        .join(a.rename({"_pos": "_r", "text": "_rt", "native": "_rn"}), on=["_src", "_r"], how="left")
        .sort("_src", maintain_order=True)
    )
    prompts = pl.Series(
        "_p", prompt_messages(df[mapping.prompt_column].to_list()), dtype=pl.List(MESSAGE_DTYPE)
    )
    prompt_of = pl.DataFrame({"_src": pl.int_range(df.height, dtype=pl.Int64, eager=True), "prompt": prompts})
    made = _made_pairs(pairs, higher_is_better)
    placeholders = _pairless(df.height, pairs, answers)
    out = pl.concat([made, placeholders], how="vertical").sort("_src", maintain_order=True)
    out = out.join(prompt_of, on="_src", how="left", maintain_order="left")
    null_prompt = pl.col("prompt").is_null() & pl.col("invalid").is_null()
    return out.select(
        "prompt",
        "chosen",
        "rejected",
        "score_chosen",
        "score_rejected",
        "margin",
        pl.when(null_prompt).then(NULL_VALUE.lit()).otherwise(pl.col("invalid")).alias("invalid"),
        pl.when(null_prompt).then(None).otherwise(pl.col("normaliser_drop")).alias("normaliser_drop"),
        pl.col("_src").alias("source_index"),
    )


def _made_pairs(pairs: pl.DataFrame, higher_is_better: bool) -> pl.DataFrame:
    """The pairs binarisation made, as rows: each answer as one assistant message, scores and the margin."""
    msg = lambda c: pl.concat_list([message("assistant", pl.col(c))])  # noqa: E731
    margin = pl.col("_cn") - pl.col("_rn") if higher_is_better else pl.col("_rn") - pl.col("_cn")
    return pairs.select(
        "_src",
        msg("_ct").alias("chosen"),
        msg("_rt").alias("rejected"),
        pl.col("_cn").alias("score_chosen"),
        pl.col("_rn").alias("score_rejected"),
        margin.alias("margin"),
        pl.lit(None, dtype=pl.String).alias("invalid"),
        pl.lit(None, dtype=pl.String).alias("normaliser_drop"),
    )


def _pairless(height: int, pairs: pl.DataFrame, answers: pl.DataFrame) -> pl.DataFrame:
    """One counted row for each source row without a pair, with why: fewer than two scored answers
    (``too_few_answers``, invalid), all scores equal (``tie``) or no two far enough apart (``below_min_gap``)."""
    cand = answers.filter(
        pl.col("score").is_not_null() & pl.col("text").is_not_null() & pl.col("score").is_not_nan()
    )
    stats = cand.group_by("_src").agg(pl.len().alias("_n"), pl.col("score").n_unique().alias("_levels"))
    missing = (
        pl.DataFrame({"_src": pl.int_range(height, dtype=pl.Int64, eager=True)})
        .join(pairs.select("_src").unique(), on="_src", how="anti")
        .join(stats, on="_src", how="left")
    )
    none = pl.lit(None, dtype=pl.String)
    missing = missing.select(
        "_src",
        pl.when(pl.col("_n").fill_null(0) < 2)
        .then(TOO_FEW_ANSWERS.lit())
        .otherwise(none)
        .alias("invalid"),
        pl.when(pl.col("_n").fill_null(0) < 2)
        .then(none)
        .when(pl.col("_levels") == 1)
        .then(TIE.lit())
        .otherwise(BELOW_MIN_GAP.lit())
        .alias(NORMALISER_DROP),
    )
    empty = pl.lit(None, dtype=pl.List(MESSAGE_DTYPE))
    return missing.select(
        "_src",
        empty.alias("chosen"),
        empty.alias("rejected"),
        pl.lit(None, dtype=pl.Float64).alias("score_chosen"),
        pl.lit(None, dtype=pl.Float64).alias("score_rejected"),
        pl.lit(None, dtype=pl.Float64).alias("margin"),
        "invalid",
        "normaliser_drop",
    )
