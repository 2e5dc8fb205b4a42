"""`prefkit score OUT --reward-model RM`: a reward model's score of every pair of a built set, resumably.

The job is the reference job's machinery with another scorer: the rows are cut into shards
(:mod:`prefkit.jobs.runner`; shard ``g`` goes to rank ``g % world_size`` under torchrun), each shard is
tokenized by TRL's ``RewardTrainer`` rule and scored by the reward engine (:mod:`prefkit.rewards.reward`) and
written atomically to ``OUT/.score-work/``; when every shard is there, rank 0 merges (:mod:`.merge`):
``rm_chosen``, ``rm_rejected``, ``rm_margin`` (float32, ``rm_margin = rm_chosen - rm_rejected``) in the data
shards, the provenance in ``prefkit.json`` under ``rm_scores``. A killed run restarted with the same command skips
the finished shards. Pairs with a text longer than ``max_length`` tokens get nulls and are counted
(``dropped.too_long``); the summary carries the label audit (:mod:`prefkit.output.audit`).
"""

from __future__ import annotations

import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from prefkit.errors import OptionError, OutputError, option
from prefkit.job_results import CompletionScoreResult, JudgeResult, ScoreResult
from prefkit.jobs.distributed import init_distributed
from prefkit.jobs.plan import data_fingerprint, has_columns, settings_fingerprint
from prefkit.jobs.report import worker_summary
from prefkit.jobs.runner import JobKind, JobSpec, merging, run_shards
from prefkit.loading.model import load_for_set, resolve_device
from prefkit.optionspec import OptionGroup
from prefkit.output import OutputFolder, read_output, require_trl_shape
from prefkit.output.audit import audit_folder
from prefkit.reflogps.job import ROW_COLUMNS
from prefkit.reflogps.provenance import engine_records, scoring_settings
from prefkit.rewards import reward
from prefkit.rewards.common import (
    LABEL,
    SECTION,
    WORK_DIR,
    default_max_length,
    model_summary,
    scores_section,
)
from prefkit.rewards.judge import judge as run_judge
from prefkit.rewards.options import ScoreOptions
from prefkit.rewards.rm import is_generated, score_completions
from prefkit.store.folder import stderr_warning

#: Columns `prefkit score` adds.
RM_FIELDS = [("rm_chosen", pa.float32()), ("rm_rejected", pa.float32()), ("rm_margin", pa.float32())]
RM_COLUMNS = [name for name, _ in RM_FIELDS]
#: counts each shard reports: rows, scored pairs, tokens of both texts, tokens run through the model
COUNT_KEYS = ("rows", "scored", "tokens", "forward_tokens")
#: reward-model scores of a set's pairs: the job's section, work folder, label and counts
KIND = JobKind(SECTION, WORK_DIR, LABEL, COUNT_KEYS)

__all__ = ["RM_COLUMNS", "RM_FIELDS", "SECTION", "WORK_DIR", "default_max_length", "score", "score_shard"]


def score_shard(
    loaded: Any,
    rows: list[dict],
    on_progress: Any = None,
    *,
    max_length: int,
    token_budget: int | None,
    prefix_sharing: bool,
) -> tuple[dict[str, list], dict]:
    """Tokenize and score one shard → (column values: float32 or None per row, counts). ``on_progress(pairs,
    tokens)`` is called as batches finish."""

    pairs = reward.tokenize_reward_pairs(rows, loaded.tokenizer, max_length)
    reward.check_ids(pairs, loaded.model, loaded.provenance.get("model", "the reward model"))
    seen = {"tokens": 0}

    def progress(done: float, tokens: int) -> None:
        seen["tokens"] += tokens
        if on_progress is not None:
            on_progress(done, tokens)

    chosen, rejected = reward.score_rewards(
        loaded.model, pairs, token_budget=token_budget, prefix_sharing=prefix_sharing, progress=progress
    )
    margin = chosen - rejected  # float32 arithmetic: rm_margin is exactly rm_chosen - rm_rejected
    values: dict[str, list] = {name: [] for name in RM_COLUMNS}
    dropped: Counter = Counter()
    table = np.stack([chosen, rejected, margin], axis=1)
    for pair, triple in zip(pairs, table.tolist(), strict=True):
        reason = pair.dropped or (None if np.isfinite(triple).all() else "nonfinite")  # e.g. an fp16 overflow
        if reason:
            dropped[reason] += 1
        for name, value in zip(RM_COLUMNS, triple, strict=True):
            values[name].append(None if reason else value)
    counts = {
        "rows": len(pairs),
        "scored": len(pairs) - sum(dropped.values()),
        "tokens": sum(p.tokens for p in pairs if not p.dropped),
        "forward_tokens": seen["tokens"],
        "dropped": dict(dropped),
    }
    return values, counts


def _open(out_dir: str | Path, overwrite: bool, max_length: int | None) -> OutputFolder:
    """The folder, checked before any model is loaded."""
    folder = read_output(out_dir, warn=stderr_warning)
    require_trl_shape(folder, "score", generated_ok=True)
    if not folder.splits:
        raise OutputError(
            f"{out_dir} has no splits to score", "build it first with `prefkit build SOURCE -o OUT`"
        )
    fresh = not overwrite and not (folder.path / WORK_DIR).is_dir()
    if fresh and has_columns(folder, RM_COLUMNS) and not _maybe_this_job(folder, max_length):
        raise OutputError(
            f"{out_dir} already has {LABEL} columns ({', '.join(RM_COLUMNS)})",
            f"pass {option('overwrite', True)} to recompute them (e.g. with another reward model)",
        )
    return folder


def _maybe_this_job(folder: OutputFolder, max_length: int | None) -> bool:
    """Whether OUT's columns may be this very job's result (a requeued or late worker): the exact check (the
    fingerprint, which needs the model) is made after loading it; then the run reports "nothing to do" and exits
    0, like `reflogps`. Only an obvious mismatch is refused before loading the model."""
    sec = folder.manifest.get(SECTION) or {}
    return bool(sec.get("result_fingerprint")) and max_length in (None, sec.get("max_length"))


def _load(folder: OutputFolder, options: ScoreOptions, ctx: Any) -> Any:
    """The reward model and its tokenizer (a chat template is required for message rows)."""

    model = str(options.reward_model)
    return load_for_set(folder, model, options, hash_weights=ctx.is_main, kind="reward")


def score(
    out_dir: str | Path,
    reward_model: str | None = None,
    *,
    options: OptionGroup | None = None,
    **keywords: Any,
) -> ScoreResult | CompletionScoreResult | JudgeResult:
    """Score every pair of the set in ``out_dir`` with the sequence-classification ``reward_model`` (a folder or
    Hub id) and add ``rm_chosen`` / ``rm_rejected`` (float32: the model's one logit for ``prompt + answer`` in its
    own chat template, read at the last non-padding token) and ``rm_margin = rm_chosen - rm_rejected``.

    ``max_length``: the longest text scored, in the reward model's tokens (default: its context length); a pair with
    a longer text gets nulls and is counted, never truncated. ``options`` / keywords (``dtype="bfloat16"``,
    ``device="cpu"``, ``token_budget=4096``, ``shard_rows`` …) are :class:`~prefkit.rewards.options.ScoreOptions`
    (the flags of `prefkit score`). Returns a
    :class:`~prefkit.results.ScoreResult`: counts per split, nulls, throughput, this worker's shards and the label
    audit (``audit``); ``summary()`` is the text `prefkit score` prints. Any number of calls
    (processes, machines sharing ``out_dir``, torchrun ranks) may run at once, leasing shards as
    :func:`prefkit.reflogps.reflogps` workers do (``lease_seconds``); the one that finds the job finished merges. Raises ``OutputError`` (not a set, another export shape,
    columns already there without ``overwrite``, unfinished work from other settings), ``ModelError`` (not a
    one-label reward model, no chat template for message rows, cannot load or does not fit).

    A set written by `prefkit generate` (prompts with a ``completions`` list) is scored completion by completion
    instead: each completion gets ``rm_score`` (:mod:`prefkit.rewards.rm`), and the summary has no label audit.
    With ``judge`` (a causal LM) instead of ``reward_model``, every completion of such a set gets ``judge_score``
    by ``rubric`` (a built-in name or a JSON file; :mod:`prefkit.rewards.judge`; ``judge_max_new_tokens`` caps
    its answers): a :class:`~prefkit.results.JudgeResult` counts the answers that did not parse.

    >>> score("hermes2k", "Skywork/Skywork-Reward-V2-Qwen3-0.6B").dropped  # doctest: +SKIP
    {'too_long': 2}
    """

    named = {"reward_model": reward_model} if reward_model is not None else {}
    opts = ScoreOptions.create(options, **keywords, **named)
    if opts.judge is not None:
        return JudgeResult.from_dict(run_judge(out_dir, opts))
    if opts.reward_model is None:
        raise OptionError(
            f"no model to score with: give {option('reward_model')}", f"or {option('judge')} for a generated set"
        )
    folder = _open(out_dir, opts.overwrite, opts.max_length)
    if is_generated(folder):  # a `prefkit generate` set: every completion gets rm_score
        return CompletionScoreResult.from_dict(score_completions(folder, opts))
    return _score_pairs(folder, opts)


def _score_pairs(folder: OutputFolder, opts: ScoreOptions) -> ScoreResult:
    """Score every pair of ``folder`` as one of the job's workers; the summary with the label audit."""

    start = time.perf_counter()
    dev = resolve_device(opts.device)  # under torchrun, auto/cuda → cuda:LOCAL_RANK
    with init_distributed(dev) as ctx:
        loaded = _load(folder, opts.replace(device=str(dev)), ctx)
        if opts.max_length is None:
            opts = opts.replace(max_length=default_max_length(loaded.model, loaded.tokenizer))
        spec, engine = _job_spec(folder, loaded, opts, dev, ctx)
        run_info = {"command": opts.command, "columns": RM_COLUMNS, "world_size": ctx.world_size}

        def section(shards: list, counts: dict) -> dict:
            info = {**run_info, "engine": engine, "counts": counts}
            return scores_section(loaded, spec.settings, info | {"seconds": round(time.perf_counter() - start, 3)})

        run = run_shards(folder, spec, ctx, opts, merging(folder.path, spec, section))

        def summary() -> ScoreResult:
            return _summary(folder.path, run, time.perf_counter() - start, audit_folder(folder.path))

        return ctx.on_main(summary)


def _job_spec(
    folder: OutputFolder, loaded: Any, options: ScoreOptions, dev: Any, ctx: Any
) -> tuple[Any, dict]:
    """The job: settings (fingerprinted) and the shard scorer; plus the engine settings for the manifest (with the
    self-test's largest difference per path, run on every rank before any shard)."""

    budget, sharing = options.token_budget, options.prefix_sharing
    fingerprint_engine, engine = engine_records(
        reward.reward_engine_settings, reward.self_test, loaded.model, options
    )

    max_length = int(options.max_length or 0)

    def settings() -> dict:
        extra = {"shard_rows": options.shard_rows, "data_sha256": data_fingerprint(folder), "kind": "reward"}
        rule = reward.REWARD_TOKENIZATION_RULE
        return scoring_settings(loaded.provenance, dev.type, max_length, rule, fingerprint_engine, extra)

    fixed = ctx.on_main(settings)

    score_rows = partial(
        score_shard, loaded, max_length=max_length, token_budget=budget, prefix_sharing=sharing
    )
    spec = JobSpec(
        RM_FIELDS,
        ROW_COLUMNS,
        fixed,
        settings_fingerprint(fixed),
        score_rows,
        KIND,
    )
    return spec, engine


def _summary(out: Path, run: Any, seconds: float, audit: dict) -> ScoreResult:
    """The summary `--json` prints, for this worker (summed over torchrun ranks); rates count only the pairs it
    scored; ``shards`` as in :func:`prefkit.reflogps.reflogps`."""

    section = run.manifest[SECTION]
    totals = section["totals"]
    summary = {
        "output": str(out),
        **model_summary(section),
        "pairs": totals["rows"],
        "scored": totals["scored"],
        "dropped": totals["dropped"],
        "tokens": totals["tokens"],
        "forward_tokens": totals["forward_tokens"],
        **worker_summary(run, section, seconds),
        "splits": section["splits"],
        "audit": audit,
    }
    return ScoreResult.from_dict(summary)
