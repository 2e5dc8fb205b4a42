"""Export shapes for other trainers (``--export``): a registry, one :class:`Export` per shape.

The manifest, card and rejects are the same for every shape; only the data files change (and an export may add
files of its own, like LLaMA-Factory's ``dataset_info.json``). A new export is one more entry in
:data:`EXPORTS`: its table function, its card sentence and its extra files (docs/architecture.md).

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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from prefkit.errors import OptionError
from prefkit.record import MESSAGES_TYPE

_PROVENANCE = ("source", "source_index", "id")
_PROVENANCE_FIELDS = [("source", pa.string()), ("source_index", pa.int64()), ("id", pa.string())]
SHAREGPT_FROM = {"user": "human", "assistant": "gpt", "system": "system"}
SHAREGPT_MSG = pa.struct([("from", pa.string()), ("value", pa.string())])
_BY_PREFKIT = "validated and filtered by [prefkit](https://github.com/prefkit/prefkit)"


@dataclass(frozen=True)
class Export:
    """One shape of the data files.

    ``rows(records) -> table`` reshapes records row by row (a split can go through it batch by batch); a shape
    that chooses among the rows of the whole split (KTO writes a completion once) also has ``keys(records)`` (a
    small frame per output row, in ``rows`` order) and ``choose(keys, pairs) -> (keep mask, stats)``, which sees
    the keys of the whole split. :meth:`table` makes one split at once. ``extra_files(set_name, {split: [data files]})`` returns
    more files to write into the folder (name -> text); ``trl_shape``: readable by `reflogps`/`stats`.
    """

    name: str
    card_intro: str
    rows: Callable[[pa.Table], pa.Table]
    extra_files: Callable[[str, dict[str, list[str]]], dict[str, str]] | None = None
    trl_shape: bool = False
    keys: Callable[[pa.Table], pl.DataFrame] | None = None
    choose: Callable[[pl.DataFrame, int], tuple[np.ndarray, dict]] | None = None

    def table(self, records: pa.Table) -> tuple[pa.Table, dict]:
        """One split of records in this shape, and the manifest's stats for it."""
        shaped = self.rows(records)
        if self.choose is None or self.keys is None:
            return shaped, {"rows": shaped.num_rows}
        keep, stats = self.choose(self.keys(records), records.num_rows)
        return shaped.filter(pa.array(keep)), stats


def _plain(df: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    return df.to_arrow().cast(schema)


def _trl(table: pa.Table) -> pa.Table:
    return table


def _openrlhf(table: pa.Table) -> pa.Table:
    df = pl.from_arrow(table)
    out = df.select(
        pl.concat_list("prompt", "chosen").alias("chosen"),
        pl.concat_list("prompt", "rejected").alias("rejected"),
        "margin",
        *_PROVENANCE,
    )
    schema = pa.schema(
        [
            ("chosen", MESSAGES_TYPE),
            ("rejected", MESSAGES_TYPE),
            ("margin", pa.float64()),
            *_PROVENANCE_FIELDS,
        ]
    )
    return _plain(out, schema)


def _sharegpt_answer(column: str) -> pl.Expr:
    content = pl.col(column).list.first().struct.field("content")
    return pl.struct(pl.lit("gpt").alias("from"), content.alias("value")).alias(column)


def _llamafactory(table: pa.Table) -> pa.Table:
    df = pl.from_arrow(table)
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
        _sharegpt_answer("chosen"),
        _sharegpt_answer("rejected"),
        "margin",
        *_PROVENANCE,
    )
    schema = pa.schema(
        [
            ("conversations", pa.list_(SHAREGPT_MSG)),
            ("system", pa.string()),
            ("chosen", SHAREGPT_MSG),
            ("rejected", SHAREGPT_MSG),
            ("margin", pa.float64()),
            *_PROVENANCE_FIELDS,
        ]
    )
    return _plain(out, schema)


_KTO_SCHEMA = pa.schema(
    [("prompt", MESSAGES_TYPE), ("completion", MESSAGES_TYPE), ("label", pa.bool_()), *_PROVENANCE_FIELDS]
)


def _kto_both(table: pa.Table) -> pl.DataFrame:
    """Each pair's chosen answer (``label`` true) then its rejected answer (false), pair after pair."""
    df = pl.from_arrow(table)
    n = df.height
    both = pl.concat(
        [
            df.select(
                "prompt", pl.col("chosen").alias("completion"), pl.lit(True).alias("label"), *_PROVENANCE
            ),
            df.select(
                "prompt", pl.col("rejected").alias("completion"), pl.lit(False).alias("label"), *_PROVENANCE
            ),
        ]
    ).with_columns(pl.int_range(pl.len()).alias("_o"))
    # pair i's two rows next to each other: chosen then rejected
    return both.with_columns(
        pl.when(pl.col("_o") < n).then(pl.col("_o") * 2).otherwise((pl.col("_o") - n) * 2 + 1).alias("_o")
    ).sort("_o")


def _kto_rows(table: pa.Table) -> pa.Table:
    return _plain(_kto_both(table).select("prompt", "completion", "label", *_PROVENANCE), _KTO_SCHEMA)


def _kto_keys(table: pa.Table) -> pl.DataFrame:
    """Per KTO row (in :func:`_kto_rows` order): a hash of its (prompt, completion), and its label."""
    both = _kto_both(table)
    return both.select(
        pl.struct("prompt", "completion").struct.json_encode().hash(seed=0).alias("_k"), "label"
    )


def _kto_choose(keys: pl.DataFrame, pairs: int) -> tuple[np.ndarray, dict]:
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


def _llamafactory_files(name: str, files: dict[str, list[str]]) -> dict[str, str]:
    return {"dataset_info.json": json.dumps(dataset_info(name, files), indent=2) + "\n"}


#: every export shape, by ``--export`` name (the first is the default)
EXPORTS: dict[str, Export] = {
    e.name: e
    for e in (
        Export(
            "trl",
            "Pairs in TRL's conversational format (`prompt` messages, `chosen` / `rejected` = one assistant "
            f"message), {_BY_PREFKIT}.",
            _trl,
            trl_shape=True,
        ),
        Export(
            "openrlhf",
            "Pairs for OpenRLHF: `chosen` / `rejected` are whole conversations (prompt + answer) with a "
            f"`margin`, {_BY_PREFKIT}.",
            _openrlhf,
        ),
        Export(
            "llamafactory",
            "Pairs in LLaMA-Factory's ShareGPT ranking shape (`conversations`, `system`, `chosen` / `rejected` = "
            f"one `{{from: gpt, value}}`; `dataset_info.json` has the entries), {_BY_PREFKIT}.",
            _llamafactory,
            extra_files=_llamafactory_files,
        ),
        Export(
            "kto",
            f"Unpaired rows for KTO (`prompt`, `completion`, `label`), made from pairs {_BY_PREFKIT}.",
            _kto_rows,
            keys=_kto_keys,
            choose=_kto_choose,
        ),
    )
}


def check_export(kind: str) -> Export:
    """The export named ``kind`` (:class:`OptionError` listing the names when unknown)."""
    if kind not in EXPORTS:
        raise OptionError(f"unknown --export {kind!r} (export=)", f"use one of: {', '.join(EXPORTS)}")
    return EXPORTS[kind]


def export_table(table: pa.Table, kind: str) -> tuple[pa.Table, dict]:
    """One split of canonical records in the shape ``kind``; returns the table and stats for the manifest."""
    return check_export(kind).table(table)
