"""``implicit-messages``: message lists with an implicit prompt: ``chosen``/``rejected`` are whole conversations
ending in the answer (ultrafeedback_binarized, dpo-mix-7k, Capybara-Preferences …).

The prompt is the shared history, compared turn by turn: when the two histories differ the row is invalid
(``histories_differ``), never silently taken from ``chosen``.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from prefkit.formats.base import (
    ANSWER_NOT_ASSISTANT,
    EMPTY_CONVERSATION,
    HISTORIES_DIFFER,
    MISSING_PROMPT,
    NULL_VALUE,
    ColumnMapping,
    Family,
    answer_ok,
    first_reason,
    is_messages,
    messages_equal,
    messages_expr,
    pick_column,
)

NAME = "implicit-messages"
LETTER = "B"
DESCRIPTION = "message lists with an implicit prompt (chosen/rejected are whole conversations)"

CHOSEN_ALIASES = ("chosen", "chosen_messages", "chosen_conversation")
REJECTED_ALIASES = ("rejected", "rejected_messages", "rejected_conversation")
PROMPT_ALIASES = ("prompt", "prompt_messages")


def match(schema: pa.Schema, columns: dict[str, str | None], sample=None) -> ColumnMapping | str:
    chosen = pick_column(schema, columns.get("chosen"), CHOSEN_ALIASES, is_messages)
    rejected = pick_column(schema, columns.get("rejected"), REJECTED_ALIASES, is_messages)
    if not (chosen and rejected):
        return "needs chosen and rejected as message lists ({role, content})"
    if columns.get("prompt") or pick_column(schema, None, PROMPT_ALIASES, is_messages):
        return "has a message-list prompt column (that is the explicit-messages shape)"
    return ColumnMapping(NAME, chosen=chosen, rejected=rejected)


def last_is_assistant(messages: pl.Expr) -> pl.Expr:
    return messages.list.last().struct.field("role") == "assistant"


def _after_last_user(messages: pl.Expr) -> pl.Expr:
    """How many messages follow the last user turn (the answer: one assistant message, or TRL's tool-calling
    sequence); the whole length when there is no user turn."""
    is_user = pl.element().struct.field("role") == "user"
    last_user = messages.list.eval(pl.int_range(pl.len()).filter(is_user)).list.last()
    return (messages.list.len() - 1 - last_user).fill_null(messages.list.len())


def split_conversations(frame: pl.DataFrame, c: str = "_c", r: str = "_r") -> pl.DataFrame:
    """``frame`` with ``prompt``/``chosen``/``rejected`` and ``invalid`` from its two whole conversations ``c`` and
    ``r``: the answer is what follows the last user turn, the prompt everything before it, compared turn by turn.
    (Worked out in steps, each column once: polars would otherwise compute a shared sub-expression again.)"""
    conv_c, conv_r = pl.col(c), pl.col(r)
    frame = frame.with_columns(_after_last_user(conv_c).alias("_nc"), _after_last_user(conv_r).alias("_nr"))
    frame = frame.with_columns(
        conv_c.list.head(conv_c.list.len() - pl.col("_nc")).alias("prompt"),
        conv_r.list.head(conv_r.list.len() - pl.col("_nr")).alias("_pr"),
        conv_c.list.tail(pl.col("_nc")).alias("chosen"),
        conv_r.list.tail(pl.col("_nr")).alias("rejected"),
    )
    prompt_c, prompt_r = pl.col("prompt"), pl.col("_pr")
    invalid = first_reason(
        (conv_c.is_null() | conv_r.is_null(), NULL_VALUE),
        ((conv_c.list.len() == 0) | (conv_r.list.len() == 0), EMPTY_CONVERSATION),
        (~last_is_assistant(conv_c) | ~last_is_assistant(conv_r), ANSWER_NOT_ASSISTANT),
        ((prompt_c.list.len() == 0) | (prompt_r.list.len() == 0), MISSING_PROMPT),
        (~answer_ok(pl.col("chosen")) | ~answer_ok(pl.col("rejected")), ANSWER_NOT_ASSISTANT),
        (~messages_equal(frame, "prompt", "_pr"), HISTORIES_DIFFER),
    )
    return frame.with_columns(invalid.alias("invalid")).drop("_nc", "_nr", "_pr")


def normalise(df: pl.DataFrame, mapping: ColumnMapping, schema: pa.Schema) -> pl.DataFrame:
    chosen = messages_expr(mapping.chosen, schema)
    rejected = messages_expr(mapping.rejected, schema)
    out = df.select(chosen.alias("_c"), rejected.alias("_r"))
    return split_conversations(out).select("prompt", "chosen", "rejected", "invalid")


FAMILY = Family(
    NAME,
    LETTER,
    DESCRIPTION,
    order=20,
    match=match,
    normalise=normalise,
    reasons=(NULL_VALUE, EMPTY_CONVERSATION, ANSWER_NOT_ASSISTANT, MISSING_PROMPT, HISTORIES_DIFFER),
)
