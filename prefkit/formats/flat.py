"""Family A: flat strings with an explicit prompt (Intel/orca_dpo_pairs, OpenHermes-binarized, truthy-dpo …)."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from prefkit.formats.base import (
    Family,
    Mapping,
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


def match(schema: pa.Schema, columns: dict[str, str | None], sample=None) -> Mapping | str:
    prompt = pick_column(schema, columns.get("prompt"), PROMPT_ALIASES, is_string)
    chosen = pick_column(schema, columns.get("chosen"), CHOSEN_ALIASES, is_string)
    rejected = pick_column(schema, columns.get("rejected"), REJECTED_ALIASES, is_string)
    if not (prompt and chosen and rejected):
        return "needs string columns prompt (or question/input/instruction), chosen and rejected"
    system = pick_column(schema, columns.get("system"), SYSTEM_ALIASES, is_string)
    return Mapping(NAME, chosen=chosen, rejected=rejected, prompt=prompt, system=system)


def normalise(df: pl.DataFrame, mapping: Mapping, schema: pa.Schema) -> pl.DataFrame:
    system = pl.col(mapping.system) if mapping.system else None
    prompt, chosen, rejected = pl.col(mapping.prompt), pl.col(mapping.chosen), pl.col(mapping.rejected)
    return df.select(
        user_prompt(prompt, system).alias("prompt"),
        single_assistant(chosen).alias("chosen"),
        single_assistant(rejected).alias("rejected"),
        first_reason(
            (prompt.is_null() | chosen.is_null() | rejected.is_null(), "null_value"),
        ).alias("invalid"),
    )


FAMILY = Family(NAME, LETTER, DESCRIPTION, order=30, match=match, normalise=normalise)
