"""Export shapes for other trainers (``--export``): a registry, one :class:`Export` per shape.

The manifest, card and rejects are the same for every shape; only the data files change (and an export may add
files of its own, like LLaMA-Factory's ``dataset_info.json``). A new export is one more entry in
:data:`EXPORTS`: its table function, its card sentence, what its trainer cannot carry, how to train on it and its
extra files (docs/architecture.md).

=============  ======================================================================================
``trl``        the canonical record (default): TRL's conversational explicit-prompt shape, for DPO/ORPO/CPO/…
``openrlhf``   ``chosen`` / ``rejected`` = the whole conversations (prompt + answer) and ``margin``: OpenRLHF's
               reward / DPO datasets with ``--data.apply_chat_template --data.chosen_key chosen --data.rejected_key rejected``
               and no prompt key
``llamafactory``  ShareGPT ranking shape: ``conversations`` (``from``/``value``: human, gpt, function_call,
               observation), ``system``, ``tools_json``, ``chosen`` / ``rejected`` single ``{from, value}`` dicts,
               plus ``OUT/dataset_info.json`` with an entry per split file; set LLaMA-Factory's ``dataset_dir`` to OUT
``kto``        unpaired ``prompt`` / ``completion`` / ``label`` (TRL ``KTOTrainer`` only; OpenRLHF removed KTO),
               with ``tools`` / ``chat_template_kwargs``: each pair gives its chosen answer (``label`` true) and
               its rejected answer (false); a (prompt, completion, label) seen before is written once, and a
               (prompt, completion) that is chosen in one pair and rejected in another (binarised all-pairs) is
               left out, counted in the manifest's ``export`` entry
``openai``     hosted preference fine-tuning lines (OpenAI, Azure OpenAI, Together, Fireworks): ``input``
               (``messages``, ``tools``, ``parallel_tool_calls``), ``preferred_output``, ``non_preferred_output``
               as JSON text columns, and ``OUT/openai/<split>.jsonl`` to upload
``axolotl``    axolotl's ``chat_template.default`` DPO strategy: ``messages``, ``chosen`` / ``rejected`` one message
``nemo-rl``    NeMo-RL's preference shape: ``context`` and two ranked ``completions`` (rank 0 preferred)
``torchtune``  torchtune's ``preference_dataset``: ``chosen`` / ``rejected`` whole conversations
=============  ======================================================================================

A row whose fields the shape's trainer cannot carry (tools, tool calls, reasoning, per-row template arguments,
multi-message answers: :mod:`prefkit.output.shapes`) is dropped as ``export_unsupported`` while the build reads
it, so it is counted and in the rejects, never written with a field stripped. Every shape keeps ``source``,
``source_index`` and ``id`` (the pair's id) so each row traces back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.errors import OptionError, OutputError
from prefkit.filters.exportable import plain_rows
from prefkit.output import shapes
from prefkit.output.kto import kto_choose, kto_keys, kto_rows
from prefkit.output.recipes import (
    axolotl_yaml,
    kto_yaml,
    llamafactory_yaml,
    nemo_rl_yaml,
    openai_upload,
    openrlhf_command,
    torchtune_yaml,
)
from prefkit.output.tables import PROVENANCE, PROVENANCE_FIELDS, frame, messages_type, plain_table
from prefkit.record import decode_messages, decode_row
from prefkit.store.folder import EXPORT_FILES, NEMO_RL_DIR, OPENAI_DIR, OutputFolder  # noqa: F401 (EXPORT_FILES: this module's API)

SHAREGPT_FROM = shapes.SHAREGPT_FROM
SHAREGPT_MSG = pa.struct([("from", pa.string()), ("value", pa.string())])
CHAT_MSG = pa.struct([("role", pa.string()), ("content", pa.string())])
_BY_PREFKIT = "validated and filtered by [prefkit](https://github.com/prefkit/prefkit)"


@dataclass(frozen=True)
class Export:
    """One shape of the data files.

    ``rows(records) -> table`` reshapes records row by row (a split can go through it batch by batch); a shape
    that chooses among the rows of the whole split (KTO writes a completion once) also has ``keys(records)`` (a
    small frame per output row, in ``rows`` order) and ``choose(keys, pairs) -> (keep mask, stats)``, which sees
    the keys of the whole split. :meth:`table` makes one split at once. ``extra_files(set_name, {split: [data
    files]}, folder)`` returns more files to write into the folder (name -> text); ``trl_shape``: the data files
    are the canonical records as they are (``rows`` changes nothing), TRL's shape, which `reflogps`, `stats`,
    `score`, `verify` and `report` read and text output reshapes. ``cannot(row) -> why | None``: what the
    trainer has no place for in a decoded record (the build drops such rows as ``export_unsupported``).
    ``train(load_id, {split: [data files]}) -> (language, text)``: the card's snippet that trains on the set (a
    config file or command for the consumer).
    """

    name: str
    card_intro: str
    rows: Callable[[pa.Table], pa.Table]
    extra_files: Callable[[str, dict[str, list[str]], Path], dict[str, str]] | None = None
    trl_shape: bool = False
    keys: Callable[[pa.Table], pl.DataFrame] | None = None
    choose: Callable[[pl.DataFrame, int], tuple[np.ndarray, dict]] | None = None
    cannot: Callable[[dict], str | None] | None = None
    train: Callable[[str, dict[str, list[str]]], tuple[str, str]] | None = None
    consumer: str = "TRL"

    def table(self, records: pa.Table) -> tuple[pa.Table, dict]:
        """One split of records in this shape, and the manifest's stats for it."""
        shaped = self.rows(records)
        if self.choose is None or self.keys is None:
            return shaped, {"rows": shaped.num_rows}
        keep, stats = self.choose(self.keys(records), records.num_rows)
        return shaped.filter(pa.array(keep)), stats


def _decoded_rows(table: pa.Table) -> list[dict]:
    return [decode_row(r) for r in table.to_pylist()]


def _trl(table: pa.Table) -> pa.Table:
    return table


def _openrlhf(table: pa.Table) -> pa.Table:
    df = frame(table)
    out = df.select(
        pl.concat_list("prompt", "chosen").alias("chosen"),
        pl.concat_list("prompt", "rejected").alias("rejected"),
        "margin",
        *PROVENANCE,
    )
    messages = messages_type(table)
    schema = pa.schema(
        [("chosen", messages), ("rejected", messages), ("margin", pa.float64()), *PROVENANCE_FIELDS]
    )
    return plain_table(out, schema)


_LLAMAFACTORY_SCHEMA = pa.schema(
    [
        ("conversations", pa.list_(SHAREGPT_MSG)),
        ("system", pa.string()),
        ("tools_json", pa.string()),
        ("chosen", SHAREGPT_MSG),
        ("rejected", SHAREGPT_MSG),
        ("margin", pa.float64()),
        *PROVENANCE_FIELDS,
    ]
)


def _by_row_kind(
    table: pa.Table,
    plain: Callable[[pl.DataFrame], pl.DataFrame],
    each: Callable[[dict], dict],
    schema: pa.Schema,
) -> pa.Table:
    """The rows every trainer carries whole (:func:`prefkit.filters.exportable.plain_rows`) reshaped by polars
    (``plain``), the others one by one from their decoded record (``each``), in the records' order."""

    df = frame(table)
    easy = df.select(plain_rows(df)).to_series().to_numpy()
    fast = plain_table(plain(df.filter(pl.Series(easy))), schema)
    if easy.all():
        return fast
    hard = table.filter(pa.array(~easy))
    rows = [
        each(record) | source
        for record, source in zip(
            _decoded_rows(hard), hard.select(["margin", *PROVENANCE]).to_pylist(), strict=True
        )
    ]
    both = pa.concat_tables([fast, pa.Table.from_pylist(rows, schema=schema)])
    at = np.concatenate([np.flatnonzero(easy), np.flatnonzero(~easy)])
    return both.take(pa.array(np.argsort(at, kind="stable")))


def _sharegpt_plain(df: pl.DataFrame) -> pl.DataFrame:
    role = pl.element().struct.field("role")
    sharegpt = pl.struct(
        role.replace_strict(SHAREGPT_FROM, default=role).alias("from"),
        pl.element().struct.field("content").alias("value"),
    )
    first = pl.col("prompt").list.first().struct
    is_system = (first.field("role") == "system").fill_null(False)
    answer = lambda c: pl.struct(  # noqa: E731
        pl.lit("gpt").alias("from"), pl.col(c).list.first().struct.field("content").alias("value")
    ).alias(c)
    return df.select(
        pl.col("prompt")
        .list.eval(pl.element().filter(role != "system"))
        .list.eval(sharegpt)
        .alias("conversations"),
        pl.when(is_system).then(first.field("content")).otherwise(pl.lit("")).alias("system"),
        pl.lit("").alias("tools_json"),
        answer("chosen"),
        answer("rejected"),
        "margin",
        *PROVENANCE,
    )


def _sharegpt_each(record: dict) -> dict:
    shaped, why = shapes.sharegpt_row(record)
    if shaped is None:
        raise AssertionError(f"a row LLaMA-Factory cannot carry reached the export: {why}")
    return shaped


def _llamafactory(table: pa.Table) -> pa.Table:
    return _by_row_kind(table, _sharegpt_plain, _sharegpt_each, _LLAMAFACTORY_SCHEMA)


_OPENAI_SCHEMA = pa.schema(
    [
        ("input", pa.string()),
        ("preferred_output", pa.string()),
        ("non_preferred_output", pa.string()),
        ("margin", pa.float64()),
        *PROVENANCE_FIELDS,
    ]
)
OPENAI_KEYS = ("input", "preferred_output", "non_preferred_output")


def _json_list(column: str) -> pl.Expr:
    """A list of ``{role, content}`` messages as compact JSON text."""
    chat = pl.element().struct.field("role"), pl.element().struct.field("content")
    items = pl.col(column).list.eval(pl.struct(*chat).struct.json_encode()).list.join(",")
    return pl.concat_str(pl.lit("["), items, pl.lit("]"))


def _openai_plain(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(
        pl.concat_str(pl.lit('{"messages":'), _json_list("prompt"), pl.lit("}")).alias("input"),
        _json_list("chosen").alias("preferred_output"),
        _json_list("rejected").alias("non_preferred_output"),
        "margin",
        *PROVENANCE,
    )


def _openai_each(record: dict) -> dict:
    line, why = shapes.openai_row(record)
    if line is None:
        raise AssertionError(f"a row OpenAI's format cannot carry reached the export: {why}")
    problems = shapes.check_openai_line(line)
    if problems:
        raise AssertionError(f"an OpenAI line breaks the published DPO rules: {problems}")
    return {k: json.dumps(line[k], ensure_ascii=False, separators=(",", ":")) for k in OPENAI_KEYS}


def _openai(table: pa.Table) -> pa.Table:
    return _by_row_kind(table, _openai_plain, _openai_each, _OPENAI_SCHEMA)


def openai_lines(table: pa.Table) -> list[str]:
    """The JSONL lines (no newline) of an ``openai``-shaped table: ``input``, ``preferred_output``,
    ``non_preferred_output`` only (the hosted services take no other key)."""
    columns = [table.column(k).to_pylist() for k in OPENAI_KEYS]
    return [
        "{" + ",".join(f'"{k}":{v}' for k, v in zip(OPENAI_KEYS, values, strict=True)) + "}"
        for values in zip(*columns, strict=True)
    ]


def _openai_files(name: str, files: dict[str, list[str]], folder: Path) -> dict[str, str]:
    out = {}
    for split, paths in files.items():
        lines = [
            line for p in paths for line in openai_lines(pq.read_table(folder / p, columns=list(OPENAI_KEYS)))
        ]
        out[f"{OPENAI_DIR}/{split}.jsonl"] = "".join(line + "\n" for line in lines)
    return out


def _axolotl(table: pa.Table) -> pa.Table:
    df = frame(table)
    chat = pl.struct(pl.element().struct.field("role"), pl.element().struct.field("content"))
    first = lambda c: pl.col(c).list.first().struct  # noqa: E731
    out = df.select(
        pl.col("prompt").list.eval(chat).alias("messages"),
        pl.struct(first("chosen").field("role"), first("chosen").field("content")).alias("chosen"),
        pl.struct(first("rejected").field("role"), first("rejected").field("content")).alias("rejected"),
        "margin",
        *PROVENANCE,
    )
    schema = pa.schema(
        [
            ("messages", pa.list_(CHAT_MSG)),
            ("chosen", CHAT_MSG),
            ("rejected", CHAT_MSG),
            ("margin", pa.float64()),
            *PROVENANCE_FIELDS,
        ]
    )
    return plain_table(out, schema)


def _nemo_rl(table: pa.Table) -> pa.Table:
    df = frame(table)
    ranked = [
        pl.struct(pl.lit(rank, dtype=pl.Int64).alias("rank"), pl.col(answer).alias("completion"))
        for rank, answer in ((0, "chosen"), (1, "rejected"))
    ]
    out = df.select(
        pl.col("prompt").alias("context"), pl.concat_list(ranked).alias("completions"), "margin", *PROVENANCE
    )
    messages = messages_type(table)
    completion = pa.struct([("rank", pa.int64()), ("completion", messages)])
    schema = pa.schema(
        [
            ("context", messages),
            ("completions", pa.list_(completion)),
            ("margin", pa.float64()),
            *PROVENANCE_FIELDS,
        ]
    )
    return plain_table(out, schema)


def _nemo_rl_files(name: str, files: dict[str, list[str]], folder: Path) -> dict[str, str]:
    """``nemo-rl/<split>.jsonl``: NeMo-RL's ``PreferenceDataset`` reads JSON lines (``load_dataset("json")``),
    with tool calls as objects."""


    out = {}
    for split, paths in files.items():
        lines = []
        for path in paths:
            for row in pq.read_table(folder / path).to_pylist():
                row["context"] = decode_messages(row["context"])
                for c in row["completions"]:
                    c["completion"] = decode_messages(c["completion"])
                lines.append(json.dumps(row, ensure_ascii=False) + "\n")
        out[f"{NEMO_RL_DIR}/{split}.jsonl"] = "".join(lines)
    return out


def _torchtune(table: pa.Table) -> pa.Table:
    df = frame(table)
    chat = pl.struct(pl.element().struct.field("role"), pl.element().struct.field("content"))
    out = df.select(
        pl.concat_list("prompt", "chosen").list.eval(chat).alias("chosen"),
        pl.concat_list("prompt", "rejected").list.eval(chat).alias("rejected"),
        "margin",
        *PROVENANCE,
    )
    schema = pa.schema(
        [
            ("chosen", pa.list_(CHAT_MSG)),
            ("rejected", pa.list_(CHAT_MSG)),
            ("margin", pa.float64()),
            *PROVENANCE_FIELDS,
        ]
    )
    return plain_table(out, schema)


def _llamafactory_files(name: str, files: dict[str, list[str]], folder: Path) -> dict[str, str]:
    return {"dataset_info.json": json.dumps(shapes.dataset_info(name, files), indent=2) + "\n"}


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
            cannot=shapes.cannot_openrlhf,
            train=openrlhf_command,
            consumer="OpenRLHF",
        ),
        Export(
            "llamafactory",
            "Pairs in LLaMA-Factory's ShareGPT ranking shape (`conversations`, `system`, `tools_json`, `chosen` / "
            f"`rejected` = one `{{from, value}}`; `dataset_info.json` has the entries), {_BY_PREFKIT}.",
            _llamafactory,
            extra_files=_llamafactory_files,
            cannot=shapes.cannot_llamafactory,
            train=llamafactory_yaml,
            consumer="LLaMA-Factory",
        ),
        Export(
            "kto",
            "Unpaired rows for TRL's `KTOTrainer` (`prompt`, `completion`, `label`), made from pairs "
            f"{_BY_PREFKIT}.",
            kto_rows,
            keys=kto_keys,
            choose=kto_choose,
            train=kto_yaml,
        ),
        Export(
            "openai",
            "Preference pairs for hosted DPO fine-tuning (OpenAI, Azure OpenAI, Together, Fireworks): `input`, "
            f"`preferred_output`, `non_preferred_output`; the files to upload are `openai/<split>.jsonl`, {_BY_PREFKIT}.",
            _openai,
            extra_files=_openai_files,
            cannot=shapes.cannot_openai,
            train=openai_upload,
            consumer="the hosted fine-tuning API",
        ),
        Export(
            "axolotl",
            "Pairs for axolotl's `chat_template.default` DPO strategy (`messages`, `chosen` / `rejected` = one "
            f"message), {_BY_PREFKIT}.",
            _axolotl,
            cannot=shapes.cannot_axolotl,
            train=axolotl_yaml,
            consumer="axolotl",
        ),
        Export(
            "nemo-rl",
            "Pairs in NeMo-RL's preference shape (`context`, `completions` ranked 0 = preferred, 1), "
            f"{_BY_PREFKIT}.",
            _nemo_rl,
            extra_files=_nemo_rl_files,
            cannot=shapes.cannot_nemo_rl,
            train=nemo_rl_yaml,
            consumer="NeMo-RL",
        ),
        Export(
            "torchtune",
            "Pairs for torchtune's `preference_dataset` (`chosen` / `rejected` = whole conversations), "
            f"{_BY_PREFKIT}.",
            _torchtune,
            cannot=shapes.cannot_torchtune,
            train=torchtune_yaml,
            consumer="torchtune",
        ),
    )
}


#: the export a build writes unless told otherwise
DEFAULT_EXPORT = next(iter(EXPORTS))


def check_export(kind: str) -> Export:
    """The export named ``kind`` (:class:`OptionError` listing the names when unknown)."""
    if kind not in EXPORTS:
        raise OptionError(f"unknown --export {kind!r} (export=)", f"use one of: {', '.join(EXPORTS)}")
    return EXPORTS[kind]


def export_table(table: pa.Table, kind: str) -> tuple[pa.Table, dict]:
    """One split of canonical records in the shape ``kind``; returns the table and stats for the manifest."""
    return check_export(kind).table(table)


def require_trl_shape(folder: OutputFolder, command: str, generated_ok: bool = False) -> None:
    """Refuse sets exported for other trainers (an ``--export`` shape that is not TRL's) in commands that read
    TRL's prompt/chosen/rejected shape, and (unless ``generated_ok``) sets of prompts with completions written by
    `prefkit generate`, which have no pairs yet."""
    manifest = folder.typed_manifest
    if not generated_ok and folder.splits and manifest.prompts is not None:
        raise OutputError(
            f"{str(folder.path)!r} holds prompts with completions (`prefkit generate`), not pairs",
            f"pair them first: `prefkit build {folder.path.name} --rating rm_score -o PAIRS` (after "
            f"`prefkit score`), then `prefkit {command} PAIRS`",
        )
    shape = manifest.export_shape
    export = EXPORTS.get(shape)
    if export is None or not export.trl_shape:
        raise OutputError(
            f"{str(folder.path)!r} was exported in the {shape!r} shape; `prefkit {command}` reads TRL's "
            "prompt/chosen/rejected shape",
            f"build the set again without --export (or with --export trl) to use `prefkit {command}`",
        )
