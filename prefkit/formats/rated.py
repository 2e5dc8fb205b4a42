"""``rated``: one prompt, N completions with ratings (openbmb/UltraFeedback raw); binarised (:mod:`.binarise`).

``--rating overall`` (default) uses ``overall_score``; ``--rating aspects`` the mean of the aspect ``Rating``
strings, ignoring ``"N/A"``. Also accepted: a list of strings (``generations``, ``responses``) with a parallel
list of numbers (``ratings``, ``rating``, ``scores``).
"""

from __future__ import annotations

from typing import Literal

import polars as pl
import pyarrow as pa

from prefkit.errors import FormatError
from prefkit.formats import binarise
from prefkit.formats.base import ColumnMapping, Family, FamilyOption, is_number, is_string

NAME = "rated"
LETTER = "G"
DESCRIPTION = (
    "one prompt, N completions with ratings (UltraFeedback `completions` with overall_score / aspect "
    "ratings, or parallel `generations` + `ratings` lists); binarised"
)
RATINGS = ("overall", "aspects", "rm_score", "judge_score")
#: per-completion scores `prefkit score` (reward model) and `prefkit score --judge` add to a generated set
SCORE_FIELDS = ("rm_score", "judge_score")
GEN_ALIASES = ("generations", "responses", "completions", "answers")
RATING_ALIASES = ("ratings", "rating", "scores")

OPTIONS = (
    *binarise.OPTIONS,
    FamilyOption(
        "rating",
        Literal["overall", "aspects", "rm_score", "judge_score"],
        "Rated completions: rate them by overall_score (default), the mean of the aspect ratings (UltraFeedback "
        "raw), or a generated set's rm_score (`prefkit score`) / judge_score (an LLM judge).",
    ),
    FamilyOption(
        "chosen_from",
        str,
        "Rated completions with a `model` field (`prefkit generate`): delta pairs, chosen from this model's "
        "completions (with --rejected-from).",
    ),
    FamilyOption(
        "rejected_from",
        str,
        "Rated completions with a `model` field: delta pairs, rejected from this model's completions "
        "(with --chosen-from).",
    ),
)


def match(schema: pa.Schema, columns: dict[str, str | None], sample=None) -> ColumnMapping | str:
    prompt = binarise.prompt_column(schema, columns.get("prompt"))
    if not prompt:
        return "needs a prompt string (prompt/instruction/question/input)"
    extra = {"pairs": binarise.DEFAULT_STRATEGY}
    chosen_col = columns.get("chosen")
    names: tuple[str, ...] = (chosen_col,) if chosen_col else GEN_ALIASES
    for name in names:
        if name not in schema.names:
            continue
        fields = binarise.struct_fields(schema.field(name).type)
        rated = {"overall_score", "annotations", "model", *SCORE_FIELDS} & set(fields)
        if "response" in fields and rated:
            return ColumnMapping(
                NAME, chosen=name, rejected=name, prompt=prompt, extra={**extra, "shape": "completions"}
            )
        dtype = schema.field(name).type
        if pa.types.is_list(dtype) and is_string(dtype.value_type):
            for rating in RATING_ALIASES:
                rtype = schema.field(rating).type if rating in schema.names else None
                if rtype is not None and pa.types.is_list(rtype) and is_number(rtype.value_type):
                    lists = {**extra, "shape": "lists", "columns": {"ratings": rating}}
                    return ColumnMapping(NAME, chosen=name, rejected=name, prompt=prompt, extra=lists)
    return (
        "needs `completions: list[{response, overall_score | annotations | rm_score | model}]`, or a list of strings "
        "(generations/responses) with a parallel list of numbers (ratings/rating/scores)"
    )


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


def _list_answers(df: pl.DataFrame, col: str, ratings: str) -> pl.DataFrame:
    both = df.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("_src"), pl.col(col), pl.col(ratings))
    same_len = both.select(pl.col(col).list.len().eq_missing(pl.col(ratings).list.len())).to_series()
    both = both.with_columns(
        pl.when(same_len).then(pl.col(ratings)).otherwise(pl.lit(None)).alias(ratings),
        pl.when(same_len).then(pl.col(col)).otherwise(pl.lit(None)).alias(col),
    )
    ex = both.explode(col, ratings).with_columns(pl.int_range(pl.len()).over("_src").alias("_pos"))
    score = pl.col(ratings).cast(pl.Float64, strict=False)
    return ex.select(
        "_src", "_pos", pl.col(col).cast(pl.String).alias("text"), score.alias("score"), score.alias("native")
    )


def _score(col: str, fields: dict, rating: str) -> pl.Expr:
    item = pl.col(col).struct
    if rating not in RATINGS:
        raise FormatError(f"unknown --rating {rating!r}", f"use one of: {', '.join(RATINGS)}")
    if rating in SCORE_FIELDS:
        if rating not in fields:
            raise FormatError(
                f"column {col!r} has no {rating} to rate with",
                "score the generated set first: `prefkit score OUT --reward-model RM` (rm_score) or "
                "an LLM judge (judge_score)",
            )
        return item.field(rating).cast(pl.Float64, strict=False)
    if rating == "overall" and "overall_score" in fields:
        return item.field("overall_score").cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    if "annotations" in fields and pa.types.is_struct(fields["annotations"]):
        ann = fields["annotations"]
        aspects = [ann.field(i).name for i in range(ann.num_fields) if pa.types.is_struct(ann.field(i).type)]
        return _aspect_mean(item.field("annotations"), aspects)
    have = [f for f in ("overall_score", "annotations", *SCORE_FIELDS) if f in fields]
    raise FormatError(
        f"column {col!r} has no {'overall_score' if rating == 'overall' else 'annotations'} to rate with",
        "pass --rating to match the completions' fields ("
        + (
            ", ".join(have)
            if have
            else "none has a score: score them with `prefkit score`, or pair by model "
            "with --chosen-from/--rejected-from"
        )
        + ")",
    )


def answers(df: pl.DataFrame, mapping: ColumnMapping, schema: pa.Schema) -> pl.DataFrame:
    """One row per completion: ``_src``, ``_pos``, ``text``, ``score`` = ``native`` (the rating)."""
    col = mapping.chosen
    if mapping.extra.get("shape") == "lists":
        return _list_answers(df, col, mapping.extra["columns"]["ratings"])
    fields = binarise.struct_fields(schema.field(col).type)
    base = df.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("_src"), pl.col(col))
    ex = base.explode(col).with_columns(pl.int_range(pl.len()).over("_src").alias("_pos"))
    text = pl.col(col).struct.field("response").cast(pl.String)
    if mapping.extra.get("chosen_from") or mapping.extra.get("rejected_from"):
        score, native = _delta(col, fields, mapping.extra)
        _check_delta_models(ex, col, mapping.extra)
    else:
        score = native = _score(col, fields, mapping.extra.get("rating", "overall"))
    return ex.select("_src", "_pos", text.alias("text"), score.alias("score"), native.alias("native"))


def _delta(col: str, fields: dict, extra: dict) -> tuple[pl.Expr, pl.Expr]:
    """Delta pairs (Olmo 3's "delta learning"): score 1 for a completion of the ``chosen_from`` model, 0 for one
    of ``rejected_from``, null (not a candidate) for the rest, so every pair is chosen-model against
    rejected-model; the native value (the margin) is null: a model's name is not a rating."""
    chosen, rejected = extra.get("chosen_from"), extra.get("rejected_from")
    if not (chosen and rejected):
        raise FormatError(
            "--chosen-from and --rejected-from go together",
            "name both models (as in the completions' `model`)",
        )
    if chosen == rejected:
        raise FormatError(
            f"--chosen-from and --rejected-from name the same model ({chosen!r})",
            "delta pairs take the chosen answer from one model and the rejected one from another",
        )
    if "model" not in fields:
        raise FormatError(
            f"column {col!r} has no `model` field to take delta pairs from",
            "generate the completions with `prefkit generate`, which records each completion's model",
        )
    model = pl.col(col).struct.field("model").cast(pl.String)
    score = pl.when(model == chosen).then(1.0).when(model == rejected).then(0.0).otherwise(None)
    return score, pl.lit(None, dtype=pl.Float64)


def _check_delta_models(exploded: pl.DataFrame, col: str, extra: dict) -> None:
    """Refuse a delta-pair model name that no completion of the rows has (a typo would otherwise leave every
    prompt with one side only, reported as ties)."""
    seen = exploded.select(pl.col(col).struct.field("model").cast(pl.String).drop_nulls().unique())
    models = sorted(seen.to_series().to_list())
    for flag, name in (("--chosen-from", extra.get("chosen_from")), ("--rejected-from", extra.get("rejected_from"))):
        if models and name not in models:
            raise FormatError(
                f"{flag} {name!r} is not the model of any completion",
                f"the completions' models are: {', '.join(models)}",
            )


def normalise(df: pl.DataFrame, mapping: ColumnMapping, schema: pa.Schema) -> pl.DataFrame:
    return binarise.normalise(df, mapping, answers(df, mapping, schema), higher_is_better=True)


FAMILY = Family(
    NAME,
    LETTER,
    DESCRIPTION,
    order=70,
    match=match,
    normalise=normalise,
    options=OPTIONS,
    reasons=binarise.REASONS,
    full_frame=True,
)
