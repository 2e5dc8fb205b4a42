"""``unpaired``: TRL's unpaired preference shape (the ``KTOTrainer`` format): ``prompt``, ``completion``,
``label``.

One answer per row, ``label`` true for a desirable completion and false for an undesirable one; ``prompt`` and
``completion`` are messages (conversational) or strings (standard). The record is a pair, so the rows of one prompt
are paired: its k-th desirable completion with its k-th undesirable completion, in source order. The pair is kept
at the desirable row; the undesirable row it took is dropped as ``paired_in_another_row`` (its completion is the
pair's ``rejected``), and a completion without a partner of the other label for the same prompt as ``no_partner``.
``--export kto`` writes the pairs back as unpaired rows (each pair's chosen with label true, rejected with false).

Which rows pair is decided over the whole split (:func:`prepare`, which keeps the partners' completions), since a
prompt's rows may lie in different batches.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from prefkit.accounting import Reason, declare
from prefkit.formats.base import (
    ANSWER_NOT_SINGLE_ASSISTANT,
    NULL_VALUE,
    ColumnMapping,
    Family,
    answer_expr,
    first_reason,
    is_messages,
    is_string,
    message,
    messages_expr,
)
from prefkit.frame import NORMALISER_DROP

NAME = "unpaired"
LETTER = "K"
DESCRIPTION = (
    "TRL's unpaired shape (KTO): prompt + completion (messages or strings) + boolean label; a prompt's "
    "desirable and undesirable completions are paired in source order"
)
PARTNER = "_partner_completion"

PAIRED_IN_ANOTHER_ROW, NO_PARTNER = declare(
    Reason(
        "paired_in_another_row",
        "dropped",
        "an undesirable completion paired with a desirable one of the same prompt (the pair is kept at that row)",
    ),
    Reason(
        "no_partner",
        "dropped",
        "a completion with no partner of the other label for the same prompt (unpaired data is not balanced)",
        fix="a prompt pairs only when it has a desirable (label true) and an undesirable completion: give both "
        "labels for the same prompts (`prefkit build` makes pairs; --export kto writes them back unpaired)",
    ),
)


def match(schema: pa.Schema, columns: dict[str, str | None], sample=None) -> ColumnMapping | str:
    """TRL's column names (``prompt``, ``completion``, ``label``); column overrides do not apply."""
    names = set(schema.names)
    text_or_messages = lambda t: is_messages(t) or is_string(t)  # noqa: E731
    if not {"prompt", "completion", "label"} <= names:
        return "needs prompt, completion and label columns (TRL's unpaired preference shape)"
    if not (
        text_or_messages(schema.field("prompt").type) and text_or_messages(schema.field("completion").type)
    ):
        return "needs prompt and completion as message lists or strings"
    if not pa.types.is_boolean(schema.field("label").type):
        return "needs a boolean label (true: desirable)"
    return ColumnMapping(
        NAME,
        chosen="completion",
        rejected="completion",
        prompt="prompt",
        extra={"columns": {"label": "label"}},
    )


def _pairs(keys: pl.DataFrame) -> pl.DataFrame:
    """``keys`` (``_row``, ``_k`` the prompt's hash, ``label``) → the pairs ``(d, u)``: a prompt's k-th desirable row
    with its k-th undesirable row."""
    valid = keys.filter(pl.col("label").is_not_null() & pl.col("_k").is_not_null())
    ranked = valid.with_columns(pl.int_range(pl.len()).over("_k", "label").alias("_n"))
    good = ranked.filter(pl.col("label")).select("_k", "_n", pl.col("_row").alias("d"))
    bad = ranked.filter(~pl.col("label")).select("_k", "_n", pl.col("_row").alias("u"))
    return good.join(bad, on=["_k", "_n"], how="inner").select("d", "u")


def _keys(frame: pl.DataFrame, start: int) -> pl.DataFrame:
    return frame.select(
        pl.int_range(start, start + frame.height, dtype=pl.Int64).alias("_row"),
        pl.when(pl.col("prompt").is_not_null()).then(pl.col("prompt").hash(seed=0)).alias("_k"),
        pl.col("label"),
    )


def _partners(frame: pl.DataFrame, start: int) -> pl.DataFrame:
    """``(d, u, partner completion)`` for the pairs among ``frame``'s rows (numbered from ``start``)."""
    pairs = _pairs(_keys(frame, start))
    completions = frame.select(
        pl.int_range(start, start + frame.height, dtype=pl.Int64).alias("u"),
        pl.col("completion").alias(PARTNER),
    )
    return pairs.join(completions, on="u", how="left")


def prepare(mapping: ColumnMapping, schema: pa.Schema, read) -> dict:
    """The split's pairs, with the undesirable partner's completion (kept in memory: about the size of the
    paired undesirable completions)."""
    frames, start = [], 0
    keys = []
    for batch in read(["prompt", "completion", "label"]):
        frame = pl.from_arrow(batch.select(["prompt", "completion", "label"]), rechunk=False)
        assert isinstance(frame, pl.DataFrame)
        keys.append(_keys(frame, start))
        frames.append(frame.select(pl.col("completion").alias(PARTNER)).with_row_index("u", offset=start))
        start += frame.height
    if not keys:
        return {"partners": None}
    pairs = _pairs(pl.concat(keys))
    completions = pl.concat(frames).with_columns(pl.col("u").cast(pl.Int64))
    return {"partners": pairs.join(completions, on="u", how="left")}


def normalise(df: pl.DataFrame, mapping: ColumnMapping, schema: pa.Schema) -> pl.DataFrame:
    facts = mapping.facts or {}
    start = facts.get("start", 0)
    partners = facts.get("partners") if "partners" in facts else _partners(df, start)
    rows = pl.int_range(start, start + df.height, dtype=pl.Int64, eager=True).alias("_row")
    frame = df.with_columns(rows)
    if partners is None or partners.is_empty():
        frame = frame.with_columns(
            pl.lit(None, dtype=pl.Int64).alias("u"), pl.col("completion").alias(PARTNER)
        )
        paired_u = pl.Series("u", [], dtype=pl.Int64)
    else:
        frame = frame.join(partners.select("d", "u", PARTNER), left_on="_row", right_on="d", how="left")
        frame = frame.sort("_row")
        paired_u = partners["u"]
    extended = schema.append(pa.field(PARTNER, schema.field("completion").type))
    own, own_ok = answer_expr("completion", extended)
    other, other_ok = answer_expr(PARTNER, extended)
    prompt = (
        pl.concat_list([message("user", pl.col("prompt"))])
        if is_string(schema.field("prompt").type)
        else messages_expr("prompt", extended)
    )
    has_partner = pl.col("u").is_not_null()
    taken = pl.col("_row").is_in(paired_u.implode())
    nulls = pl.col("prompt").is_null() | pl.col("completion").is_null() | pl.col("label").is_null()
    out = frame.select(
        prompt.alias("prompt"),
        pl.when(has_partner).then(own).otherwise(own).alias("chosen"),
        pl.when(has_partner).then(other).otherwise(own).alias("rejected"),
        first_reason(
            (nulls, NULL_VALUE), (~own_ok | (has_partner & ~other_ok), ANSWER_NOT_SINGLE_ASSISTANT)
        ).alias("invalid"),
        first_reason((taken, PAIRED_IN_ANOTHER_ROW), (~has_partner, NO_PARTNER)).alias(NORMALISER_DROP),
        *[pl.lit(None, dtype=pl.Float64).alias(c) for c in ("score_chosen", "score_rejected", "margin")],
    )
    return out


FAMILY = Family(
    NAME,
    LETTER,
    DESCRIPTION,
    order=55,
    match=match,
    normalise=normalise,
    reasons=(NULL_VALUE, ANSWER_NOT_SINGLE_ASSISTANT, PAIRED_IN_ANOTHER_ROW, NO_PARTNER),
    full_frame=True,
    prepare=prepare,
)
