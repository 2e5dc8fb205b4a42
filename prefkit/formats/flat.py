"""``flat``: flat strings with an explicit prompt (Intel/orca_dpo_pairs, OpenHermes-binarized, truthy-dpo …),
including Alpaca / LLaMA-Factory preference rows.

Alpaca rows (``instruction``, ``input``, optional ``history`` of ``[user, assistant]`` pairs, optional ``system``)
become the prompt the way LLaMA-Factory's ``AlpacaDatasetConverter`` builds it: the history turns, then one
user turn ``instruction + "\n" + input`` with empty parts left out (a row whose two parts are both empty is
``empty_text``).
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from prefkit.accounting import Reason, declare
from prefkit.formats.base import (
    MESSAGES_DTYPE,
    NULL_VALUE,
    ColumnMapping,
    Family,
    first_reason,
    is_string,
    pick_column,
    single_assistant,
    user_prompt,
)

NAME = "flat"
LETTER = "A"
DESCRIPTION = (
    "flat strings with an explicit prompt column (prompt/question/input/instruction + chosen/rejected)"
)

PROMPT_ALIASES = ("prompt", "input", "question", "instruction")
CHOSEN_ALIASES = ("chosen", "chosen_response")
REJECTED_ALIASES = ("rejected", "rejected_response")
SYSTEM_ALIASES = ("system", "system_prompt")


(BAD_HISTORY,) = declare(
    Reason("bad_history", "invalid", "an Alpaca `history` entry is not a [user, assistant] pair")
)


def _is_history(dtype: pa.DataType) -> bool:
    return (
        pa.types.is_list(dtype)
        and pa.types.is_list(dtype.value_type)
        and is_string(dtype.value_type.value_type)
    )


def match(schema: pa.Schema, columns: dict[str, str | None], sample=None) -> ColumnMapping | str:
    prompt = pick_column(schema, columns.get("prompt"), PROMPT_ALIASES, is_string)
    chosen = pick_column(schema, columns.get("chosen"), CHOSEN_ALIASES, is_string)
    rejected = pick_column(schema, columns.get("rejected"), REJECTED_ALIASES, is_string)
    if not (prompt and chosen and rejected):
        return "needs string columns prompt (or question/input/instruction), chosen and rejected"
    system = pick_column(schema, columns.get("system"), SYSTEM_ALIASES, is_string)
    extra = {}
    alpaca = columns.get("prompt") is None and {"instruction", "input"} <= set(schema.names)
    if alpaca and is_string(schema.field("instruction").type) and is_string(schema.field("input").type):
        prompt, extra = "instruction", {"columns": {"query": "input"}}
    if "history" in schema.names and (alpaca or _is_history(schema.field("history").type)):
        extra.setdefault("columns", {})["history"] = "history"  # in Alpaca rows of any type: checked per row
    return ColumnMapping(NAME, chosen=chosen, rejected=rejected, prompt=prompt, system=system, extra=extra)


def _query(mapping: ColumnMapping) -> pl.Expr:
    """The user turn: the prompt column, or Alpaca's ``instruction + "\n" + input`` with empty parts left out."""
    prompt = pl.col(mapping.prompt_column)
    query = (mapping.extra.get("columns") or {}).get("query")
    if query is None:
        return prompt
    parts = pl.concat_list([prompt.fill_null(""), pl.col(query).fill_null("")])
    return parts.list.eval(pl.element().filter(pl.element() != "")).list.join("\n")


def _with_history(prompt: pl.Series, history: pl.Series) -> tuple[pl.Series, pl.Series]:
    """History turns before each prompt's user turn (after its system message); rows with a malformed history."""
    rows, bad = [], []
    for messages, pairs in zip(prompt.to_list(), history.to_list(), strict=True):
        pairs = [] if pairs is None or pairs == "" else pairs  # no history
        ok = isinstance(pairs, list) and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(t, str) for t in p) for p in pairs
        )
        turns = [
            {"role": r, "content": c}
            for p in (pairs if ok else [])
            for r, c in zip(("user", "assistant"), p, strict=True)
        ]
        head = [m for m in messages if m["role"] == "system"]
        rows.append(head + turns + [m for m in messages if m["role"] != "system"])
        bad.append(not ok)
    return pl.Series("prompt", rows, dtype=MESSAGES_DTYPE), pl.Series("_bad_history", bad)


def normalise(df: pl.DataFrame, mapping: ColumnMapping, schema: pa.Schema) -> pl.DataFrame:
    system = pl.col(mapping.system) if mapping.system else None
    prompt, chosen, rejected = pl.col(mapping.prompt_column), pl.col(mapping.chosen), pl.col(mapping.rejected)
    out = df.select(
        user_prompt(_query(mapping), system).alias("prompt"),
        single_assistant(chosen).alias("chosen"),
        single_assistant(rejected).alias("rejected"),
        first_reason(
            (prompt.is_null() | chosen.is_null() | rejected.is_null(), NULL_VALUE),
        ).alias("invalid"),
    )
    history = (mapping.extra.get("columns") or {}).get("history")
    if history is None:
        return out
    merged, bad = _with_history(out["prompt"], df[history])
    out = out.with_columns(merged, bad)
    invalid = pl.coalesce(pl.col("invalid"), pl.when(pl.col("_bad_history")).then(BAD_HISTORY.lit()))
    return out.with_columns(invalid.alias("invalid")).drop("_bad_history")


FAMILY = Family(
    NAME,
    LETTER,
    DESCRIPTION,
    order=30,
    match=match,
    normalise=normalise,
    reasons=(NULL_VALUE, BAD_HISTORY),
    system_in_prompt=True,
)
