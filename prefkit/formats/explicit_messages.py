"""``explicit-messages``: message lists with an explicit prompt: ``prompt`` is a message list and
``chosen``/``rejected`` hold the final assistant turn (trl-lib/hh-rlhf-helpful-base), or plain strings."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from prefkit.formats.base import (
    ANSWER_NOT_SINGLE_ASSISTANT,
    NULL_VALUE,
    ColumnMapping,
    Family,
    answer_expr,
    first_reason,
    is_messages,
    is_string,
    messages_expr,
    pick_column,
)
from prefkit.formats.implicit_messages import (
    CHOSEN_ALIASES,
    PROMPT_ALIASES,
    REJECTED_ALIASES,
)

NAME = "explicit-messages"
LETTER = "C"
DESCRIPTION = "message lists with an explicit prompt (prompt = messages, chosen/rejected = [assistant])"

REASONS = (NULL_VALUE, ANSWER_NOT_SINGLE_ASSISTANT)


def match(schema: pa.Schema, columns: dict[str, str | None], sample=None) -> ColumnMapping | str:
    prompt = pick_column(schema, columns.get("prompt"), PROMPT_ALIASES, is_messages)
    answer = lambda t: is_messages(t) or is_string(t)  # noqa: E731
    chosen = pick_column(schema, columns.get("chosen"), CHOSEN_ALIASES, answer)
    rejected = pick_column(schema, columns.get("rejected"), REJECTED_ALIASES, answer)
    if not (prompt and chosen and rejected):
        return "needs prompt as a message list and chosen/rejected as message lists or strings"
    return ColumnMapping(NAME, chosen=chosen, rejected=rejected, prompt=prompt)


def normalise(df: pl.DataFrame, mapping: ColumnMapping, schema: pa.Schema) -> pl.DataFrame:
    chosen, chosen_ok = answer_expr(mapping.chosen, schema)
    rejected, rejected_ok = answer_expr(mapping.rejected, schema)
    prompt = messages_expr(mapping.prompt_column, schema)
    nulls = (
        pl.col(mapping.prompt_column).is_null()
        | pl.col(mapping.chosen).is_null()
        | pl.col(mapping.rejected).is_null()
    )
    return df.select(
        prompt.alias("prompt"),
        chosen.alias("chosen"),
        rejected.alias("rejected"),
        first_reason(
            (nulls, NULL_VALUE),
            (~chosen_ok | ~rejected_ok, ANSWER_NOT_SINGLE_ASSISTANT),
        ).alias("invalid"),
    )


FAMILY = Family(NAME, LETTER, DESCRIPTION, order=10, match=match, normalise=normalise, reasons=REASONS)
