"""``ranked``: one prompt, k answers with ranks, 1 = best (berkeley-nest/Nectar); binarised (:mod:`.binarise`).

The score is the rank; ``score_chosen``/``score_rejected`` hold the native ranks and ``margin`` is the rank gap
(``rank_rejected - rank_chosen``, positive). Prompts in ``Human:``/``Assistant:`` markup are split into turns.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from prefkit.formats import binarise
from prefkit.formats.base import ColumnMapping, Family

NAME = "ranked"
LETTER = "F"
DESCRIPTION = (
    "one prompt, k answers with ranks, 1 = best (Nectar `answers: [{answer, model, rank}]`); binarised"
)


def match_ranked(schema: pa.Schema, columns: dict[str, str | None], sample=None) -> ColumnMapping | str:
    prompt = binarise.prompt_column(schema, columns.get("prompt"))
    answers = columns.get("chosen") or "answers"
    fields = binarise.struct_fields(schema.field(answers).type) if answers in schema.names else {}
    if not (prompt and {"answer", "rank"} <= set(fields)):
        return "needs a prompt string and `answers: list[{answer, rank}]`"
    return ColumnMapping(
        NAME,
        chosen=answers,
        rejected=answers,
        prompt=prompt,
        extra={"pairs": binarise.DEFAULT_STRATEGY},
    )


def answers(df: pl.DataFrame, mapping: ColumnMapping) -> pl.DataFrame:
    """One row per answer: ``_src``, ``_pos``, ``text``, ``score`` (minus the rank) and ``native`` (the rank)."""
    col = mapping.chosen
    base = df.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("_src"), pl.col(col))
    ex = base.explode(col).with_columns(pl.int_range(pl.len()).over("_src").alias("_pos"))
    rank = pl.col(col).struct.field("rank").cast(pl.Float64, strict=False)
    return ex.select(
        "_src",
        "_pos",
        pl.col(col).struct.field("answer").cast(pl.String).alias("text"),
        (-rank).alias("score"),
        rank.alias("native"),
    )


def normalise(df: pl.DataFrame, mapping: ColumnMapping, schema: pa.Schema) -> pl.DataFrame:
    return binarise.normalise(df, mapping, answers(df, mapping), higher_is_better=False)


FAMILY = Family(
    NAME,
    LETTER,
    DESCRIPTION,
    order=60,
    match=match_ranked,
    normalise=normalise,
    options=binarise.OPTIONS,
    reasons=binarise.REASONS,
    full_frame=True,
)
