"""Validation and the row-local filters, as polars expressions over normalised rows.

A row gets the first reason that applies, so each row is counted exactly once; the reasons are declared here
(the glossary is :mod:`prefkit.accounting`).
"""

from __future__ import annotations

import json

import polars as pl

from prefkit.accounting import Reason, declare
from prefkit.formats.base import answer_ok, first_reason, roles
from prefkit.formats.explicit_messages import ANSWER_NOT_SINGLE_ASSISTANT
from prefkit.frame import INVALID_COLUMN
from prefkit.record import PROMPT_ROLES as RECORD_PROMPT_ROLES

EMPTY_TEXT, BAD_PROMPT_ROLES, TOOL_CALL_ID_MISMATCH, NON_FINITE_SCORE = declare(
    Reason("empty_text", "invalid", "a message is empty or blank"),
    Reason(
        "bad_prompt_roles",
        "invalid",
        "prompt is not [system?] user, then assistant turns (each followed by the tool results of its calls) "
        "and user turns, ending with a user turn or tool results",
    ),
    Reason(
        "tool_call_id_mismatch",
        "invalid",
        "a tool message answers no call of the assistant turn before it (its tool_call_id is not one of that "
        "turn's tool_calls ids, or that turn makes no call)",
    ),
    Reason("non_finite_score", "invalid", "a score or the margin is NaN or infinite"),
)
#: what classify counts and turns round (the drops are filters: :mod:`prefkit.filters.registry`)
NEGATIVE_MARGIN_FLAG, FLIPPED, RM_DISAGREES_FLAG, RM_FLIPPED = declare(
    Reason(
        "negative_margin",
        "flags",
        "rows whose margin is below 0: what the margin was read from (the source's scores, or --margin-col) "
        "prefers the rejected answer",
    ),
    Reason("flipped", "flags", "pairs turned round: chosen and rejected swapped (--negative-margin flip)"),
    Reason(
        "rm_disagrees", "flags", "rows whose reward model does not prefer the chosen answer (rm_margin <= 0)"
    ),
    Reason(
        "rm_flipped",
        "flags",
        "pairs turned round because the reward model prefers the rejected answer (--flip-disagreeing)",
    ),
)
#: columns that come in chosen/rejected pairs (swapped together when a pair is turned round), and the margins
#: that change sign with them
PAIRED_COLUMNS = (
    ("chosen", "rejected"),
    ("score_chosen", "score_rejected"),
    ("ref_chosen_logps", "ref_rejected_logps"),
    ("chosen_tokens", "rejected_tokens"),
    ("rm_chosen", "rm_rejected"),
)
SIGNED_COLUMNS = ("margin", "rm_margin")

PROMPT_ROLES = f"^{RECORD_PROMPT_ROLES}$"
#: the helper columns classify computes and drops again: identical answers, a tool message answering no call
IDENTICAL_COLUMN, TOOL_MISMATCH = "_identical", "_tool_mismatch"


def any_content(column: str, predicate) -> pl.Expr:
    """Whether ``predicate(content)`` holds for any message of a message-list column."""
    return pl.col(column).list.eval(predicate(pl.element().struct.field("content"))).list.any()


def _blank_messages(column: str) -> pl.Expr:
    """A message with no text: blank content and no tool calls (an assistant's tool-call turn has no text)."""
    el = pl.element().struct
    blank = el.field("content").is_null() | (el.field("content").str.strip_chars() == "")
    return pl.col(column).list.eval(blank & el.field("tool_calls").is_null()).list.any()


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
    single = (pl.col("chosen").list.len() == 1) & (pl.col("rejected").list.len() == 1)
    equal = (
        pl.when(single)
        .then(squash("chosen") == squash("rejected"))
        .otherwise(pl.col("chosen") == pl.col("rejected"))
    )
    same = rows.filter(rows.select(equal).to_series().fill_null(False))["_i"]
    return pl.Series(IDENTICAL_COLUMN, [False] * df.height, dtype=pl.Boolean).scatter(same, True)


def tool_call_mismatch(df: pl.DataFrame) -> pl.Series:
    """:data:`TOOL_MISMATCH`: a tool message with a ``tool_call_id`` that answers no call of the assistant turn before
    it (in the prompt followed by chosen, or by rejected), or follows a turn without ``tool_calls`` while the
    conversation has calls. Rows without a ``tool_call_id`` are not looked at (the grammar is in PROMPT_ROLES);
    calls without an ``id`` match any ``tool_call_id``."""
    out = pl.Series(TOOL_MISMATCH, [False] * df.height, dtype=pl.Boolean)
    if not {"prompt", "chosen", "rejected"} <= set(df.columns):
        return out
    ids = pl.element().struct.field("tool_call_id").is_not_null()
    has = pl.any_horizontal(pl.col(c).list.eval(ids).list.any() for c in ("prompt", "chosen", "rejected"))
    rows = df.select("prompt", "chosen", "rejected").with_row_index("_i").filter(has.fill_null(False))
    bad = [
        r["_i"]
        for r in rows.iter_rows(named=True)
        if not _calls_answered(r["prompt"] + r["chosen"]) or not _calls_answered(r["prompt"] + r["rejected"])
    ]
    return out.scatter(bad, True) if bad else out


def _calls_answered(messages: list[dict]) -> bool:
    """Whether each tool message with a ``tool_call_id`` answers a call of the nearest assistant turn before it
    (``tool_calls`` as JSON text or objects; each call answered at most once)."""

    pending: list | None = None  # ids the last assistant turn called; None before any call
    for m in messages:
        if m.get("role") == "assistant":
            calls = m.get("tool_calls")
            if isinstance(calls, str):
                try:
                    calls = json.loads(calls)
                except ValueError:
                    return False
            pending = [c.get("id") if isinstance(c, dict) else None for c in calls or []]
        elif m.get("role") == "tool" and m.get("tool_call_id") is not None:
            if not pending:
                return False
            match = m["tool_call_id"] if m["tool_call_id"] in pending else None if None in pending else False
            if match is False:
                return False
            pending.remove(match)
    return True


def validation_reason() -> pl.Expr:
    """Checks every normalised row must pass, after the normaliser's own ``invalid`` reason (reads the
    ``_tool_mismatch`` column of :func:`tool_call_mismatch` when the frame has it)."""
    blank = _blank_messages("prompt") | _blank_messages("chosen") | _blank_messages("rejected")
    return pl.coalesce(
        pl.col(INVALID_COLUMN),
        first_reason(
            (blank, EMPTY_TEXT),
            (~roles(pl.col("prompt")).str.contains(PROMPT_ROLES), BAD_PROMPT_ROLES),
            (pl.col(TOOL_MISMATCH), TOOL_CALL_ID_MISMATCH),
            (~answer_ok(pl.col("chosen")) | ~answer_ok(pl.col("rejected")), ANSWER_NOT_SINGLE_ASSISTANT),
            (_non_finite(), NON_FINITE_SCORE),
        ),
    )


def _non_finite() -> pl.Expr:
    scores = [pl.col(c) for c in ("score_chosen", "score_rejected", "margin")]
    return pl.any_horizontal([c.is_nan() | c.is_infinite() for c in scores]).fill_null(False)


def orient(df: pl.DataFrame, swap: pl.Expr, flag: Reason) -> pl.DataFrame:
    """Swap chosen and rejected where ``swap`` holds, with every paired column present (scores, a scored set's
    reference log-probs, token counts and reward scores: :data:`PAIRED_COLUMNS`) and the margins' signs, counted
    in ``flag``'s column: how ``--negative-margin flip`` and ``--flip-disagreeing`` turn a pair round."""
    swap = swap.fill_null(False)
    pairs = [(a, b) for a, b in PAIRED_COLUMNS if a in df.columns and b in df.columns]
    swapped = [pl.when(swap).then(pl.col(b)).otherwise(pl.col(a)).alias(a) for a, b in pairs]
    swapped += [pl.when(swap).then(pl.col(a)).otherwise(pl.col(b)).alias(b) for a, b in pairs]
    signed = [
        pl.when(swap).then(-pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c in SIGNED_COLUMNS
        if c in df.columns
    ]
    return df.with_columns(*swapped, *signed, swap.alias(flag.flag))
