"""Families F (k answers with ranks: berkeley-nest/Nectar) and G (N completions with ratings: openbmb/UltraFeedback).

Both are *binarised*: one source row gives zero, one or several pairs, by a strategy (``Mapping.extra["pairs"]``):

``best-vs-worst``   the best answer against the worst
``best-vs-next``    the best against the best of the next lower score level
``best-vs-random``  the best against a random answer with a strictly lower score (seeded: ``extra["seed"]``)
``all-pairs``       every pair whose score gap is at least ``min_gap``, largest gaps first, at most
                    ``max_pairs_per_prompt`` pairs per source row

Equal scores never make a pair. A source row that yields no pair still yields one row, so it is counted: invalid
``too_few_answers`` (fewer than two answers with text and a score), or dropped ``tie`` (all scores equal) or
``below_min_gap`` (scores differ, but by less than ``--min-gap``). Every emitted row carries ``source_index``;
the pipeline counts the rows beyond one per source row as ``added.extra_pairs`` so the accounting identity holds.

Scores: F uses the rank (1 = best); ``score_chosen``/``score_rejected`` hold the native ranks and ``margin`` is
the rank gap (``rank_rejected - rank_chosen``, positive). G uses ``overall_score`` (``extra["rating"] =
"overall"``, default) or the mean of the aspect ``Rating`` strings, ignoring ``"N/A"`` (``"aspects"``).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from prefkit.errors import FormatError
from prefkit.formats.base import MESSAGE_DTYPE, Mapping, is_number, is_string
from prefkit.formats.transcript import parse_transcript

RANKED = "ranked"
RATED = "rated"
DESCRIPTIONS = {
    RANKED: "one prompt, k answers with ranks, 1 = best (Nectar `answers: [{answer, model, rank}]`); binarised",
    RATED: "one prompt, N completions with ratings (UltraFeedback `completions` with overall_score / aspect "
    "ratings, or parallel `generations` + `ratings` lists); binarised",
}
STRATEGIES = ("best-vs-worst", "best-vs-next", "best-vs-random", "all-pairs")
RATINGS = ("overall", "aspects")
DEFAULT_STRATEGY = "best-vs-worst"

PROMPT_ALIASES = ("prompt", "instruction", "question", "input")
GEN_ALIASES = ("generations", "responses", "completions", "answers")
RATING_ALIASES = ("ratings", "rating", "scores")


def _struct_fields(dtype: pa.DataType) -> dict[str, pa.DataType]:
    if not (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)):
        return {}
    item = dtype.value_type
    if not pa.types.is_struct(item):
        return {}
    return {item.field(i).name: item.field(i).type for i in range(item.num_fields)}


def _prompt_column(schema: pa.Schema, override: str | None) -> str | None:
    from prefkit.formats import pick_column

    return pick_column(schema, override, PROMPT_ALIASES, is_string)


def match_ranked(schema: pa.Schema, columns: dict[str, str | None]) -> Mapping | str:
    prompt = _prompt_column(schema, columns.get("prompt"))
    answers = columns.get("chosen") or "answers"
    fields = _struct_fields(schema.field(answers).type) if answers in schema.names else {}
    if not (prompt and {"answer", "rank"} <= set(fields)):
        return "needs a prompt string and `answers: list[{answer, rank}]`"
    return Mapping(
        RANKED,
        chosen=answers,
        rejected=answers,
        prompt=prompt,
        extra={"pairs": DEFAULT_STRATEGY},
    )


def match_rated(schema: pa.Schema, columns: dict[str, str | None]) -> Mapping | str:
    prompt = _prompt_column(schema, columns.get("prompt"))
    if not prompt:
        return "needs a prompt string (prompt/instruction/question/input)"
    for name in [columns["chosen"]] if columns.get("chosen") else GEN_ALIASES:
        if name not in schema.names:
            continue
        fields = _struct_fields(schema.field(name).type)
        if "response" in fields and ("overall_score" in fields or "annotations" in fields):
            return Mapping(
                RATED,
                chosen=name,
                rejected=name,
                prompt=prompt,
                extra={"pairs": DEFAULT_STRATEGY, "shape": "completions"},
            )
        dtype = schema.field(name).type
        if pa.types.is_list(dtype) and is_string(dtype.value_type):
            for rating in RATING_ALIASES:
                rtype = schema.field(rating).type if rating in schema.names else None
                if rtype is not None and pa.types.is_list(rtype) and is_number(rtype.value_type):
                    return Mapping(
                        RATED,
                        chosen=name,
                        rejected=name,
                        prompt=prompt,
                        extra={"pairs": DEFAULT_STRATEGY, "shape": "lists", "columns": {"ratings": rating}},
                    )
    return (
        "needs `completions: list[{response, overall_score | annotations}]`, or a list of strings "
        "(generations/responses) with a parallel list of numbers (ratings/rating/scores)"
    )


# ----------------------------------------------------------------------------------------------- answers per row
def _prompt_messages(texts: list[str | None]) -> list[list[dict] | None]:
    """Prompts as messages; Nectar's "\\n\\nHuman: …\\n\\nAssistant:" markup is split into turns."""
    out = []
    for text in texts:
        if text is None:
            out.append(None)
            continue
        turns = parse_transcript(text.rstrip() + " x") if "Human:" in text else None
        if turns is not None and turns[-1][0] == "assistant":
            # the trailing "Assistant:" opens the answer to come: drop it (the " x" only made it parse)
            msgs = [{"role": r, "content": c} for r, c in turns[:-1]]
            out.append(msgs)
        else:
            out.append([{"role": "user", "content": text.strip()}])
    return out


def _aspect_mean(annotations: pl.Expr, aspects: list[str]) -> pl.Expr:
    ratings = [
        annotations.struct.field(a)
        .struct.field("Rating")
        .cast(pl.String)
        .str.strip_chars()
        .cast(pl.Float64, strict=False)
        for a in aspects
    ]
    return pl.mean_horizontal(ratings)


def _exploded(df: pl.DataFrame, mapping: Mapping, schema: pa.Schema) -> pl.DataFrame:
    """One row per answer: ``_src`` (source row), ``_pos``, ``text``, ``score`` (higher = better), ``native``."""
    col = mapping.chosen
    base = df.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("_src"), pl.col(col))
    if mapping.family == RANKED:
        ex = base.explode(col).with_columns(pl.int_range(pl.len()).over("_src").alias("_pos"))
        rank = pl.col(col).struct.field("rank").cast(pl.Float64, strict=False)
        return ex.select(
            "_src",
            "_pos",
            pl.col(col).struct.field("answer").cast(pl.String).alias("text"),
            (-rank).alias("score"),
            rank.alias("native"),
        )
    if mapping.extra.get("shape") == "lists":
        ratings = mapping.extra["columns"]["ratings"]
        both = df.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("_src"), pl.col(col), pl.col(ratings))
        same_len = both.select(pl.col(col).list.len().eq_missing(pl.col(ratings).list.len())).to_series()
        both = both.with_columns(
            pl.when(same_len).then(pl.col(ratings)).otherwise(pl.lit(None)).alias(ratings),
            pl.when(same_len).then(pl.col(col)).otherwise(pl.lit(None)).alias(col),
        )
        ex = both.explode(col, ratings).with_columns(pl.int_range(pl.len()).over("_src").alias("_pos"))
        score = pl.col(ratings).cast(pl.Float64, strict=False)
        return ex.select(
            "_src",
            "_pos",
            pl.col(col).cast(pl.String).alias("text"),
            score.alias("score"),
            score.alias("native"),
        )
    fields = _struct_fields(schema.field(col).type)
    ex = base.explode(col).with_columns(pl.int_range(pl.len()).over("_src").alias("_pos"))
    item = pl.col(col).struct
    rating = mapping.extra.get("rating", "overall")
    if rating not in RATINGS:
        raise FormatError(f"unknown --rating {rating!r}", f"use one of: {', '.join(RATINGS)}")
    if rating == "overall" and "overall_score" in fields:
        score = item.field("overall_score").cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    elif "annotations" in fields and pa.types.is_struct(fields["annotations"]):
        ann = fields["annotations"]
        aspects = [ann.field(i).name for i in range(ann.num_fields) if pa.types.is_struct(ann.field(i).type)]
        score = _aspect_mean(item.field("annotations"), aspects)
    else:
        raise FormatError(
            f"column {col!r} has no {'overall_score' if rating == 'overall' else 'annotations'} to rate with",
            "pass --rating overall or --rating aspects to match the completions' fields",
        )
    return ex.select(
        "_src",
        "_pos",
        item.field("response").cast(pl.String).alias("text"),
        score.alias("score"),
        score.alias("native"),
    )


# ------------------------------------------------------------------------------------------------ binarisation
def binarise(
    answers: pl.DataFrame,
    strategy: str,
    *,
    seed: int | None = None,
    min_gap: float | None = None,
    max_pairs: int | None = None,
) -> pl.DataFrame:
    """Pairs ``(_src, _c, _r)`` (answer positions) from one-row-per-answer frame ``answers`` (``_src``, ``_pos``,
    ``score``; higher is better). Answers with a null score or text are not candidates; equal scores never pair."""
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
        rng = np.random.default_rng(seed)
        keyed = lower.sort("_src", "_pos").with_columns(pl.Series("_key", rng.random(lower.height)))
        pick = keyed.sort("_src", "_key").group_by("_src", maintain_order=True).first()
    return pick.select("_src", "_c", pl.col("_pos").alias("_r"))


def normalise(df: pl.DataFrame, mapping: Mapping, schema: pa.Schema) -> pl.DataFrame:
    """Pairs (several or none per source row) with ``source_index``; pair-less rows as one counted row each."""
    extra = mapping.extra
    answers = _exploded(df, mapping, schema)
    pairs = binarise(
        answers,
        extra.get("pairs", DEFAULT_STRATEGY),
        seed=extra.get("seed"),
        min_gap=extra.get("min_gap"),
        max_pairs=extra.get("max_pairs_per_prompt"),
    )
    a = answers.select("_src", "_pos", "text", "native")
    pairs = (
        pairs.join(a.rename({"_pos": "_c", "text": "_ct", "native": "_cn"}), on=["_src", "_c"], how="left")
        .join(a.rename({"_pos": "_r", "text": "_rt", "native": "_rn"}), on=["_src", "_r"], how="left")
        .sort("_src", maintain_order=True)
    )
    # rows without a pair: why
    cand = answers.filter(
        pl.col("score").is_not_null() & pl.col("text").is_not_null() & pl.col("score").is_not_nan()
    )
    stats = cand.group_by("_src").agg(pl.len().alias("_n"), pl.col("score").n_unique().alias("_levels"))
    missing = (
        pl.DataFrame({"_src": pl.int_range(df.height, dtype=pl.Int64, eager=True)})
        .join(pairs.select("_src").unique(), on="_src", how="anti")
        .join(stats, on="_src", how="left")
    )
    none = pl.lit(None, dtype=pl.String)
    missing = missing.select(
        "_src",
        pl.when(pl.col("_n").fill_null(0) < 2)
        .then(pl.lit("too_few_answers"))
        .otherwise(none)
        .alias("invalid"),
        pl.when(pl.col("_n").fill_null(0) < 2)
        .then(none)
        .when(pl.col("_levels") == 1)
        .then(pl.lit("tie"))
        .otherwise(pl.lit("below_min_gap"))
        .alias("normaliser_drop"),
    )
    prompts = pl.Series("_p", _prompt_messages(df[mapping.prompt].to_list()), dtype=pl.List(MESSAGE_DTYPE))
    prompt_of = pl.DataFrame({"_src": pl.int_range(df.height, dtype=pl.Int64, eager=True), "prompt": prompts})
    msg = lambda c: pl.concat_list([pl.struct(role=pl.lit("assistant"), content=pl.col(c))])  # noqa: E731
    margin = pl.col("_rn") - pl.col("_cn") if mapping.family == RANKED else pl.col("_cn") - pl.col("_rn")
    made = pairs.select(
        "_src",
        msg("_ct").alias("chosen"),
        msg("_rt").alias("rejected"),
        pl.col("_cn").alias("score_chosen"),
        pl.col("_rn").alias("score_rejected"),
        margin.alias("margin"),
        pl.lit(None, dtype=pl.String).alias("invalid"),
        pl.lit(None, dtype=pl.String).alias("normaliser_drop"),
    )
    empty = pl.lit(None, dtype=pl.List(MESSAGE_DTYPE))
    placeholders = missing.select(
        "_src",
        empty.alias("chosen"),
        empty.alias("rejected"),
        pl.lit(None, dtype=pl.Float64).alias("score_chosen"),
        pl.lit(None, dtype=pl.Float64).alias("score_rejected"),
        pl.lit(None, dtype=pl.Float64).alias("margin"),
        "invalid",
        "normaliser_drop",
    )
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
        pl.when(null_prompt).then(pl.lit("null_value")).otherwise(pl.col("invalid")).alias("invalid"),
        pl.when(null_prompt).then(None).otherwise(pl.col("normaliser_drop")).alias("normaliser_drop"),
        pl.col("_src").alias("source_index"),
    )
