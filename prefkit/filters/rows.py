"""Validation and the row-local filters, as polars expressions over normalised rows.

A row gets the first reason that applies, so each row is counted exactly once; the reasons are declared here
(the glossary is :mod:`prefkit.accounting`).
"""

from __future__ import annotations

import polars as pl

from prefkit.accounting import Reason, declare
from prefkit.formats.base import first_reason

REASONS = declare(
    Reason("empty_text", "invalid", "a message is empty or blank"),
    Reason(
        "bad_prompt_roles",
        "invalid",
        "prompt is not [system?] user (assistant user)* ending with a user turn",
    ),
    Reason("identical", "dropped", "chosen == rejected after whitespace normalisation"),
    Reason(
        "template_residue",
        "dropped",
        "chat-template tokens or transcript markers inside the text (--keep-residue keeps them)",
    ),
    Reason("below_min_margin", "dropped", "margin below --min-margin"),
)

#: leftovers of chat templates / transcripts that should not be inside normalised message content (literal
#: substrings, matched with one Aho-Corasick pass), plus content that starts with a transcript "Human:" marker
TEMPLATE_RESIDUE = (
    "<|im_start|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|endoftext|>",
    "[INST]",
    "[/INST]",
    "<extra_id_",
    "<start_of_turn>",
    "<end_of_turn>",
    "\n\nHuman:",
    "\n\nAssistant:",
)
PROMPT_ROLES = r"^(system,)?user(,assistant,user)*$"


def any_content(column: str, predicate) -> pl.Expr:
    """Whether ``predicate(content)`` holds for any message of a message-list column."""
    return pl.col(column).list.eval(predicate(pl.element().struct.field("content"))).list.any()


def _blank(content: pl.Expr) -> pl.Expr:
    return content.is_null() | (content.str.strip_chars() == "")


def residue(content: pl.Expr) -> pl.Expr:
    """Chat-template or transcript residue inside one message's content."""
    return content.str.contains_any(list(TEMPLATE_RESIDUE)) | content.str.strip_chars_start().str.starts_with(
        "Human:"
    )


def residue_in_row() -> pl.Expr:
    return any_content("prompt", residue) | any_content("chosen", residue) | any_content("rejected", residue)


def identical_answers(df: pl.DataFrame) -> pl.Series:
    """chosen == rejected after whitespace normalisation.

    Squashing whitespace is a regex pass over every answer, so it only runs on the rows that can be equal:
    those whose answers start and end with the same non-blank character.
    """
    answer = lambda col: pl.col(col).list.first().struct.field("content").str.strip_chars()  # noqa: E731
    maybe = df.select(
        (answer("chosen").str.head(1) == answer("rejected").str.head(1))
        & (answer("chosen").str.tail(1) == answer("rejected").str.tail(1))
    ).to_series()
    squash = lambda col: answer(col).str.replace_all(r"\s+", " ")  # noqa: E731
    rows = df.select("chosen", "rejected").with_row_index("_i").filter(maybe.fill_null(False))
    same = rows.filter(rows.select(squash("chosen") == squash("rejected")).to_series().fill_null(False))["_i"]
    return pl.Series("_identical", [False] * df.height).scatter(same, True)


def validation_reason() -> pl.Expr:
    """Checks every normalised row must pass, after the normaliser's own ``invalid`` reason."""
    roles = pl.col("prompt").list.eval(pl.element().struct.field("role")).list.join(",")
    blank = any_content("prompt", _blank) | any_content("chosen", _blank) | any_content("rejected", _blank)
    return pl.coalesce(
        pl.col("invalid"),
        first_reason(
            (blank, "empty_text"),
            (~roles.str.contains(PROMPT_ROLES), "bad_prompt_roles"),
        ),
    )


def drop_reason(
    *, keep_ties: bool, keep_residue: bool, min_margin: float | None, has_tie_column: bool = False
) -> pl.Expr:
    """The row-local filters, in order: identical, residue, ties, min margin."""
    tie = pl.col("margin") == 0
    if has_tie_column:
        tie = tie.fill_null(False) | pl.col("tie").fill_null(False)
    conditions = [(pl.col("_identical"), "identical")]
    if not keep_residue:
        conditions.append((residue_in_row(), "template_residue"))
    if not keep_ties:
        conditions.append((tie, "tie"))
    if min_margin is not None:
        conditions.append((pl.col("margin") < min_margin, "below_min_margin"))
    return first_reason(*conditions)
