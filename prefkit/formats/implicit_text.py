"""``implicit-text``: TRL's implicit-prompt plain text: only ``chosen`` and ``rejected`` strings that share their
start (``{"chosen": "The capital of France is Paris.", "rejected": "The capital of France is Rome."}``).

The prompt is their longest common prefix, cut at the last whitespace within it, the whitespace going to the
answers (:func:`split_implicit`): prompt ``"The capital of France is"``, chosen ``" Paris."``, rejected
``" Rome."``. That is what TRL's ``trl.data_utils.extract_prompt`` means to do; its loop (:func:`extract_prompt`,
kept for TRL-exact tokenization of rows without a prompt) cuts mid-word when the answers differ inside a word
(``"The cat"`` / ``"The car"`` → ``"The ca"``) and one character short when one answer is a prefix of the other
(``"The sky"`` / ``"The sky is blue"`` → ``"The sk"``, ``"y"``). A split that leaves no prompt or an empty answer
is invalid with its reason (``missing_prompt``, ``empty_answer``). The record holds them as messages (user
prompt, assistant answers) with the text as is. Tried after the transcript family, whose rows start with
``Human:`` markers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
import pyarrow as pa

from prefkit.accounting import Reason, declare
from prefkit.formats.base import (
    MESSAGES_DTYPE,
    MISSING_PROMPT,
    NULL_VALUE,
    ColumnMapping,
    Family,
    is_string,
    pick_column,
)

NAME = "implicit-text"
LETTER = "H"
DESCRIPTION = "chosen/rejected strings sharing their start, no prompt column (TRL's implicit-prompt text)"
(EMPTY_ANSWER,) = declare(
    Reason(
        "empty_answer",
        "invalid",
        "implicit text: after the shared start (cut at a word boundary) chosen or rejected has no text left",
    )
)


def match(schema: pa.Schema, columns: dict[str, str | None], sample=None) -> ColumnMapping | str:
    chosen = pick_column(schema, columns.get("chosen"), ("chosen",), is_string)
    rejected = pick_column(schema, columns.get("rejected"), ("rejected",), is_string)
    if not (chosen and rejected):
        return "needs chosen and rejected strings"
    if columns.get("prompt"):
        return "has a prompt column (that is the flat shape)"
    return ColumnMapping(NAME, chosen=chosen, rejected=rejected)


def extract_prompt(chosen: Sequence, rejected: Sequence) -> tuple[Sequence, Sequence, Sequence]:
    """TRL's ``extract_prompt`` (trl/data_utils.py) on two strings (or message lists): the longest common prefix;
    when strings differ right after a space, the space goes to the answers. Returns (prompt, chosen, rejected)."""
    idx = 0
    for idx in range(min(len(chosen), len(rejected))):
        if chosen[idx] != rejected[idx]:
            if chosen[idx - 1] == " ":  # remove space before the prompt
                idx -= 1
            break
    return chosen[:idx], chosen[idx:], rejected[idx:]


def split_implicit(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two texts that share their start into (prompt, chosen, rejected), as TRL's ``extract_prompt`` means
    to: the longest common prefix, a space right before the difference going to the answers. Where TRL's loop
    cuts inside a word (the answers differ between two letters or digits) or leaves an answer empty (one text is
    a prefix of the other), the prompt is cut instead at the last whitespace of the common prefix (a space goes
    to the answers, as in TRL; other whitespace stays in the prompt). No whitespace there: the prompt is empty."""
    n = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        n += 1
    nexts = [text[n] for text in (chosen, rejected) if n < len(text)]
    mid_word = n > 0 and chosen[n - 1].isalnum() and any(c.isalnum() for c in nexts)
    if len(nexts) < 2 or mid_word:
        k = max((i for i in range(n) if chosen[i].isspace()), default=-1)
        if k < 0:
            return "", chosen, rejected
        cut = k if chosen[k] == " " else k + 1
    else:
        cut = n - 1 if n > 0 and chosen[n - 1] == " " else n
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _row(chosen: str | None, rejected: str | None) -> tuple[list, list, list, Reason | None]:
    if chosen is None or rejected is None:
        return [], [], [], NULL_VALUE
    prompt, c, r = split_implicit(chosen, rejected)
    if not prompt.strip():
        return [], [], [], MISSING_PROMPT
    if not c.strip() or not r.strip():
        return [], [], [], EMPTY_ANSWER
    return (
        [{"role": "user", "content": prompt}],
        [{"role": "assistant", "content": c}],
        [{"role": "assistant", "content": r}],
        None,
    )


def normalise(df: pl.DataFrame, mapping: ColumnMapping, schema: pa.Schema) -> pl.DataFrame:
    rows = [
        _row(c, r) for c, r in zip(df[mapping.chosen].to_list(), df[mapping.rejected].to_list(), strict=True)
    ]
    prompt, chosen, rejected, invalid = (
        (list(col) for col in zip(*rows, strict=True)) if rows else ([], [], [], [])
    )
    dtypes: dict[str, Any] = {
        "prompt": MESSAGES_DTYPE,
        "chosen": MESSAGES_DTYPE,
        "rejected": MESSAGES_DTYPE,
        "invalid": pl.String,
    }
    invalid = [r.name if r is not None else None for r in invalid]
    return pl.DataFrame(
        {"prompt": prompt, "chosen": chosen, "rejected": rejected, "invalid": invalid}, schema=dtypes
    )


FAMILY = Family(
    NAME,
    LETTER,
    DESCRIPTION,
    order=45,
    match=match,
    normalise=normalise,
    reasons=(NULL_VALUE, MISSING_PROMPT, EMPTY_ANSWER),
    plain_text=True,
)
