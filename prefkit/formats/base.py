"""Shared pieces of the normalisers: the column mapping, type tests and message expressions.

A normaliser turns a raw Arrow table into a polars frame with, row for row, the canonical columns
``prompt``, ``chosen``, ``rejected`` (lists of ``{role, content}``), the score columns, and ``invalid``: a reason
string for rows it could not normalise (null when the row is fine). It never drops rows itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import polars as pl
import pyarrow as pa

from prefkit.accounting import Reason, declare
from prefkit.errors import FormatError
from prefkit.record import ANSWER_ROLES, MESSAGE_FIELDS

#: a normalised message: role, content and every optional field (null when absent; pruned at output)
MESSAGE_DTYPE = pl.Struct({"role": pl.String, "content": pl.String, **{f: pl.String for f in MESSAGE_FIELDS}})
MESSAGES_DTYPE = pl.List(MESSAGE_DTYPE)
#: names sources give an assistant's reasoning (transformers reads ``thinking`` too)
REASONING_ALIASES = ("reasoning_content", "thinking", "reasoning")

#: ShareGPT roles (LLaMA-Factory and older sets) -> canonical roles
SHAREGPT_ROLES = {
    "human": "user",
    "gpt": "assistant",
    "system": "system",
    "user": "user",
    "assistant": "assistant",
}


@dataclass(frozen=True)
class ColumnMapping:
    """How a source's columns map onto the canonical record (what `prefkit detect` prints)."""

    family: str
    chosen: str
    rejected: str
    prompt: str | None = None
    system: str | None = None
    score_chosen: str | None = None
    score_rejected: str | None = None
    margin: str | None = None
    extra: dict = field(default_factory=dict)
    #: what a normaliser needs to know of the whole split when it sees one batch at a time
    #: (:func:`prefkit.formats.prepare`); not part of how the columns map
    facts: dict | None = field(default=None, compare=False, repr=False)

    @property
    def prompt_column(self) -> str:
        """``prompt`` of the shapes that read a prompt column (detection sets it); ``ValueError`` for the
        implicit-prompt shapes, which have none."""
        if self.prompt is None:
            raise ValueError(f"{self.family} reads no prompt column")
        return self.prompt

    def to_dict(self) -> dict:
        out = asdict(replace(self, facts=None))
        return {k: v for k, v in out.items() if k != "facts" and v not in (None, {})}


@dataclass(frozen=True)
class FamilyOption:
    """An option a family reads (``--pairs``, ``--axis`` …), declared once by the family that owns it.

    ``prefkit.options`` turns it into a ``BuildOptions`` field and ``prefkit build`` into a flag, with this help.
    ``annotation`` is the value's type (``Literal[...]`` for choices); ``ge`` a lower bound; ``applies_to`` the
    family variants it is for (None: every variant of the families that list it).
    """

    name: str
    annotation: Any
    help: str
    ge: float | None = None
    applies_to: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Family:
    """One dataset shape: how to recognise it and how to normalise it (the registry's entry).

    ``letter`` is the label `detect` and the manifest show (not an order: families are lettered as they were
    added); ``order`` sets detection order (lower first: the most specific shapes first). ``match(schema, columns,
    sample)`` returns a :class:`ColumnMapping` or a sentence saying why not; ``normalise(df, mapping, schema)``
    returns the canonical columns (see :mod:`prefkit.formats`). A family whose normaliser looks across rows of the split
    (SHP's pairs per post) declares ``prepare(mapping, schema, read)``: it reads the columns it needs over the whole
    split (``read(columns)`` gives them in batches) and returns facts for ``mapping.facts``, so that every batch
    normalises as it would in one. ``full_frame``: ``normalise`` reads the scores itself (and may emit more or
    fewer rows than its input); ``system_in_prompt``: ``normalise`` puts the mapping's system column into the
    prompt itself (else the registry adds it as the prompt's first message); ``plain_text``: its rows are TRL's
    standard text format (strings), which ``--output-format auto`` writes as they came (``plain``).
    """

    name: str
    letter: str
    description: str
    order: int
    match: Callable[..., ColumnMapping | str]
    normalise: Callable[[pl.DataFrame, ColumnMapping, pa.Schema], pl.DataFrame]
    options: tuple[FamilyOption, ...] = ()
    reasons: tuple[Reason, ...] = ()
    full_frame: bool = False
    prepare: Callable[..., dict] | None = None
    system_in_prompt: bool = False
    plain_text: bool = False


def pick_column(
    schema: pa.Schema, override: str | None, aliases: tuple[str, ...], type_ok: Callable[[pa.DataType], bool]
) -> str | None:
    """The column to use: the user's override (checked), else the first alias present with a fitting type."""
    if override is not None:
        if override not in schema.names:
            raise FormatError(
                f"column {override!r} not found; columns are {schema.names}",
                "pass one of the listed columns to the --*-col option",
            )
        return override if type_ok(schema.field(override).type) else None
    return next((a for a in aliases if a in schema.names and type_ok(schema.field(a).type)), None)


def is_string(dtype: pa.DataType) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_null(dtype)


def is_messages(dtype: pa.DataType) -> bool:
    """A list of structs with role/content (or ShareGPT from/value) fields."""
    if not (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)):
        return False
    item = dtype.value_type
    if not pa.types.is_struct(item):
        return False
    names = {item.field(i).name for i in range(item.num_fields)}
    return {"role", "content"} <= names or {"from", "value"} <= names


def is_number(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype)


def _struct_fields(dtype: pa.DataType) -> dict[str, pa.DataType]:
    item = dtype.value_type
    return {item.field(i).name: item.field(i).type for i in range(item.num_fields)}


def is_parts(dtype: pa.DataType) -> bool:
    """Content given as a list of parts (``[{"type": "text", "text": …}, …]``, OpenAI / multimodal style)."""
    return (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)) and pa.types.is_struct(dtype.value_type)


def _content(field: pl.Expr, dtype: pa.DataType) -> pl.Expr:
    """A message's content as text: text parts joined with nothing between them (as the part-aware chat
    templates of Qwen2.5-VL, Llama-3.2-Vision and Gemma 3 join them); non-text parts are flagged elsewhere."""
    if is_parts(dtype):
        return field.list.eval(pl.element().struct.field("text")).list.join("")
    return field.cast(pl.String)


def non_text_parts(column: str, schema: pa.Schema) -> pl.Expr | None:
    """Rows whose message column holds a non-text content part (an image, audio …), or None if it cannot."""
    if not is_messages(schema.field(column).type):
        return None
    fields = _struct_fields(schema.field(column).type)
    if "content" not in fields or not is_parts(fields["content"]):
        return None
    part_type = pl.element().struct.field("type")
    per_message = pl.element().struct.field("content").list.eval(part_type != "text").list.any()
    return pl.col(column).list.eval(per_message).list.any().fill_null(False)


def messages_expr(column: str, schema: pa.Schema) -> pl.Expr:
    """A list-of-messages column as normalised messages: role, content (text parts joined), and the optional
    fields (``reasoning_content`` from any of its aliases, ``tool_calls`` as JSON text, ``name``,
    ``tool_call_id``); ShareGPT ``from``/``value`` is read too."""
    fields = _struct_fields(schema.field(column).type)
    el = pl.element().struct
    if {"role", "content"} <= set(fields):
        role, content = el.field("role"), _content(el.field("content"), fields["content"])
    else:
        role = el.field("from").replace_strict(SHAREGPT_ROLES, default=el.field("from"))
        content = el.field("value")
    none = pl.lit(None, dtype=pl.String)
    reasoning = [el.field(a).cast(pl.String) for a in REASONING_ALIASES if a in fields]
    extra: dict[str, Any] = {
        "reasoning_content": pl.coalesce(reasoning) if reasoning else none,
        "tool_calls": el.field("tool_calls").cast(pl.String) if "tool_calls" in fields else none,
        "name": el.field("name").cast(pl.String) if "name" in fields else none,
        "tool_call_id": el.field("tool_call_id").cast(pl.String) if "tool_call_id" in fields else none,
    }
    return pl.col(column).list.eval(
        pl.struct(role=role.cast(pl.String), content=content.cast(pl.String), **extra)
    )


def messages_equal(frame: pl.DataFrame, a: str, b: str) -> pl.Expr:
    """``a`` and ``b`` (message-list columns of ``frame``) hold the same messages, null equal to null: compared
    field by field (role, content, and the optional fields some message of ``frame`` sets), which is several times
    faster than comparing the structs, whose optional fields are mostly null."""
    messages = [frame[c].explode(empty_as_null=False, keep_nulls=False) for c in (a, b)]
    if any(m.null_count() for m in messages):  # a null message: compare the structs themselves
        return pl.col(a).eq_missing(pl.col(b))
    fields = ["role", "content"]
    for name in MESSAGE_FIELDS:
        if any(m.struct.field(name).null_count() < len(m) for m in messages):
            fields.append(name)
    el = pl.element().struct
    same = [pl.col(a).list.eval(el.field(f)).eq_missing(pl.col(b).list.eval(el.field(f))) for f in fields]
    return pl.all_horizontal(same)


def message(role: str, content: pl.Expr) -> pl.Expr:
    none = pl.lit(None, dtype=pl.String)
    optional: dict[str, Any] = dict.fromkeys(MESSAGE_FIELDS, none)
    return pl.struct(role=pl.lit(role, dtype=pl.String), content=content.cast(pl.String), **optional)


def single_assistant(content: pl.Expr) -> pl.Expr:
    """``[{role: assistant, content}]`` as a list column."""
    return pl.concat_list([message("assistant", content)])


def user_prompt(user: pl.Expr, system: pl.Expr | None = None) -> pl.Expr:
    """``[{system}?, {user}]``: the system message only where it is a non-blank string."""
    only_user = pl.concat_list([message("user", user)])
    if system is None:
        return only_user
    has_system = system.is_not_null() & (system.str.strip_chars() != "")
    return (
        pl.when(has_system)
        .then(pl.concat_list([message("system", system), message("user", user)]))
        .otherwise(only_user)
    )


def roles(messages: pl.Expr) -> pl.Expr:
    """The roles of a message list joined by commas (``"system,user"``)."""
    return messages.list.eval(pl.element().struct.field("role")).list.join(",")


def answer_ok(messages: pl.Expr) -> pl.Expr:
    """An answer TRL trains on: one assistant message, or assistant tool calls and tool answers ending with an
    assistant message (TRL's tool-calling preference shape)."""
    return roles(messages).str.contains(f"^{ANSWER_ROLES}$")


def first_reason(*conditions: tuple[pl.Expr, Reason]) -> pl.Expr:
    """The name of the reason of the first true condition, or null: a row's `invalid` value."""
    expr = pl.lit(None, dtype=pl.String)
    for cond, reason in reversed(conditions):
        expr = pl.when(cond.fill_null(False)).then(reason.lit()).otherwise(expr)
    return expr


#: reasons several families give
NULL_VALUE, EMPTY_CONVERSATION, ANSWER_NOT_ASSISTANT, MISSING_PROMPT, HISTORIES_DIFFER, TIE = declare(
    Reason("null_value", "invalid", "a prompt/chosen/rejected value is null"),
    Reason("empty_conversation", "invalid", "a conversation has no messages"),
    Reason("answer_not_assistant", "invalid", "a conversation does not end with an assistant turn"),
    Reason("missing_prompt", "invalid", "a conversation has no turns before the answer"),
    Reason("histories_differ", "invalid", "chosen and rejected disagree before the final answer"),
    Reason("tie", "dropped", "the pair is a tie (margin 0, or a tie label; --keep-ties keeps them)"),
)
NON_TEXT_CONTENT, ANSWER_NOT_SINGLE_ASSISTANT = declare(
    Reason(
        "non_text_content",
        "invalid",
        "a message holds a content part that is not text (an image, audio …); not supported yet",
    ),
    Reason(
        "answer_not_single_assistant",
        "invalid",
        "chosen/rejected is not an answer: one assistant message, or tool calls and tool answers ending with an "
        "assistant message",
    ),
)


def answer_expr(column: str, schema: pa.Schema) -> tuple[pl.Expr, pl.Expr]:
    """(answer as [assistant message], is-valid) for a message-list or string answer column."""
    if is_string(schema.field(column).type):
        return single_assistant(pl.col(column)), pl.col(column).is_not_null()
    msgs = messages_expr(column, schema)
    return msgs, answer_ok(msgs)
