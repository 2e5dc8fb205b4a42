"""Text output: message rows rendered with the chat template and split exactly as TRL's
``trl.data_utils.apply_chat_template`` splits them (``--output-format text``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, cast

import polars as pl
import pyarrow as pa
import pyarrow.compute as pac

from prefkit.chat.templates import ChatRenderer
from prefkit.record import frame_rows

#: one row's messages (``{"role", "content", ...}`` dicts)
Messages = Sequence[Mapping[str, Any]]


class MessageRows(NamedTuple):
    """Rows of messages as TRL renders them: each row's prompt, chosen and rejected messages, and its tools /
    chat-template keyword arguments (``extras``; None: no row has any)."""

    prompts: Sequence[Messages]
    chosen: Sequence[Messages]
    rejected: Sequence[Messages]
    extras: Sequence[Mapping[str, Any] | None] | None = None

    def rows(self, part: slice) -> MessageRows:
        """The rows of ``part`` (a slice)."""
        extras = self.extras[part] if self.extras is not None else None
        return MessageRows(self.prompts[part], self.chosen[part], self.rejected[part], extras)


def common_text_prefix(a: str, b: str) -> str:
    """The longest common prefix of two strings."""
    if b.startswith(a):
        return a
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def split_rendered(p: str, pc: str, pr: str) -> tuple[str, str, str]:
    """TRL's ``apply_chat_template`` split of rendered strings → (prompt, chosen, rejected).

    ``prompt`` is the common prefix of the rendered prompt (with generation prompt), prompt+chosen and
    prompt+rejected; the answers are the rest of prompt+answer.
    """
    prompt = common_text_prefix(common_text_prefix(p, pc), pr)
    return prompt, pc[len(prompt) :], pr[len(prompt) :]


def render_parts(
    renderer: ChatRenderer,
    rows: MessageRows,
    refused: dict[int, str] | None = None,
    need_prompt: bool = True,
) -> tuple[list[str] | None, list[str], list[str]]:
    """Rendered ``P`` (with generation prompt), ``PC`` and ``PR`` for each row (the strings TRL tokenizes);
    ``extras[i]``: row ``i``'s tools / template keyword arguments; ``P`` is None without ``need_prompt``.

    A row the template refuses raises :class:`~prefkit.errors.ModelError`, or, with a ``refused`` dict, renders
    as ``""`` and ``refused[i]`` holds the template's one-line message.
    """
    prompts, chosen, rejected, extras = rows
    parts: list[list[str] | None] = []
    for convs, gen in (
        ([list(a) + list(b) for a, b in zip(prompts, chosen, strict=True)], False),
        ([list(a) + list(b) for a, b in zip(prompts, rejected, strict=True)], False),
        (prompts if need_prompt else None, True),
    ):
        if convs is None:
            parts.append(None)
            continue
        texts, failures = renderer.render_rows(convs, add_generation_prompt=gen, extras=extras)
        if failures and refused is None:
            raise next(iter(failures.values()))
        for i, err in failures.items():
            refused.setdefault(i, err.message)  # type: ignore[union-attr]
        parts.append(texts)
    pc, pr, p = parts
    assert pc is not None and pr is not None, "answers are always rendered"
    return p, pc, pr


def render_text(
    renderer: ChatRenderer, rows: MessageRows, refused: dict[int, str] | None = None
) -> tuple[list[str], list[str], list[str]]:
    """Message rows → text rows (prompt, chosen, rejected strings) exactly as TRL's ``apply_chat_template``
    (``refused``: see :func:`render_parts`)."""
    out_p, out_c, out_r = [], [], []
    rendered_p, rendered_pc, rendered_pr = render_parts(renderer, rows, refused)
    assert rendered_p is not None, "render_parts renders prompts unless told not to"
    for p, pc, pr in zip(rendered_p, rendered_pc, rendered_pr, strict=True):
        a, b, c = split_rendered(p, pc, pr)
        out_p.append(a)
        out_c.append(b)
        out_r.append(c)
    return out_p, out_c, out_r


def text_table(table: Any, target: Any) -> Any:
    """A kept-rows Arrow table with ``prompt``/``chosen``/``rejected`` replaced by TRL-split rendered strings
    (the row-level ``tools`` / ``chat_template_kwargs`` are used in rendering and stay as columns)."""


    text = render_text(target.renderer, MessageRows(*frame_rows(cast(pl.DataFrame, pl.from_arrow(table)))))
    for name, values in zip(("prompt", "chosen", "rejected"), text, strict=True):
        table = table.set_column(table.column_names.index(name), name, pa.array(values, pa.string()))
    return table


def plain_table(records: pa.Table) -> pa.Table:
    """TRL's standard text format (``--output-format plain``): ``prompt``, ``chosen`` and ``rejected`` as the text of
    the records' one user message and one assistant message each (implicit-text rows, which hold exactly those),
    other columns as they are. Shapes: the same rows; the three columns become ``string``."""

    for name in ("prompt", "chosen", "rejected"):
        first = pac.list_element(records.column(name), 0)
        text = pac.struct_field(first, "content")
        records = records.set_column(records.schema.get_field_index(name), name, text)
    return records
