"""The ``kto`` export's rows (TRL's unpaired shape, ``KTOTrainer``): each pair as its chosen completion (``label``
true) then its rejected one (false), and which of those rows a split keeps (a completion is written once per
label; one with both labels is left out)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from prefkit.output.tables import PROVENANCE, PROVENANCE_FIELDS, frame, messages_type, plain_table, row_fields


def _kto_both(table: pa.Table) -> pl.DataFrame:
    """Each pair's chosen answer (``label`` true) then its rejected answer (false), pair after pair, with the
    row's ``tools`` / ``chat_template_kwargs`` (TRL's ``KTOTrainer`` passes both to the template)."""
    df = frame(table)
    n = df.height
    extra = [f.name for f in row_fields(table)]
    both = pl.concat(
        [
            df.select(
                "prompt",
                pl.col(answer).alias("completion"),
                pl.lit(label).alias("label"),
                *extra,
                *PROVENANCE,
            )
            for answer, label in (("chosen", True), ("rejected", False))
        ]
    ).with_columns(pl.int_range(pl.len()).alias("_o"))
    # pair i's two rows next to each other: chosen then rejected
    return both.with_columns(
        pl.when(pl.col("_o") < n).then(pl.col("_o") * 2).otherwise((pl.col("_o") - n) * 2 + 1).alias("_o")
    ).sort("_o")


def kto_rows(table: pa.Table) -> pa.Table:
    messages = messages_type(table)
    extra = row_fields(table)
    schema = pa.schema(
        [("prompt", messages), ("completion", messages), ("label", pa.bool_()), *extra, *PROVENANCE_FIELDS]
    )
    columns = ["prompt", "completion", "label", *[f.name for f in extra], *PROVENANCE]
    return plain_table(_kto_both(table).select(columns), schema)


def kto_keys(table: pa.Table) -> pl.DataFrame:
    """Per KTO row (in :func:`kto_rows` order): a hash of its (prompt, completion, tools, template arguments),
    and its label."""
    both = _kto_both(table)
    extra = [f.name for f in row_fields(table)]
    return both.select(
        pl.struct("prompt", "completion", *extra).struct.json_encode().hash(seed=0).alias("_k"), "label"
    )


def kto_choose(keys: pl.DataFrame, pairs: int) -> tuple[np.ndarray, dict]:
    """A (prompt, completion, label) seen before is written once; a (prompt, completion) with both labels is left
    out (binarised all-pairs make the same answer chosen in one pair and rejected in another)."""
    conflicting = (
        keys.group_by("_k").agg(pl.col("label").n_unique().alias("_labels")).filter(pl.col("_labels") > 1)
    )
    clean = ~keys["_k"].is_in(conflicting["_k"].implode())
    first = keys.select(pl.int_range(pl.len()).over("_k", "label") == 0).to_series()
    keep = (clean & first).to_numpy()
    stats = {
        "rows": int(keep.sum()),
        "pairs": pairs,
        "duplicate_completions": int(clean.sum()) - int(keep.sum()),
        "conflicting_completions": keys.height - int(clean.sum()),
    }
    return keep, stats
