"""Families B and C: message lists.

B (implicit prompt): ``chosen``/``rejected`` are whole conversations ending in the answer (ultrafeedback_binarized,
dpo-mix-7k, Capybara-Preferences …). The prompt is the shared history, compared turn by turn: when the two
histories differ the row is invalid, never silently taken from ``chosen``.

C (explicit prompt): ``prompt`` is a message list and ``chosen``/``rejected`` hold the final assistant turn
(trl-lib/hh-rlhf-helpful-base), or plain strings.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from prefkit.formats.base import (
    Mapping,
    first_reason,
    is_messages,
    is_string,
    messages_expr,
    single_assistant,
)

IMPLICIT = "implicit-messages"
EXPLICIT = "explicit-messages"
DESCRIPTIONS = {
    IMPLICIT: "message lists with an implicit prompt (chosen/rejected are whole conversations)",
    EXPLICIT: "message lists with an explicit prompt (prompt = messages, chosen/rejected = [assistant])",
}

CHOSEN_ALIASES = ("chosen", "chosen_messages", "chosen_conversation")
REJECTED_ALIASES = ("rejected", "rejected_messages", "rejected_conversation")
PROMPT_ALIASES = ("prompt", "prompt_messages")


def match_implicit(schema: pa.Schema, columns: dict[str, str | None]) -> Mapping | str:
    from prefkit.formats import pick_column

    chosen = pick_column(schema, columns.get("chosen"), CHOSEN_ALIASES, is_messages)
    rejected = pick_column(schema, columns.get("rejected"), REJECTED_ALIASES, is_messages)
    if not (chosen and rejected):
        return "needs chosen and rejected as message lists ({role, content})"
    if columns.get("prompt") or pick_column(schema, None, PROMPT_ALIASES, is_messages):
        return "has a message-list prompt column (that is the explicit-messages shape)"
    return Mapping(IMPLICIT, chosen=chosen, rejected=rejected)


def match_explicit(schema: pa.Schema, columns: dict[str, str | None]) -> Mapping | str:
    from prefkit.formats import pick_column

    prompt = pick_column(schema, columns.get("prompt"), PROMPT_ALIASES, is_messages)
    answer = lambda t: is_messages(t) or is_string(t)  # noqa: E731
    chosen = pick_column(schema, columns.get("chosen"), CHOSEN_ALIASES, answer)
    rejected = pick_column(schema, columns.get("rejected"), REJECTED_ALIASES, answer)
    if not (prompt and chosen and rejected):
        return "needs prompt as a message list and chosen/rejected as message lists or strings"
    return Mapping(EXPLICIT, chosen=chosen, rejected=rejected, prompt=prompt)


def _last_is_assistant(messages: pl.Expr) -> pl.Expr:
    return messages.list.last().struct.field("role") == "assistant"


def normalise_implicit(df: pl.DataFrame, mapping: Mapping, schema: pa.Schema) -> pl.DataFrame:
    chosen = messages_expr(mapping.chosen, schema)
    rejected = messages_expr(mapping.rejected, schema)
    out = df.select(chosen.alias("_c"), rejected.alias("_r"))
    c, r = pl.col("_c"), pl.col("_r")
    prompt_c = c.list.head(c.list.len() - 1)
    prompt_r = r.list.head(r.list.len() - 1)
    return out.select(
        prompt_c.alias("prompt"),
        pl.concat_list([c.list.last()]).alias("chosen"),
        pl.concat_list([r.list.last()]).alias("rejected"),
        first_reason(
            (c.is_null() | r.is_null(), "null_value"),
            ((c.list.len() == 0) | (r.list.len() == 0), "empty_conversation"),
            (~_last_is_assistant(c) | ~_last_is_assistant(r), "answer_not_assistant"),
            ((c.list.len() < 2) | (r.list.len() < 2), "missing_prompt"),
            (~prompt_c.eq_missing(prompt_r), "histories_differ"),
        ).alias("invalid"),
    )


def _answer(column: str, schema: pa.Schema) -> tuple[pl.Expr, pl.Expr]:
    """(answer as [assistant message], is-valid) for a message-list or string answer column."""
    if is_string(schema.field(column).type):
        return single_assistant(pl.col(column)), pl.col(column).is_not_null()
    msgs = messages_expr(column, schema)
    ok = (msgs.list.len() == 1) & _last_is_assistant(msgs)
    return msgs, ok


def normalise_explicit(df: pl.DataFrame, mapping: Mapping, schema: pa.Schema) -> pl.DataFrame:
    chosen, chosen_ok = _answer(mapping.chosen, schema)
    rejected, rejected_ok = _answer(mapping.rejected, schema)
    prompt = messages_expr(mapping.prompt, schema)
    nulls = (
        pl.col(mapping.prompt).is_null()
        | pl.col(mapping.chosen).is_null()
        | pl.col(mapping.rejected).is_null()
    )
    return df.select(
        prompt.alias("prompt"),
        chosen.alias("chosen"),
        rejected.alias("rejected"),
        first_reason(
            (nulls, "null_value"),
            (~chosen_ok | ~rejected_ok, "answer_not_single_assistant"),
        ).alias("invalid"),
    )
