"""`prefkit reflogps OUT --model M`: add TRL-exact reference log-probs to a built set, resumably.

For each split of the output folder the job cuts the rows into shards (:mod:`.plan`). Any number of workers
(processes on machines that share OUT, torchrun ranks) claim shards with leases (:mod:`.leases`), tokenize each
exactly like TRL (:func:`prefkit.chat.tokenize.tokenize_pairs`), score it with the engine
(:func:`.engine.score_pairs`) and write it atomically to the work folder (:mod:`.runner`); when every shard is
there, one worker merges (:mod:`.merge`): ``ref_chosen_logps``, ``ref_rejected_logps`` (float32),
``chosen_tokens``, ``rejected_tokens`` (int32) in the data shards, the provenance in ``prefkit.json``
(:mod:`.provenance`).

A killed run restarted with the same command skips the shards already finished; a killed worker's shard is taken
over by another once its lease expires. Rows whose prompt alone reaches ``max_length`` (TRL drops them) are
counted in the manifest and get nulls.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from prefkit.chat.tokenize import tokenize_pairs
from prefkit.chat.trl_rules import (
    KEPT_EMPTY,
    LEGACY_DEFAULTS,
    resolve_profile,
    rule_profile,
    score_split_prompts,
)
from prefkit.errors import OptionError, OutputError, option
from prefkit.job_results import ReflogpsResult
from prefkit.jobs.distributed import init_distributed
from prefkit.jobs.leases import DEFAULT_LEASE_SECONDS
from prefkit.jobs.merge import merge
from prefkit.jobs.plan import (
    DEFAULT_SHARD_ROWS,
    REF_COLUMNS,
    WORK_DIR,
    data_fingerprint,
    has_columns,
    has_ref_columns,
    plan_shards,
    read_work_settings,
    settings_fingerprint,
)
from prefkit.jobs.report import JobRun, Tally, worker_summary
from prefkit.jobs.runner import JobSpec, merge_finished, run_shards
from prefkit.loading import ModelOptions
from prefkit.loading.model import load_for_set, resolve_device
from prefkit.optionspec import OptionGroup
from prefkit.output import OutputFolder, read_output, require_trl_shape
from prefkit.record import REFLOGPS_FIELDS
from prefkit.reflogps import engine
from prefkit.reflogps.common import check_vocab, empty_counts
from prefkit.reflogps.kto import KTO_COLUMNS, KTO_RULE, check_batch_size, is_kto_folder, kto_section, kto_spec
from prefkit.reflogps.options import ReflogpsOptions
from prefkit.reflogps.provenance import check_build_tokenizer, engine_records, scoring_settings, section
from prefkit.store.folder import stderr_warning

#: columns a shard's rows are read with (what TRL's tokenization uses)
ROW_COLUMNS = ("prompt", "chosen", "rejected", "tools", "chat_template_kwargs")
#: TRL's ``DPOConfig.max_length`` default, used when neither the option nor the build recorded one
TRL_DEFAULT_MAX_LENGTH = 1024

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_SHARD_ROWS",
    "WORK_DIR",
    "ModelOptions",
    "ReflogpsOptions",
    "reflogps",
    "score_shard",
]


def score_shard(
    loaded: Any,
    rows: list[dict],
    on_progress: Any = None,
    *,
    max_length: int,
    token_budget: int | None,
    prefix_sharing: bool,
    rule: str | None = None,
) -> tuple[dict[str, list], dict]:
    """Tokenize (TRL-exact, by the release profile's ``rule``: :mod:`prefkit.chat.trl_rules`) and score one shard →
    (column values, counts). ``on_progress(pairs, tokens)`` is called as batches finish. Rows a release keeps
    although their prompt fills ``max_length`` (TRL <= 1.8) get 0.0: no completion token is left to score."""

    pairs = tokenize_pairs(rows, loaded.tokenizer, max_length, rule)
    check_vocab(loaded, pairs)
    chosen, rejected = score_split_prompts(
        lambda flat: engine.score_pairs(
            loaded.model, flat, token_budget=token_budget, prefix_sharing=prefix_sharing, progress=on_progress
        ),
        pairs,
    )
    values: dict[str, list] = {name: [] for name in REF_COLUMNS}
    dropped: Counter = Counter()
    counts = empty_counts(len(pairs))
    for pair, c, r in zip(pairs, chosen, rejected, strict=True):
        if pair.dropped == KEPT_EMPTY:
            c, r = 0.0, 0.0
        elif pair.dropped:
            dropped[pair.dropped] += 1
            for name in REF_COLUMNS:
                values[name].append(None)
            continue
        nc, nr = len(pair.chosen_ids), len(pair.rejected_ids)
        for name, value in zip(REF_COLUMNS, (c, r, nc, nr), strict=True):
            values[name].append(value)
        counts["scored"] += 1
        counts["truncated"] += bool(getattr(pair, "truncated", False))
        counts["completion_tokens"] += nc + nr
        counts["tokens"] += 2 * len(pair.prompt_ids) + nc + nr
    counts["dropped"] = dict(dropped)
    return values, counts


def _open(out_dir: str | Path, opts: ReflogpsOptions) -> tuple[OutputFolder, int]:
    """The folder (checked before any model is loaded) and the max_length to score with."""

    folder = read_output(out_dir, warn=stderr_warning)
    kto = is_kto_folder(folder)
    if not kto:
        require_trl_shape(folder, "reflogps")
    if not folder.splits:
        raise OutputError(
            f"{out_dir} has no splits to score", "build it first with `prefkit build SOURCE -o OUT`"
        )
    max_length = opts.max_length
    if max_length is None:
        max_length = (folder.manifest.get("tokenizer") or {}).get("max_length") or TRL_DEFAULT_MAX_LENGTH
    if max_length < 1:
        raise OptionError(
            f"{option('max_length')} must be positive, got {max_length}", "TRL's default is 1024"
        )
    fresh = not opts.overwrite and not opts.merge_only and not (folder.path / WORK_DIR).is_dir()
    columns = KTO_COLUMNS if kto else REF_COLUMNS
    if fresh and has_columns(folder, columns) and not _maybe_this_job(folder, max_length):
        raise OutputError(
            f"{out_dir} already has reference log-prob columns ({', '.join(columns[:2])})",
            f"pass {option('overwrite', True)} to recompute them (e.g. with another model)",
        )
    return folder, int(max_length)


def _maybe_this_job(folder: OutputFolder, max_length: int) -> bool:
    """Whether OUT's columns may be this very job's result (a worker started after the merge): the exact check
    (the result fingerprint) needs the model, so only an obvious mismatch is refused before loading it."""
    sec = folder.manifest.get("reflogps") or {}
    return bool(sec.get("result_fingerprint")) and sec.get("max_length") == max_length


def _load(folder: OutputFolder, opts: ReflogpsOptions, ctx: Any) -> Any:
    """The model, checked against the set (chat template for message rows; the build's tokenizer)."""

    model = str(opts.model)
    loaded = load_for_set(folder, model, opts, hash_weights=ctx.is_main)
    if not opts.allow_mismatch:
        check_build_tokenizer(folder.manifest.get("tokenizer") or {}, loaded.provenance, model)
    return loaded


def reflogps(
    out_dir: str | Path, model: str | None = None, *, options: OptionGroup | None = None, **keywords: Any
) -> ReflogpsResult:
    """Score every pair of the set in ``out_dir`` with the reference ``model`` (a folder or Hub id) and add the
    columns ``ref_chosen_logps`` / ``ref_rejected_logps`` (float32, nats: the sum of log π_ref over the completion
    tokens, TRL's ``DPOTrainer`` rule) and ``chosen_tokens`` / ``rejected_tokens`` (int32).

    ``options`` / keywords are :class:`~prefkit.reflogps.options.ReflogpsOptions` (the flags of `prefkit
    reflogps`: ``dtype="bfloat16"``, ``device="cpu"``, ``shard_rows`` …). ``max_length`` is TRL's
    ``DPOConfig.max_length`` (default: the build's ``--max-length``, else TRL's 1024). Any number of
    calls (processes, machines sharing ``out_dir``, torchrun ranks) may run at once: each is a worker that leases
    shards (``lease_seconds``, default 120: a killed worker's shard is taken over after that long), the one that
    sees the job finished merges. ``merge_only``: merge a job whose shards are all finished, without loading the
    model. A KTO set (``--export kto``: ``prompt``/``completion``/``label``) gets TRL ``KTOTrainer``'s
    ``ref_logps`` / ``ref_KL_logps`` instead (:mod:`.kto`), its KL completions paired within batches of
    ``per_device_train_batch_size`` rows (default 8, TRL's) in dataset order. ``trl_rule``: the TRL release
    profile whose DPO rule the values follow (:mod:`prefkit.chat.trl_rules`; default: the installed TRL's).
    Returns this worker's summary, a :class:`~prefkit.results.ReflogpsResult` (counts per split, rows TRL
    would drop, tokens, throughput, and ``shards``: total, resumed, scored, taken_over, by_others, lost,
    merged_here; ``summary()`` is the text `prefkit reflogps` prints). Raises ``OutputError`` (not a
    set, columns already there without ``overwrite``, unfinished work from other settings, live workers in the
    way of ``overwrite``/``resume=False``, unfinished shards with ``merge_only``), ``ModelError`` (model cannot
    load or does not fit), ``OptionError`` (a bad value).

    >>> reflogps("hermes2k", "./my-sft-model", max_length=2048).dropped  # doctest: +SKIP
    {'prompt_too_long': 4}
    """

    start = time.perf_counter()
    opts = ReflogpsOptions.create(options, **keywords, **({"model": model} if model is not None else {}))
    if opts.model is None:
        raise OptionError(f"no reference model: give {option('model')}", "the model your DPO run starts from")
    folder, max_length = _open(out_dir, opts)
    kind = _job_kind(folder, opts, max_length)
    if opts.merge_only:
        return _merge_only(folder, opts, start)
    dev = resolve_device(opts.device)  # under torchrun, auto/cuda → cuda:LOCAL_RANK
    with init_distributed(dev) as ctx:
        loaded = _load(folder, opts.replace(device=str(dev)), ctx)
        spec, engine_settings = _job_spec(folder, loaded, opts, kind, dev, ctx)
        # ranks other than 0 do not hash the weights: the fingerprinted settings carry rank 0's hash
        prov = {**loaded.provenance, "weights_sha256": spec.settings["weights_sha256"]}
        finish = _finisher(folder, prov, spec, engine_settings, opts.command, ctx.world_size, start)
        record = {"provenance": prov, "engine": engine_settings}
        run = run_shards(folder, spec, ctx, opts, finish, record=record)
        return ctx.on_main(lambda: _summary(folder.path, run, time.perf_counter() - start))


def _job_kind(folder: OutputFolder, opts: ReflogpsOptions, max_length: int) -> JobKind:
    """What the values follow (a DPO set's TRL rule, a KTO set's batch size), refusing the options that do not
    apply to the set."""

    pdtbs = opts.per_device_train_batch_size
    batch_size = check_batch_size(pdtbs) if is_kto_folder(folder) else None
    if batch_size is None and pdtbs is not None:
        raise OptionError(
            "--per-device-train-batch-size applies to KTO sets only (their KL completions depend on it)",
            "leave it out for a DPO set",
        )
    if batch_size is not None and opts.trl_rule not in (None, "trl-1.16"):
        raise OptionError(
            f"--trl-rule {opts.trl_rule} is a DPO profile; KTO sets follow TRL 1.16's KTOTrainer",
            "leave --trl-rule out for a KTO set",
        )
    if opts.merge_only and batch_size is not None:
        raise OptionError(
            "--merge-only does not take KTO sets yet (their shards follow the KL batches, found by tokenizing)",
            "rerun the workers' command: the last worker merges by itself",
        )
    return JobKind(resolve_profile(opts.trl_rule).rule, max_length, batch_size)


def _finisher(
    folder: OutputFolder, prov: dict, spec: Any, engine: dict, command: str | None, world: int, start: float
) -> Callable[[list, dict, Callable[[], None]], dict]:
    """The merge a worker runs once every shard is finished (see :data:`prefkit.jobs.runner.Finish`)."""

    def finish(shards: list, counts: dict, check: Callable[[], None]) -> dict:
        columns = [name for name, _ in spec.columns]
        info: dict[str, Any] = {"command": command, "columns": columns, "world_size": world, "engine": engine}
        info |= {"counts": counts, "seconds": round(time.perf_counter() - start, 3)}
        sec = section(prov, spec.settings, info)

        if (
            rule_profile(spec.settings["trl_tokenization_rule"]).tokenize is not None
        ):  # TRL <= 0.28's defaults
            sec.update(LEGACY_DEFAULTS)
        if "per_device_train_batch_size" in spec.settings:
            sec["kto"] = kto_section(folder, spec.settings, shards, folder.path / spec.work_dir)
        return merge(folder.path, shards, sec, columns=spec.columns, settings=spec.settings, check=check)

    return finish


def _merge_only(folder: OutputFolder, opts: ReflogpsOptions, start: float) -> ReflogpsResult:
    """``--merge-only``: merge the work folder's finished job with the model provenance its first worker recorded
    in settings.json (no model is loaded). A set this job already merged is reported as complete."""

    out, model, max_length = folder.path, opts.model, opts.max_length
    recorded = read_work_settings(out / WORK_DIR)
    section = folder.manifest.get("reflogps") or {}
    if not recorded:
        if has_ref_columns(folder) and section.get("model") == model and section.get("result_fingerprint"):
            run = JobRun([], set(), folder.manifest, Tally(), "already_complete")
            return _summary(out, run, time.perf_counter() - start)
        raise OutputError(
            f"{out} has no reference scoring to merge (no {WORK_DIR} folder with a job)",
            "start workers with `prefkit reflogps OUT --model M`; the last one merges by itself",
        )
    settings = recorded.get("settings") or {}
    if settings.get("model") != model or (
        max_length is not None and settings.get("max_length") != max_length
    ):
        raise OptionError(
            f"{out}'s unfinished job scores with --model {settings.get('model')} --max-length "
            f"{settings.get('max_length')}, not --model {model}"
            + (f" --max-length {max_length}" if max_length is not None else ""),
            "pass the workers' --model (and --max-length) with --merge-only",
        )
    prov = recorded.get("provenance")
    if not prov:
        raise OutputError(
            f"{out / WORK_DIR} was written by an older prefkit that did not record the model's provenance",
            "rerun the workers' command without --merge-only: it merges once every shard is finished",
        )
    spec = JobSpec(REFLOGPS_FIELDS, ROW_COLUMNS, settings, str(recorded.get("fingerprint")), _no_scoring)
    shards = plan_shards(folder, int(settings.get("shard_rows") or DEFAULT_SHARD_ROWS))
    finish = _finisher(folder, prov, spec, recorded.get("engine") or {}, opts.command, 1, start)
    run = merge_finished(folder, spec, shards, finish, opts.lease_seconds)
    return _summary(out, run, time.perf_counter() - start)


def _no_scoring(rows: list[dict], on_progress: Any) -> tuple[dict[str, list], dict]:
    raise AssertionError("--merge-only scores nothing")


@dataclass(frozen=True)
class JobKind:
    """What the values follow: a DPO set's TRL release ``rule`` (:mod:`prefkit.chat.trl_rules`) and TRL's
    ``max_length``, or for a KTO set also its ``per_device_train_batch_size`` (None: a DPO set)."""

    rule: str
    max_length: int
    batch_size: int | None = None


def _job_spec(
    folder: OutputFolder, loaded: Any, options: ReflogpsOptions, kind: JobKind, dev: Any, ctx: Any
) -> tuple[Any, dict]:
    """The job: settings (fingerprinted), and the shard scorer; plus the engine settings for the manifest."""

    budget, sharing = options.token_budget, options.prefix_sharing
    fingerprint_engine, engine_settings = engine_records(
        engine.engine_settings, engine.self_test, loaded.model, options
    )

    rule, batch_size, max_length = kind.rule, kind.batch_size, kind.max_length
    extra: dict = {"shard_rows": options.shard_rows}
    if batch_size is not None:
        rule, extra["per_device_train_batch_size"], extra["kl_order"] = KTO_RULE, batch_size, "dataset"

    def settings() -> dict:
        extra["data_sha256"] = data_fingerprint(folder)
        return scoring_settings(loaded.provenance, dev.type, max_length, rule, fingerprint_engine, extra)

    fixed = ctx.on_main(settings)

    score = partial(score_shard, loaded, max_length=max_length, token_budget=budget, prefix_sharing=sharing)
    if batch_size is not None:
        return kto_spec(loaded, fixed, max_length, batch_size, (budget, sharing)), engine_settings
    spec = JobSpec(
        REFLOGPS_FIELDS, ROW_COLUMNS, fixed, settings_fingerprint(fixed), partial(score, rule=rule)
    )
    return spec, engine_settings


def _summary(out: Path, run: Any, seconds: float) -> ReflogpsResult:
    """The summary `--json` prints, for this worker (summed over torchrun ranks): rates count only the pairs it
    scored; ``shards`` says how many it scored, took over, found finished, left to others, and whether it merged."""

    section = run.manifest["reflogps"]
    totals = section["totals"]
    summary = {
        "output": str(out),
        "model": section["model"],
        "revision": section["revision"],
        "dtype": section["dtype"],
        "device": section["device"],
        "world_size": section["world_size"],
        "workers": section.get("workers"),
        "max_length": section["max_length"],
        "pairs": totals["rows"],
        "scored": totals["scored"],
        "dropped": totals["dropped"],
        "truncated": totals["truncated"],
        "tokens": totals["tokens"],
        **worker_summary(run, section, seconds),
        "splits": section["splits"],
    }
    return ReflogpsResult.from_dict(summary)
