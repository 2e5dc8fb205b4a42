"""Reference log-probs for TRL's ``KTOTrainer``: ``ref_logps`` and ``ref_KL_logps`` of an unpaired set.

The rule, read from TRL 1.16's ``trl/trainer/kto_trainer.py`` (``_prepare_dataset``, ``DataCollatorForUnpairedPreference``,
``_precompute_ref_logps``):

* a row is ``prompt`` / ``completion`` / ``label`` (messages or text). Text rows get ``eos_token`` appended to the
  completion unless it ends with it. ``P`` = the prompt's ids (chat template with ``add_generation_prompt=True`` for
  messages, the tokenizer's default special tokens for text), ``PC`` = prompt+completion's ids; the split is at
  ``n = common_prefix(P, PC)``: prompt ids ``P[:n]``, completion ids ``PC[n:]``;
* rows whose prompt ids alone reach ``max_length`` are dropped (before the next step);
* **KL completions**: over the kept rows in dataset order, cut into batches of ``per_device_train_batch_size``
  (``Dataset.map(batched=True, batch_size=per_device_train_batch_size)``), each row's ``KL_completion_ids`` is the
  completion of the row before it in its batch, and the first row of a batch gets the batch's last completion
  (``[ids[-1]] + ids[:-1]``);
* each sequence (``prompt_ids + completion_ids`` and ``prompt_ids + KL_completion_ids``) is cut to ``max_length``
  (``keep_start``); a value is the sum of the reference's log-probs over the completion tokens (fp32).

So ``ref_KL_logps`` depends on the batch size and on the order of the rows: a trainer must use the same
``per_device_train_batch_size``, the rows in the same order, and sequential sampling (TRL's ``KTOConfig`` default
``train_sampling_strategy="sequential"``). The job cuts each split into shards that start on a batch boundary
(rows TRL drops counted), so every shard's rows rotate among themselves; finding the boundaries tokenizes the
prompts of the whole split once per worker.

Columns written: ``ref_logps``, ``ref_KL_logps`` (float32, nats), ``completion_tokens``, ``KL_completion_tokens``
(int32: the completion tokens summed, after truncation), ``KL_completion_hash`` (int64: xxh3-64 of the KL
completion's untruncated token ids, so a trainer sees which completion each row was paired with).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from prefkit.chat.tokenize import (
    TokenizedPair,
    _apply,
    _check_tokenizer,
    _ids,
    _template_kwargs,
    common_prefix_length,
    is_conversational,
)
from prefkit.errors import FormatError, OptionError
from prefkit.jobs.plan import Shard, settings_fingerprint
from prefkit.jobs.runner import JobSpec, _read_rows
from prefkit.output.stats import kto_weight_ranges
from prefkit.record import decode_row
from prefkit.reflogps import engine
from prefkit.reflogps.common import check_vocab, empty_counts

#: columns a KTO job adds
KTO_FIELDS: list[tuple[str, pa.DataType]] = [
    ("ref_logps", pa.float32()),
    ("ref_KL_logps", pa.float32()),
    ("completion_tokens", pa.int32()),
    ("KL_completion_tokens", pa.int32()),
    ("KL_completion_hash", pa.int64()),
]
KTO_COLUMNS = [name for name, _ in KTO_FIELDS]
#: what a KTO shard's rows are read with
KTO_ROW_COLUMNS = ("prompt", "completion", "label", "tools", "chat_template_kwargs")
#: ``KTOConfig.per_device_train_batch_size``'s default (``TrainingArguments``)
TRL_DEFAULT_BATCH_SIZE = 8
#: the rule reproduced here and the TRL releases checked against it (recorded in the manifest)
KTO_RULE = (
    "trl-kto-1.16..1.16:common-prefix-split,keep_start,drop-prompt>=max_length,"
    "kl=rotate+1-per-device-train-batch-in-dataset-order"
)
#: rows read per tokenizer call when the job looks for the batch boundaries
_PLAN_CHUNK = 4096


@dataclass
class TokenizedCompletion:
    """One unpaired row as TRL's ``KTOTrainer`` tokenizes it: prompt ids (``P[:n]``) and the untruncated
    completion ids (``PC[n:]``); ``dropped`` when the prompt alone reaches ``max_length``."""

    prompt_ids: list[int]
    completion_ids: list[int]
    dropped: bool = False


def is_kto_table(names: Sequence[str]) -> bool:
    """Whether columns ``names`` are TRL's unpaired shape (``prompt``, ``completion``, ``label``)."""
    return {"prompt", "completion", "label"} <= set(names)


def ids_hash(ids: Sequence[int]) -> int:
    """xxh3-64 of token ids (as little-endian int64), as a signed int64 (what the ``KL_completion_hash`` column
    holds)."""

    value = xxhash.xxh3_64_intdigest(np.asarray(ids, dtype="<i8").tobytes())
    return value - (1 << 64) if value >= 1 << 63 else value


def _prepare(row: Mapping[str, Any], eos: str) -> tuple[dict, bool]:
    for key in ("prompt", "completion"):
        if key not in row or row[key] is None:
            raise FormatError(
                f"a KTO row needs a {key!r} value",
                "KTO rows are prompt / completion / label (TRL's unpaired shape)",
            )
    conversational = is_conversational({"prompt": row["prompt"]})
    out = dict(row)
    if not conversational and not out["completion"].endswith(eos):
        out["completion"] = out["completion"] + eos
    return out, conversational


def _encode(tokenizer: Any, rows: list[dict], conversational: bool, full: bool) -> list[list[int]]:
    """Ids of the prompts (``full=False``) or prompt+completion of rows of one kind, the way TRL calls the
    tokenizer (per row when a row has ``tools`` / ``chat_template_kwargs``)."""

    if not conversational:
        return _ids(tokenizer([r["prompt"] + (r["completion"] if full else "") for r in rows]))
    out: list[list[int] | None] = [None] * len(rows)
    plain = [i for i, r in enumerate(rows) if r.get("tools") is None and not r.get("chat_template_kwargs")]
    if plain:
        convs = [rows[i]["prompt"] + (rows[i]["completion"] if full else []) for i in plain]
        for i, ids in zip(
            plain, _ids(_apply(tokenizer, convs, add_generation_prompt=not full, tools=None)), strict=True
        ):
            out[i] = ids
    for i, row in enumerate(rows):
        if out[i] is None:
            conv = row["prompt"] + (row["completion"] if full else [])
            out[i] = _ids(_apply(tokenizer, [conv], add_generation_prompt=not full, **_template_kwargs(row)))[
                0
            ]
    return out  # type: ignore[return-value]


def tokenize_completions(
    rows: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int | None, prompts_only: bool = False
) -> list[TokenizedCompletion]:
    """Tokenize unpaired rows exactly like TRL's ``KTOTrainer`` (see the module docstring).

    ``prompts_only``: decide only which rows TRL drops (prompt+completion is tokenized just for rows whose prompt
    alone reaches ``max_length``; ``completion_ids`` is then empty). Raises ``FormatError`` (a row without prompt or
    completion), ``ModelError`` (no chat template for message rows, no ``eos_token`` for text rows, a template
    error).
    """

    eos = getattr(tokenizer, "eos_token", None) or ""
    prepared = [_prepare(r, eos) for r in rows]
    out: list[TokenizedCompletion | None] = [None] * len(prepared)
    for conv in {c for _, c in prepared}:
        _check_tokenizer(tokenizer, conv)
        index = [i for i, (_, c) in enumerate(prepared) if c == conv]
        kind = [prepared[i][0] for i in index]
        prompts = _encode(tokenizer, kind, conv, full=False)
        need = [j for j, p in enumerate(prompts) if not prompts_only or (max_length and len(p) >= max_length)]
        fulls = (
            dict(zip(need, _encode(tokenizer, [kind[j] for j in need], conv, full=True), strict=True))
            if need
            else {}
        )
        for j, i in enumerate(index):
            p = prompts[j]
            pc = fulls.get(j)
            n = len(p) if pc is None else common_prefix_length(p, pc)
            completion = [] if pc is None else pc[n:]
            out[i] = TokenizedCompletion(p[:n], completion, max_length is not None and n >= max_length)
    return out  # type: ignore[return-value]


def kl_sources(kept: Sequence[bool], batch_size: int) -> list[int | None]:
    """For each row, the index of the row whose completion TRL pairs it with for the KL term (None for dropped
    rows): kept rows in order, in batches of ``batch_size``, each taking the previous row's completion and the
    first row the batch's last."""
    rows = [i for i, keep in enumerate(kept) if keep]
    out: list[int | None] = [None] * len(kept)
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        for j, i in enumerate(batch):
            out[i] = batch[j - 1]  # j == 0 -> batch[-1]
    return out


def score_kto_shard(
    loaded: Any,
    rows: list[dict],
    *,
    max_length: int,
    batch_size: int,
    token_budget: int | None,
    prefix_sharing: bool,
    on_progress: Any = None,
) -> tuple[dict[str, list], dict]:
    """Tokenize and score one shard of a KTO set (its rows start on a KL batch boundary) → (column values,
    counts). Each kept row is scored as a pair (prompt, completion, KL completion) by the DPO engine, which shares
    the prompt's forward."""

    tokens = tokenize_completions(rows, loaded.tokenizer, max_length)
    sources = kl_sources([not t.dropped for t in tokens], batch_size)
    pairs = []
    for t, src in zip(tokens, sources, strict=True):
        if src is None:
            pairs.append(TokenizedPair(t.prompt_ids, [], [], "prompt_too_long", True))
            continue
        room = max_length - len(t.prompt_ids)
        kl = tokens[src].completion_ids
        cut = len(t.completion_ids) > room or len(kl) > room
        pairs.append(TokenizedPair(t.prompt_ids, t.completion_ids[:room], kl[:room], None, cut))
    check_vocab(loaded, pairs)
    logps, kl_logps = engine.score_pairs(
        loaded.model,
        pairs,
        token_budget=token_budget,
        prefix_sharing=prefix_sharing,
        progress=on_progress,
    )
    values: dict[str, list] = {name: [] for name in KTO_COLUMNS}
    counts = empty_counts(len(pairs))
    dropped: Counter = Counter()
    for pair, src, a, b in zip(pairs, sources, logps.tolist(), kl_logps.tolist(), strict=True):
        if src is None:
            dropped["prompt_too_long"] += 1
            for name in KTO_COLUMNS:
                values[name].append(None)
            continue
        nc, nk = len(pair.chosen_ids), len(pair.rejected_ids)
        kl_hash = ids_hash(tokens[src].completion_ids)
        for name, value in zip(KTO_COLUMNS, (a, b, nc, nk, kl_hash), strict=True):
            values[name].append(value)
        counts["scored"] += 1
        counts["truncated"] += bool(pair.truncated)
        counts["completion_tokens"] += nc + nk
        counts["tokens"] += 2 * len(pair.prompt_ids) + nc + nk
    counts["dropped"] = dict(dropped)
    return values, counts


def check_batch_size(batch_size: int | None) -> int:
    """``--per-device-train-batch-size``: TRL's default (8) when not given; at least 1."""
    if batch_size is None:
        return TRL_DEFAULT_BATCH_SIZE
    if batch_size < 1:
        raise OptionError(
            f"--per-device-train-batch-size must be positive, got {batch_size}",
            "give the KTOConfig per_device_train_batch_size you train with (TRL needs > 1 for the KL term)",
        )
    return int(batch_size)


def kept_rows(folder: Any, split: str, tokenizer: Any, max_length: int) -> list[bool]:
    """Which rows of ``split`` TRL keeps (their prompt ids stay under ``max_length``), tokenizing the prompts in
    chunks (prompt+completion only where the prompt alone reaches ``max_length``)."""

    table = _read_rows(folder, split, KTO_ROW_COLUMNS, "reflogps")
    kept: list[bool] = []
    for start in range(0, table.num_rows, _PLAN_CHUNK):
        rows = [decode_row(r) for r in table.slice(start, _PLAN_CHUNK).to_pylist()]
        kept += [not t.dropped for t in tokenize_completions(rows, tokenizer, max_length, prompts_only=True)]
    return kept


def shard_starts(kept: Sequence[bool], shard_rows: int, batch_size: int) -> list[int]:
    """Row indices where shards start: every ``ceil(shard_rows / batch_size) * batch_size`` kept rows (a KL batch
    boundary), the rows TRL drops going with the shard before them; ``[0]`` for a split without kept rows."""
    per_shard = -(-shard_rows // batch_size) * batch_size
    starts, seen = [0], 0
    for i, keep in enumerate(kept):
        if keep:
            if seen and seen % per_shard == 0:
                starts.append(i)
            seen += 1
    return starts


def planner(tokenizer: Any, max_length: int, batch_size: int) -> Any:
    """The job's shard plan (``JobSpec.plan``): each split cut at KL batch boundaries (:func:`shard_starts`)."""

    def plan(folder: Any, shard_rows: int) -> list:
        shards: list[Shard] = []
        for split in folder.splits:
            kept = kept_rows(folder, split, tokenizer, max_length)
            if not kept:
                continue
            starts = shard_starts(kept, shard_rows, batch_size)
            for index, (a, b) in enumerate(zip(starts, [*starts[1:], len(kept)], strict=True)):
                shards.append(Shard(split, index, a, b, len(shards)))
        return shards

    return plan


def is_kto_folder(folder: Any) -> bool:
    """Whether an output folder holds TRL's unpaired shape (``--export kto``, or prompt/completion/label data)."""

    if (folder.manifest.get("export") or {}).get("shape") == "kto":
        return True
    first = next((paths[0] for paths in folder.shards.values() if paths), None)
    return first is not None and is_kto_table(pq.read_schema(first).names)


def kto_spec(loaded: Any, settings: dict, max_length: int, batch_size: int, engine: tuple) -> Any:
    """The job for a KTO set: its columns, the rows it reads, the scorer and the KL-batch shard plan."""

    budget, sharing = engine

    def score(rows: list[dict], on_progress: Any) -> tuple[dict[str, list], dict]:
        return score_kto_shard(
            loaded,
            rows,
            max_length=max_length,
            batch_size=batch_size,
            token_budget=budget,
            prefix_sharing=sharing,
            on_progress=on_progress,
        )

    plan = planner(loaded.tokenizer, max_length, batch_size)
    return JobSpec(KTO_FIELDS, KTO_ROW_COLUMNS, settings, settings_fingerprint(settings), score, plan=plan)


def label_counts(folder: Any, shards: list, work: Any) -> dict[str, dict[str, int]]:
    """Per split: ``desirable`` (``label`` true) and ``undesirable`` rows, and of those the rows scored (TRL keeps
    them: its recommended weights count these), from the job's finished parts in ``work``."""

    out = {}
    for split in folder.splits:
        labels = folder.read_split(split, columns=["label"]).column("label").to_numpy(zero_copy_only=False)
        parts = [pq.read_table(work / s.name, columns=["ref_logps"]) for s in shards if s.split == split]
        scored = np.concatenate(
            [p.column("ref_logps").is_valid().to_numpy(zero_copy_only=False) for p in parts] or [np.zeros(0, bool)]
        )
        labels = labels.astype(bool)
        out[split] = {
            "desirable": int(labels.sum()),
            "undesirable": int((~labels).sum()),
            "desirable_scored": int((labels & scored).sum()),
            "undesirable_scored": int((~labels & scored).sum()),
        }
    return out


def kto_section(folder: Any, settings: dict, shards: list, work: Any) -> dict:
    """The manifest's ``reflogps.kto``: what the KL values depend on, the label counts and TRL's recommended
    weights for the train split's scored rows (what ``KTOTrainer`` counts after dropping rows)."""

    counts = label_counts(folder, shards, work)
    train = counts.get("train") or next(iter(counts.values()), {})
    return {
        "trainer": "KTOTrainer",
        "per_device_train_batch_size": settings["per_device_train_batch_size"],
        "kl_order": settings["kl_order"],
        "train_sampling_strategy": "sequential",
        "labels": counts,
        "recommended_weights": kto_weight_ranges(
            train.get("desirable_scored", 0), train.get("undesirable_scored", 0)
        ),
    }
