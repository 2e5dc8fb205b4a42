"""Family H: TRL's implicit-prompt plain text: only ``chosen`` and ``rejected`` strings that share their start
(``{"chosen": "The capital of France is Paris.", "rejected": "The capital of France is Rome."}``).

The prompt is their longest common prefix, backed off to before a space, exactly as TRL's
``trl.data_utils.extract_prompt`` does: prompt ``"The capital of France is"``, chosen ``" Paris."``, rejected
``" Rome."``. The record holds them as messages (user prompt, assistant answers) with the text as is. Tried after
the transcript family, whose rows start with ``Human:`` markers.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import pyarrow as pa

from prefkit.formats.base import MESSAGES_DTYPE, Family, Mapping, is_string, pick_column

NAME = "implicit-text"
LETTER = "H"
DESCRIPTION = "chosen/rejected strings sharing their start, no prompt column (TRL's implicit-prompt text)"


def match(schema: pa.Schema, columns: dict[str, str | None], sample=None) -> Mapping | str:
    chosen = pick_column(schema, columns.get("chosen"), ("chosen",), is_string)
    rejected = pick_column(schema, columns.get("rejected"), ("rejected",), is_string)
    if not (chosen and rejected):
        return "needs chosen and rejected strings"
    if columns.get("prompt"):
        return "has a prompt column (that is the flat shape)"
    return Mapping(NAME, chosen=chosen, rejected=rejected)


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


def _row(chosen: str | None, rejected: str | None) -> tuple[list, list, list, str | None]:
    if chosen is None or rejected is None:
        return [], [], [], "null_value"
    prompt, c, r = extract_prompt(chosen, rejected)
    if not prompt.strip():
        return [], [], [], "missing_prompt"
    return (
        [{"role": "user", "content": prompt}],
        [{"role": "assistant", "content": c}],
        [{"role": "assistant", "content": r}],
        None,
    )


def normalise(df: pl.DataFrame, mapping: Mapping, schema: pa.Schema) -> pl.DataFrame:
    rows = [
        _row(c, r) for c, r in zip(df[mapping.chosen].to_list(), df[mapping.rejected].to_list(), strict=True)
    ]
    prompt, chosen, rejected, invalid = (
        (list(col) for col in zip(*rows, strict=True)) if rows else ([], [], [], [])
    )
    dtypes = {
        "prompt": MESSAGES_DTYPE,
        "chosen": MESSAGES_DTYPE,
        "rejected": MESSAGES_DTYPE,
        "invalid": pl.String,
    }
    return pl.DataFrame(
        {"prompt": prompt, "chosen": chosen, "rejected": rejected, "invalid": invalid}, schema=dtypes
    )


FAMILY = Family(NAME, LETTER, DESCRIPTION, order=45, match=match, normalise=normalise)
