"""``transcript``: Human/Assistant transcript strings (Anthropic/hh-rlhf).

``"\\n\\nHuman: …\\n\\nAssistant: …"``. The transcripts are split at turn boundaries and the two histories compared
turn by turn; a character-level common prefix would eat answers that start alike.
"""

from __future__ import annotations

import re

import polars as pl
import pyarrow as pa

from prefkit.accounting import Reason, declare
from prefkit.formats.base import (
    HISTORIES_DIFFER,
    MESSAGES_DTYPE,
    NULL_VALUE,
    ColumnMapping,
    Family,
    is_string,
    pick_column,
)

NAME = "transcript"
LETTER = "D"
DESCRIPTION = 'Human/Assistant transcript strings ("\\n\\nHuman: …\\n\\nAssistant: …") with no prompt column'

TURN_MARKER = re.compile(r"\n\n(Human|Assistant):[ \t]?")
ROLES = {"Human": "user", "Assistant": "assistant"}


(BAD_TRANSCRIPT,) = declare(Reason("bad_transcript", "invalid", "not a well-formed Human/Assistant transcript"))


def match(schema: pa.Schema, columns: dict[str, str | None], sample=None) -> ColumnMapping | str:
    """``sample()`` gives the first rows (read only when the columns fit, to look for turn markers)."""
    chosen = pick_column(schema, columns.get("chosen"), ("chosen",), is_string)
    rejected = pick_column(schema, columns.get("rejected"), ("rejected",), is_string)
    if not (chosen and rejected):
        return "needs chosen and rejected transcript strings"
    if columns.get("prompt"):
        return "has a prompt column (that is the flat shape)"
    table = sample() if sample is not None else None
    if table is not None:
        texts = [t for t in table.column(chosen).to_pylist() if t]
        if texts and not any(TURN_MARKER.search("\n\n" + t) for t in texts):
            return "chosen/rejected are strings but not Human/Assistant transcripts, and there is no prompt column"
    return ColumnMapping(NAME, chosen=chosen, rejected=rejected)


def parse_transcript(text: str) -> list[tuple[str, str]] | None:
    """``[(role, content), …]``, or None when the text is not a well-formed Human/Assistant transcript."""
    parts = TURN_MARKER.split(text if text.startswith("\n\n") else "\n\n" + text)
    if parts[0].strip():
        return None
    turns = [(ROLES[parts[i]], parts[i + 1].strip()) for i in range(1, len(parts), 2)]
    if not turns or turns[-1][0] != "assistant":
        return None
    for i, (role, _) in enumerate(turns):
        if role != ("user" if i % 2 == 0 else "assistant"):
            return None
    return turns


def _split_row(chosen: str | None, rejected: str | None) -> tuple[list, list, list, Reason | None]:
    if chosen is None or rejected is None:
        return [], [], [], NULL_VALUE
    c, r = parse_transcript(chosen), parse_transcript(rejected)
    if c is None or r is None:
        return [], [], [], BAD_TRANSCRIPT
    if c[:-1] != r[:-1]:
        return [], [], [], HISTORIES_DIFFER
    msgs = [{"role": role, "content": content} for role, content in c[:-1]]
    return (
        msgs,
        [{"role": "assistant", "content": c[-1][1]}],
        [{"role": "assistant", "content": r[-1][1]}],
        None,
    )


def normalise(df: pl.DataFrame, mapping: ColumnMapping, schema: pa.Schema) -> pl.DataFrame:
    rows = [
        _split_row(c, r)
        for c, r in zip(df[mapping.chosen].to_list(), df[mapping.rejected].to_list(), strict=True)
    ]
    prompt, chosen, rejected, invalid = (
        (list(col) for col in zip(*rows, strict=True)) if rows else ([], [], [], [])
    )
    invalid = [r.name if r is not None else None for r in invalid]
    return pl.DataFrame(
        {"prompt": prompt, "chosen": chosen, "rejected": rejected, "invalid": invalid},
        schema={
            "prompt": MESSAGES_DTYPE,
            "chosen": MESSAGES_DTYPE,
            "rejected": MESSAGES_DTYPE,
            "invalid": pl.String,
        },
    )


FAMILY = Family(
    NAME,
    LETTER,
    DESCRIPTION,
    order=40,
    match=match,
    normalise=normalise,
    reasons=(NULL_VALUE, BAD_TRANSCRIPT, HISTORIES_DIFFER),
)
