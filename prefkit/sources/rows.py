"""Rows read one by one (JSON that Arrow cannot type as it is) into a table, reconciling columns whose rows
disagree on the type, without losing content:

* numbers and strings in one column (``score: 8`` and ``score: "7/10"``): strings (scores are parsed later,
  :mod:`prefkit.formats.scores`);
* strings and message lists in one column (formats.md: answers may be either): when every message list is one
  assistant message with only ``role``/``content``, those become their text; otherwise each string becomes one
  message (``user`` in a prompt column, ``assistant`` in an answer column). Then prompt and answers are made the
  same kind (message prompts accept string answers; string prompts with message answers become user messages).

Anything else that mixes (a list and a number, an object and a string) is a :class:`SourceError` naming the
column, the kinds and the lines.

Rows read here also keep what Arrow's typed reading would change: the JSON fields (``tools``,
``chat_template_kwargs``, a message's ``tool_calls``) become JSON text with each row's own key order (Arrow
would give every row the first row's key order, and a chat template renders keys in the order it gets them),
and in a message column that mixes string contents with content parts (``[{"type": "text", ...}]``) each string
becomes one text part (joined back to the same string when normalised).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from prefkit.errors import SourceError
from prefkit.record import ROW_FIELDS, to_json_text

#: columns whose strings are user turns when they become messages (all others: assistant answers)
PROMPT_COLUMNS = ("prompt", "question", "input", "instruction", "history", "conversation")


def _kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
        return "messages"
    return "list" if isinstance(value, list) else type(value).__name__


def _is_bare_assistant(messages: list) -> bool:
    return (
        len(messages) == 1
        and messages[0].get("role") == "assistant"
        and set(messages[0]) <= {"role", "content"}
    )


def _as_messages(value: Any, role: str) -> Any:
    return [{"role": role, "content": value}] if isinstance(value, str) else value


def _reconcile(name: str, values: list, kinds: set[str]) -> list | None:
    """The column's values made one kind, or None when they cannot be (see the module docstring)."""
    if kinds <= {"number", "string", "bool"}:
        return [None if v is None else (v if isinstance(v, str) else str(v)) for v in values]
    if kinds == {"string", "messages"}:
        if name not in PROMPT_COLUMNS and all(_is_bare_assistant(v) for v in values if isinstance(v, list)):
            return [v[0].get("content") if isinstance(v, list) else v for v in values]
        role = "user" if name in PROMPT_COLUMNS else "assistant"
        return [_as_messages(v, role) for v in values]
    return None


def _kinds(rows: Sequence[dict]) -> dict[str, dict[str, int]]:
    """column -> kind -> the first row index holding it."""
    seen: dict[str, dict[str, int]] = {}
    for i, row in enumerate(rows):
        for name, value in row.items():
            kind = _kind(value)
            if kind is not None:
                seen.setdefault(name, {}).setdefault(kind, i)
    return seen


def _messages(value: Any) -> list[dict]:
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


def keep_json_fields(rows: list[dict]) -> None:
    """In place: JSON fields as JSON text in each row's own key order; string contents next to content parts in
    a message column become one text part each (see the module docstring)."""
    parts_in: set[str] = set()
    for row in rows:
        for name, value in row.items():
            if name in ROW_FIELDS:
                row[name] = to_json_text(value)
            for m in _messages(value):
                if "tool_calls" in m:
                    m["tool_calls"] = to_json_text(m["tool_calls"])
                if isinstance(m.get("content"), list):
                    parts_in.add(name)
    for row in rows:
        for name in parts_in:
            for m in _messages(row.get(name)):
                if isinstance(m.get("content"), str):
                    m["content"] = [{"type": "text", "text": m["content"]}]


def table_from_rows(rows: list[dict], path: Path, lines: list[int]) -> pa.Table:
    """A table from parsed rows (``lines[i]``: the file line of row ``i``, for messages)."""
    keep_json_fields(rows)
    # every key of every row (``Table.from_pylist`` would take the first row's keys only)
    columns = {name: [row.get(name) for row in rows] for name in dict.fromkeys(k for r in rows for k in r)}
    try:
        return pa.table(columns)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass

    for name, kinds in _kinds(rows).items():
        if len(kinds) < 2:
            continue
        fixed = _reconcile(name, columns[name], set(kinds))
        if fixed is None:
            where = ", ".join(f"{k} at line {lines[i]}" for k, i in kinds.items())
            raise SourceError(
                f"column {name!r} of {str(path)!r} mixes kinds of values ({where})",
                "make the column one kind in every row (or leave the rows out)",
            )
        columns[name] = fixed
    _match_prompt_and_answers(columns)
    try:
        return pa.table(columns)
    except (pa.ArrowTypeError, pa.ArrowInvalid) as err:
        first = " ".join(str(err).split())[:200]
        raise SourceError(
            f"cannot type the rows of {str(path)!r}: {first}", "make each column one kind"
        ) from None


def _match_prompt_and_answers(columns: dict[str, list]) -> None:
    """String prompts next to message answers become user messages (no shape has string prompts and message
    answers; message prompts take string answers as they are)."""
    answers = [c for c in ("chosen", "rejected") if c in columns]
    message_answers = any(isinstance(v, list) for c in answers for v in columns[c])
    if not message_answers:
        return
    for name in PROMPT_COLUMNS:
        if name in columns and all(v is None or isinstance(v, str) for v in columns[name]):
            columns[name] = [_as_messages(v, "user") for v in columns[name]]
            return
