"""Export shapes for other trainers (``--export``). The manifest, card and rejects are the same for every shape;
only the data files change.

=============  ======================================================================================
``trl``        the canonical record (default): TRL's conversational explicit-prompt shape, for DPO/ORPO/…
``openrlhf``   ``chosen`` / ``rejected`` = the whole conversations (prompt + answer) and ``margin``: OpenRLHF's
               reward / DPO datasets with ``--apply_chat_template --chosen_key chosen --rejected_key rejected``
               and no prompt key
``llamafactory``  ShareGPT ranking shape: ``conversations`` (``from``/``value``, human/gpt), ``system``, ``chosen``
               / ``rejected`` single ``{from: gpt, value}`` dicts, plus ``OUT/dataset_info.json`` with an entry per
               split (``formatting: sharegpt``, ``ranking: true``); set LLaMA-Factory's ``dataset_dir`` to OUT
``kto``        unpaired ``prompt`` / ``completion`` / ``label`` (TRL ``KTOTrainer``): each pair gives its chosen
               answer (``label`` true) and its rejected answer (false); a (prompt, completion, label) seen before
               is written once, and a (prompt, completion) that is chosen in one pair and rejected in another
               (binarised all-pairs) is left out, counted in the manifest's ``export`` entry
=============  ======================================================================================

Every shape keeps ``source``, ``source_index`` and ``id`` (the pair's id) so each row traces back.
"""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa

from prefkit.errors import SelectionError

EXPORTS = ("trl", "openrlhf", "llamafactory", "kto")
_PROVENANCE = ("source", "source_index", "id")

SHAREGPT_FROM = {"user": "human", "assistant": "gpt", "system": "system"}
SHAREGPT_MSG = pa.struct([("from", pa.string()), ("value", pa.string())])
MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def check_export(kind: str) -> str:
    if kind not in EXPORTS:
        raise SelectionError(f"unknown --export {kind!r}", f"use one of: {', '.join(EXPORTS)}")
    return kind


def _plain(df: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    return df.to_arrow().cast(schema)


def export_table(table: pa.Table, kind: str) -> tuple[pa.Table, dict]:
    """One split of canonical records in the shape ``kind``; returns the table and stats for the manifest."""
    check_export(kind)
    if kind == "trl":
        return table, {"rows": table.num_rows}
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    prov = [pl.col(c) for c in _PROVENANCE]
    prov_fields = [("source", pa.string()), ("source_index", pa.int64()), ("id", pa.string())]
    if kind == "openrlhf":
        out = df.select(
            pl.concat_list("prompt", "chosen").alias("chosen"),
            pl.concat_list("prompt", "rejected").alias("rejected"),
            "margin",
            *prov,
        )
        schema = pa.schema(
            [("chosen", MESSAGES), ("rejected", MESSAGES), ("margin", pa.float64()), *prov_fields]
        )
        return _plain(out, schema), {"rows": out.height}
    if kind == "llamafactory":
        role = pl.element().struct.field("role")
        sharegpt = pl.struct(
            role.replace_strict(SHAREGPT_FROM, default=role).alias("from"),
            pl.element().struct.field("content").alias("value"),
        )
        first = pl.col("prompt").list.first().struct
        is_system = first.field("role") == "system"
        out = df.select(
            pl.col("prompt")
            .list.eval(pl.element().filter(role != "system"))
            .list.eval(sharegpt)
            .alias("conversations"),
            pl.when(is_system.fill_null(False))
            .then(first.field("content"))
            .otherwise(pl.lit(""))
            .alias("system"),
            pl.struct(
                pl.lit("gpt").alias("from"),
                pl.col("chosen").list.first().struct.field("content").alias("value"),
            ).alias("chosen"),
            pl.struct(
                pl.lit("gpt").alias("from"),
                pl.col("rejected").list.first().struct.field("content").alias("value"),
            ).alias("rejected"),
            "margin",
            *prov,
        )
        schema = pa.schema(
            [
                ("conversations", pa.list_(SHAREGPT_MSG)),
                ("system", pa.string()),
                ("chosen", SHAREGPT_MSG),
                ("rejected", SHAREGPT_MSG),
                ("margin", pa.float64()),
                *prov_fields,
            ]
        )
        return _plain(out, schema), {"rows": out.height}
    # kto
    both = pl.concat(
        [
            df.select("prompt", pl.col("chosen").alias("completion"), pl.lit(True).alias("label"), *prov),
            df.select("prompt", pl.col("rejected").alias("completion"), pl.lit(False).alias("label"), *prov),
        ]
    ).with_columns(pl.int_range(pl.len()).alias("_o"))
    # pair i's two rows next to each other: chosen then rejected
    n = df.height
    both = both.with_columns(
        pl.when(pl.col("_o") < n).then(pl.col("_o") * 2).otherwise((pl.col("_o") - n) * 2 + 1).alias("_o")
    ).sort("_o")
    key = pl.struct("prompt", "completion").struct.json_encode().hash(seed=0)
    both = both.with_columns(key.alias("_k"))
    conflicting = (
        both.group_by("_k").agg(pl.col("label").n_unique().alias("_labels")).filter(pl.col("_labels") > 1)
    )
    clean = both.filter(~pl.col("_k").is_in(conflicting["_k"].implode()))
    unique = clean.filter(pl.int_range(pl.len()).over("_k", "label") == 0)
    stats = {
        "rows": unique.height,
        "pairs": n,
        "duplicate_completions": clean.height - unique.height,
        "conflicting_completions": both.height - clean.height,
    }
    schema = pa.schema([("prompt", MESSAGES), ("completion", MESSAGES), ("label", pa.bool_()), *prov_fields])
    return _plain(unique.select("prompt", "completion", "label", *prov), schema), stats


def dataset_info(name: str, files: dict[str, list[str]]) -> dict:
    """LLaMA-Factory ``dataset_info.json`` entries for the written split files (one entry per file)."""
    entries = {}
    for split, paths in files.items():
        for i, path in enumerate(paths):
            key = f"{name}_{split}" if len(paths) == 1 else f"{name}_{split}_{i}"
            entries[key] = {
                "file_name": path,
                "formatting": "sharegpt",
                "ranking": True,
                "columns": {
                    "messages": "conversations",
                    "system": "system",
                    "chosen": "chosen",
                    "rejected": "rejected",
                },
            }
    return entries


def dataset_info_text(name: str, files: dict[str, list[str]]) -> str:
    return json.dumps(dataset_info(name, files), indent=2) + "\n"
