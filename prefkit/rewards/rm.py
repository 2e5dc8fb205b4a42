"""`prefkit score` on a generated set: a reward model's score of every completion (``rm_score``, float32, in each
completion's struct), on the score job's machinery (work folder ``.score-work``, manifest section ``rm_scores``).

Each completion is scored as ``prompt + [{"role": "assistant", "content": response}]`` rendered with the reward
model's own chat template, by TRL's ``RewardTrainer`` rule, the way `score` scores a pair's answers
(:mod:`prefkit.rewards.reward`): completions go through the reward engine two at a time, as a pair's two
answers do (the prompt runs once for both with prefix sharing). A completion longer than ``max_length`` tokens
gets a null ``rm_score`` and is counted (``dropped.too_long``). Then ``build OUT --rating rm_score`` pairs on it.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.chat.templates import require_chat_template
from prefkit.errors import OutputError
from prefkit.jobs.distributed import init_distributed
from prefkit.jobs.plan import completed, data_fingerprint, settings_fingerprint
from prefkit.jobs.report import worker_summary
from prefkit.jobs.runner import JobKind, JobSpec, merging, run_shards
from prefkit.loading.model import load_model, resolve_device
from prefkit.output import OutputFolder
from prefkit.reflogps.provenance import scoring_settings
from prefkit.rewards import reward
from prefkit.rewards.common import LABEL, SECTION, WORK_DIR, default_max_length, model_summary, scores_section

COLUMN = "completions"
FIELD = "rm_score"
COUNT_KEYS = ("rows", "scored", "completions", "tokens", "forward_tokens")
#: reward-model scores of each completion of a generated set
KIND = JobKind(SECTION, WORK_DIR, LABEL, COUNT_KEYS)


def is_generated(folder: OutputFolder) -> bool:
    """A set of prompts with a ``completions`` list and no pairs (`prefkit generate`'s output)."""
    if not folder.splits:
        return False
    names = pq.read_schema(folder.shards[folder.splits[0]][0]).names
    return COLUMN in names and "chosen" not in names


def completion_type(folder: OutputFolder, field: str = FIELD) -> pa.DataType:
    """The ``completions`` list type of the set with ``field`` (float32) added (kept where it is)."""
    item = pq.read_schema(folder.shards[folder.splits[0]][0]).field(COLUMN).type.value_type
    fields = [item.field(i) for i in range(item.num_fields)]
    if field not in [f.name for f in fields]:
        fields.append(pa.field(field, pa.float32()))
    return pa.list_(pa.struct(fields))


def has_field(folder: OutputFolder, field: str = FIELD) -> bool:
    item = pq.read_schema(folder.shards[folder.splits[0]][0]).field(COLUMN).type.value_type
    return any(item.field(i).name == field for i in range(item.num_fields))


def guard(
    folder: OutputFolder, field: str, section: str, work_dir: str, settings: dict, overwrite: bool
) -> None:
    """Refuse to recompute ``field`` of the completions (OutputError) unless ``overwrite``, this very job already
    merged it (the runner then reports it complete), or its work folder is there to resume or join."""

    if overwrite or not has_field(folder, field) or (folder.path / work_dir).is_dir():
        return
    if completed(folder.path, section, settings_fingerprint(settings)) is None:
        raise OutputError(
            f"{folder.path} already has {field} in its completions, from another run",
            "pass --overwrite to recompute them (e.g. with another model)",
        )


def score_shard(
    loaded: Any, rows: list[dict], max_length: int, token_budget: Any, on_progress: Any
) -> tuple[dict, dict]:
    """``rm_score`` for every completion of ``rows`` → ({"completions": the lists with rm_score set}, counts)."""

    pairs_rows, where = [], []
    for i, row in enumerate(rows):
        comps = row.get(COLUMN) or []
        extra = {k: row[k] for k in ("chat_template_kwargs",) if row.get(k) is not None}
        for j in range(0, len(comps), 2):
            k = j + 1 if j + 1 < len(comps) else j
            answer = lambda c: [{"role": "assistant", "content": c.get("response") or ""}]  # noqa: E731
            pairs_rows.append(
                {"prompt": row["prompt"], "chosen": answer(comps[j]), "rejected": answer(comps[k]), **extra}
            )
            where.append((i, j, k))
    pairs = reward.tokenize_reward_pairs(pairs_rows, loaded.tokenizer, max_length)
    seen = {"tokens": 0}

    def progress(done: float, tokens: int) -> None:
        seen["tokens"] += tokens
        if on_progress is not None:
            on_progress(done * len(rows) / max(len(pairs), 1), tokens)

    chosen, rejected = reward.score_rewards(loaded.model, pairs, token_budget=token_budget, progress=progress)
    out = [[dict(c) for c in (row.get(COLUMN) or [])] for row in rows]
    dropped: Counter = Counter()
    for pair, (i, j, k), a, b in zip(pairs, where, chosen.tolist(), rejected.tolist(), strict=True):
        for pos, value in ((j, a), (k, b)) if k != j else ((j, a),):
            reason = pair.dropped or (None if np.isfinite(value) else "nonfinite")
            if reason:
                dropped[reason] += 1
            out[i][pos][FIELD] = None if reason else value
    total = sum(len(c) for c in out)
    counts = {
        "rows": len(rows),
        "completions": total,
        "scored": total - sum(dropped.values()),
        "tokens": sum(p.tokens for p in pairs if not p.dropped),
        "forward_tokens": seen["tokens"],
        "dropped": dict(dropped),
    }
    return {COLUMN: out}, counts


def score_completions(folder: OutputFolder, options: Any) -> dict:
    """Score every completion of the generated set ``folder`` with ``options.reward_model``
    (:class:`prefkit.rewards.options.ScoreOptions`); returns the summary. Raises OutputError when the completions
    already have ``rm_score`` (without ``overwrite``), ModelError."""

    start = time.perf_counter()
    dev = resolve_device(options.device)
    with init_distributed(dev) as ctx:
        return _run(folder, options, ctx, dev, start)


def _run(folder: OutputFolder, options: Any, ctx: Any, dev: Any, start: float) -> dict:
    reward_model = str(options.reward_model)
    placed = options.replace(device=str(dev))
    loaded = load_model(reward_model, options=placed, hash_weights=ctx.is_main, kind="reward")
    require_chat_template(loaded.tokenizer, f"the tokenizer of {reward_model}")
    options = options.replace(
        max_length=options.max_length or default_max_length(loaded.model, loaded.tokenizer)
    )
    spec, engine = _job_spec(folder, loaded, options, dev, ctx)
    run_info = {"command": options.command, "columns": [f"{COLUMN}.{FIELD}"], "world_size": ctx.world_size}

    def section(shards: list, counts: dict) -> dict:
        info = {**run_info, "engine": engine, "counts": counts}
        info["seconds"] = round(time.perf_counter() - start, 3)
        return scores_section(loaded, spec.settings, info) | {"scope": "completions"}

    done = run_shards(folder, spec, ctx, options, merging(folder.path, spec, section))
    return ctx.on_main(lambda: _summary(folder.path, done, time.perf_counter() - start))


def _job_spec(folder: OutputFolder, loaded: Any, options: Any, dev: Any, ctx: Any) -> tuple[Any, dict]:
    """The job (settings, fingerprinted; the scorer of a shard's completions) and the engine's settings."""

    max_length = int(options.max_length)
    engine = reward.reward_engine_settings(token_budget=options.token_budget, prefix_sharing=True)
    extra = {
        "shard_rows": options.shard_rows,
        "data_sha256": data_fingerprint(folder),
        "kind": "reward-completions",
    }
    rule = reward.REWARD_TOKENIZATION_RULE
    settings = ctx.on_main(
        lambda: scoring_settings(loaded.provenance, dev.type, max_length, rule, engine, extra)
    )
    guard(folder, FIELD, SECTION, WORK_DIR, settings, options.overwrite)

    def score(rows: list[dict], on_progress: Any) -> tuple[dict, dict]:
        return score_shard(loaded, rows, max_length, options.token_budget, on_progress)

    spec = JobSpec(
        [(COLUMN, completion_type(folder))],
        ("prompt", COLUMN, "chat_template_kwargs"),
        settings,
        settings_fingerprint(settings),
        score,
        KIND,
        guard_columns=(),
    )
    return spec, engine


def _summary(out: Path, run: Any, seconds: float) -> dict:
    section = run.manifest[SECTION]
    about = {"scope": "completions", **model_summary(section)}
    return completions_summary(out, run, seconds, section, about, {"dropped": "dropped", "tokens": "tokens"})


def completions_summary(out: Path, run: Any, seconds: float, section: dict, about: dict, counts: dict) -> dict:
    """The summary of a job on a generated set's completions (a reward model's here, a judge's in
    :mod:`prefkit.rewards.judge`), its keys in one order: ``output``, what scored (``about``), the prompts,
    completions and scored counts, the job's own ``counts`` (summary key -> key of the section's totals), the
    worker's run (:func:`prefkit.jobs.report.worker_summary`) and the splits."""
    totals = section["totals"]
    named = {"prompts": "rows", "completions": "completions", "scored": "scored", **counts}
    return {
        "output": str(out),
        **about,
        **{key: totals[total] for key, total in named.items()},
        **worker_summary(run, section, seconds),
        "splits": section["splits"],
    }
