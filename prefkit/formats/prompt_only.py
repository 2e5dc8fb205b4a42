"""``prompt-only``: prompts without answers: a ``prompt`` column of text or of messages (``[{role, content},
…]``), what `prefkit generate` samples completions for.

Tried after every shape with answers (it matches any set with a prompt column). ``build`` reads such a set too,
but a row without answers makes no pair: each is counted invalid ``prompt_only``. `prefkit generate` reads the
``prompt`` column this family normalises (text becomes one user message; a ``system`` column is prepended by
the shared system handling).
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
    is_messages,
    is_string,
    messages_expr,
    pick_column,
    user_prompt,
)

NAME = "prompt-only"
LETTER = "I"
DESCRIPTION = "prompts without answers: a `prompt` column of text or messages (input of `prefkit generate`)"
PROMPT_ALIASES = ("prompt", "instruction", "question", "input", "messages")

(PROMPT_ONLY,) = declare(
    Reason(
        "prompt_only",
        "invalid",
        "a prompt without answers (prompt-only shape): sample completions for it with `prefkit generate`",
        fix="the source holds prompts only: `prefkit generate SOURCE --model MODEL -n 4 -o GEN` samples "
        "completions, `prefkit score GEN --reward-model RM` rates them, `prefkit build GEN --rating rm_score` pairs "
        "them",
    )
)


def _prompt_type(dtype: pa.DataType) -> bool:
    return (is_string(dtype) and not pa.types.is_null(dtype)) or is_messages(dtype)


def match(schema: pa.Schema, columns: dict[str, str | None], sample=None) -> ColumnMapping | str:
    prompt = pick_column(schema, columns.get("prompt"), PROMPT_ALIASES, _prompt_type)
    if not prompt:
        return "needs a prompt column of text or messages (prompt/instruction/question/input/messages)"
    return ColumnMapping(NAME, chosen=prompt, rejected=prompt, prompt=prompt)


def prompt_messages(df: pl.DataFrame, column: str, schema: pa.Schema) -> pl.Series:
    """The prompt column as normalised messages (text → one user message)."""
    dtype = schema.field(column).type
    expr = (
        messages_expr(column, schema) if is_messages(dtype) else user_prompt(pl.col(column).cast(pl.String))
    )
    blank = pl.col(column).is_null()
    return (
        df.select(pl.when(blank).then(None).otherwise(expr).alias("prompt")).to_series().cast(MESSAGES_DTYPE)
    )


def normalise(df: pl.DataFrame, mapping: ColumnMapping, schema: pa.Schema) -> pl.DataFrame:
    assert mapping.prompt is not None
    prompt = prompt_messages(df, mapping.prompt, schema)
    none = pl.Series([None] * df.height, dtype=MESSAGES_DTYPE)
    invalid = [(NULL_VALUE if null else PROMPT_ONLY).name for null in prompt.is_null().to_list()]
    return pl.DataFrame(
        {"prompt": prompt, "chosen": none, "rejected": none, "invalid": pl.Series(invalid, dtype=pl.String)}
    )


FAMILY = Family(
    NAME, LETTER, DESCRIPTION, order=200, match=match, normalise=normalise, reasons=(NULL_VALUE, PROMPT_ONLY)
)
