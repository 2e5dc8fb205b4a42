"""`prefkit generate SOURCE --model M -n K -o OUT`: K completions per prompt per model, resumably, on the sharded
job machinery of `reflogps` and `score` (:mod:`prefkit.reflogps.runner`).

Two steps, both atomic swaps into OUT:

1. :func:`stage_prompts` writes OUT as a prompt set (``prompt_id``, ``prompt``: one row per distinct prompt of
   the source, :mod:`prefkit.generate.prompts`), unless OUT already holds these prompts (a resumed or joined run).
   Concurrent workers agree through one lock file next to OUT (:func:`_prompt_lock`).
2. The job: the prompt rows are cut into shards; each worker leases shards, generates their completions
   (:mod:`prefkit.generate.engine`) and writes them to ``OUT/.generate-work/``; the worker that finds every
   shard finished merges the ``completions`` column into the data shards and the ``generate`` section into
   ``prefkit.json`` (:func:`prefkit.reflogps.merge.merge`).

The result is a set of the rated-completions shape (``prompt`` + ``completions: list[{model, response, …}]``)
that `build` binarises (``--rating rm_score`` after `prefkit score`, ``--chosen-from/--rejected-from``).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefkit.errors import OptionError, OutputError
from prefkit.formats.base import NULL_VALUE
from prefkit.generate.engine import Engine, Request, load_engine
from prefkit.generate.prompts import PROMPT, PROMPT_ID, Prompts, read_prompts
from prefkit.generate.sampling import COMPLETIONS_TYPE, SamplingParams, completion_seed
from prefkit.reflogps.job import ModelOptions
from prefkit.reflogps.leases import DEFAULT_LEASE_SECONDS
from prefkit.results import GenerateResult

SECTION = "generate"
WORK_DIR = ".generate-work"
LABEL = "generated completion"
COLUMNS = [("completions", COMPLETIONS_TYPE)]
ROW_COLUMNS = (PROMPT_ID, PROMPT, "chat_template_kwargs")
COUNT_KEYS = ("rows", "scored", "completions", "tokens", "prompt_tokens")
#: prompts per work shard
DEFAULT_SHARD_ROWS = 256
#: a prompt-stage lock older than this (seconds) belongs to a killed worker
STALE_LOCK_SECONDS = 600.0


@dataclass(frozen=True)
class PromptOptions:
    """Where the prompts come from: the source's splits, Hub revision, shape and columns, and at most
    ``max_prompts`` prompts per split."""

    split: list[str] | None = None
    revision: str | None = None
    format: str | None = None
    prompt_col: str | None = None
    system_col: str | None = None
    max_prompts: int | None = None
    token: str | bool | None = None


@dataclass(frozen=True)
class JobOptions:
    """The job flags every sharded job has (`reflogps`, `score`)."""

    shard_rows: int = DEFAULT_SHARD_ROWS
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    resume: bool = True
    overwrite: bool = False
    progress: bool = False
    command: str | None = None
    batch_size: int | None = None
    #: ``local`` (this process is one worker) or ``ray`` (``workers`` Ray tasks are the workers)
    executor: str = "local"
    ray_address: str | None = None
    workers: int | None = None


def _split_options(options: dict[str, Any]) -> tuple[SamplingParams, ModelOptions, PromptOptions, JobOptions]:
    """Keyword options sorted into their groups by name; an unknown one is an OptionError."""
    groups = (SamplingParams, ModelOptions, PromptOptions, JobOptions)
    names = [{f.name for f in fields(g)} for g in groups]
    unknown = sorted(set(options) - set().union(*names))
    if unknown:
        known = ", ".join(sorted(set().union(*names)))
        raise OptionError(f"unknown option(s) {', '.join(unknown)}", f"options are: {known}")
    made = [g(**{k: v for k, v in options.items() if k in n}) for g, n in zip(groups, names, strict=True)]
    sampling, model, prompts, job = made
    if isinstance(sampling.stop, list):
        sampling = SamplingParams(**{**sampling.to_dict(), "stop": tuple(sampling.stop)})
    return sampling, model, prompts, job


def generate(
    source: str | Path,
    output: str | Path,
    model: str | list[str],
    *,
    n: int = 1,
    engine: str = "transformers",
    chat_template_kwargs: dict | None = None,
    endpoint: str | None = None,
    **options: Any,
) -> GenerateResult:
    """Generate ``n`` completions per prompt of ``source`` with each ``model`` (a local folder or Hub id, or a list
    of them; the CLI's repeatable ``--model``) and write them to ``output`` (``-o``) as a prefkit set: ``prompt_id``, ``prompt`` (messages), ``completions``
    (list of structs, :data:`prefkit.generate.sampling.COMPLETION_FIELDS`: ``model``, ``response``,
    ``reasoning_content``, revision, sample index, seed, sampling parameters, ``finish_reason``, token counts).

    ``options`` (keywords): sampling (:class:`~prefkit.generate.sampling.SamplingParams`: ``temperature``,
    ``top_p``, ``top_k``, ``max_new_tokens``, ``seed``, ``stop``), the model (:class:`~prefkit.reflogps.job.ModelOptions`:
    ``dtype``, ``device`` …), the prompts (:class:`PromptOptions`) and the job (:class:`JobOptions`:
    ``shard_rows``, ``lease_seconds``, ``resume``, ``overwrite``, ``batch_size`` …). Any number of calls with the
    same arguments (processes, machines sharing OUT, torchrun ranks) share the work. Returns a summary. Raises
    OptionError (bad option), SourceError/FormatError (the source), OutputError (OUT exists and holds something
    else without ``overwrite``, unfinished work from other settings), ModelError, DependencyError (an engine's
    package missing). ``endpoint``: the server of ``engine="openai"`` (its token from ``OPENAI_API_KEY``, never
    recorded).

    >>> generate("prompts.jsonl", "gen", ["Qwen/Qwen3-0.6B"], n=4, temperature=0.8)  # doctest: +SKIP
    """
    from prefkit.reflogps.distributed import init_distributed
    from prefkit.reflogps.model import resolve_device

    start = time.perf_counter()
    sampling, model_options, prompt_options, job = _split_options(options)
    names = [model] if isinstance(model, str) else list(model)
    _check(names, n, job)
    out = Path(output)
    prompts = read_prompts(str(source), **vars(prompt_options))
    if job.executor == "ray":
        from prefkit.generate.ray_executor import run_on_ray

        stage_prompts(out, prompts, job.overwrite, job.command)
        call = {
            "source": str(source),
            "output": str(out),
            "model": names,
            "n": n,
            "engine": engine,
            "chat_template_kwargs": chat_template_kwargs,
            "endpoint": endpoint,
            **options,
            "executor": "local",
            "progress": False,
        }
        return GenerateResult.from_dict(run_on_ray(call, job.workers, job.ray_address, time.perf_counter() - start))
    if job.executor != "local":
        raise OptionError(f"unknown --executor {job.executor!r}", "use local or ray")
    dev = resolve_device(model_options.device)
    ctx = init_distributed(dev)
    try:
        ctx.on_main(lambda: stage_prompts(out, prompts, job.overwrite, job.command))
        ctx.barrier()
        model_options = ModelOptions.create(model_options, {"device": str(dev)})
        kwargs = dict(chat_template_kwargs or {})
        engines = [
            (m, load_engine(engine, m, model_options, kwargs, endpoint, job.batch_size)) for m in names
        ]
        return GenerateResult.from_dict(_run(out, engines, n, sampling, kwargs, job, ctx, start))
    finally:
        ctx.close()


def _check(models: list[str], n: int, job: JobOptions) -> None:
    if not models:
        raise OptionError("no --model given", "name at least one model: --model Qwen/Qwen3-0.6B")
    if len(set(models)) != len(models):
        raise OptionError("a --model is named twice", "name each model once")
    if n < 1:
        raise OptionError(f"-n must be positive, got {n}", "e.g. -n 4")
    if job.shard_rows < 1:
        raise OptionError(
            f"--shard-rows must be positive, got {job.shard_rows}", f"the default is {DEFAULT_SHARD_ROWS}"
        )


# ----------------------------------------------------------------------------------------- the prompt set
def prompts_fingerprint(prompts: Prompts) -> str:
    """SHA-256 over the splits' names and prompt ids, in order (the same source gives the same prompt set)."""
    digest = hashlib.sha256()
    for name, table in prompts.splits.items():
        digest.update(f"{name}\0".encode())
        for pid in table.column(PROMPT_ID).to_pylist():
            digest.update(pid.encode())
    return digest.hexdigest()


def _manifest(out: Path) -> dict | None:
    from prefkit.output import MANIFEST_NAME

    try:
        data = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _holds(out: Path, fingerprint: str) -> bool:
    return ((_manifest(out) or {}).get("prompts") or {}).get("fingerprint") == fingerprint


def stage_prompts(out: Path, prompts: Prompts, overwrite: bool, command: str | None) -> None:
    """Write OUT as the prompt set, unless it already holds these prompts. The one place `generate` swaps a new
    folder into OUT (the merge is the other, :mod:`prefkit.reflogps.merge`); an output-folder write lock goes
    here. Raises OutputError when OUT exists with other content and not ``overwrite``."""
    fingerprint = prompts_fingerprint(prompts)
    if _holds(out, fingerprint):
        return
    if out.exists() and not overwrite:
        raise OutputError(
            f"output folder {str(out)!r} already exists and does not hold these prompts",
            "pass --overwrite to replace it, or choose another -o",
        )
    with _prompt_lock(out):
        if _holds(out, fingerprint):  # another worker staged them while we waited
            return
        _write_prompt_set(out, prompts, fingerprint, command)


def _write_prompt_set(out: Path, prompts: Prompts, fingerprint: str, command: str | None) -> None:
    from prefkit import __version__
    from prefkit.output import write_output

    splits = {}
    for name, c in prompts.counts.items():
        dropped = {"duplicate_prompt": c["duplicates"]} if c["duplicates"] else {}
        invalid = {NULL_VALUE.name: c["no_prompt"]} if c["no_prompt"] else {}
        splits[name] = {"read": c["read"], "kept": c["prompts"], "dropped": dropped, "invalid": invalid}
    manifest = {
        "prefkit_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "sources": [{**prompts.source, "families": prompts.families}],
        "prompts": {"fingerprint": fingerprint, "counts": prompts.counts},
        "splits": splits,
    }
    write_output(out, prompts.splits, {}, manifest, overwrite=True)


@contextmanager
def _prompt_lock(out: Path) -> Iterator[None]:
    """One worker at a time writes the prompt set: ``.<OUT>.generate-lock`` next to OUT, created exclusively;
    the others wait for it to go (a lock older than :data:`STALE_LOCK_SECONDS` is a killed worker's: removed)."""
    from prefkit.reflogps.leases import create_exclusive

    lock = out.parent / f".{out.name}.generate-lock"
    out.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    while not create_exclusive(lock, body):
        try:
            if time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
                lock.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ the job
def generate_shard(
    engines: list[tuple[str, Engine]],
    rows: list[dict],
    n: int,
    params: SamplingParams,
    on_progress: Any = None,
) -> tuple[dict[str, list], dict]:
    """One shard's completions: per row, ``n`` per model, in model order then sample index. Greedy runs one
    request per prompt and model (the ``n`` samples are the same) and records it ``n`` times."""
    per_row: list[list[dict]] = [[] for _ in rows]
    samples = 1 if params.greedy else n
    totals = {"completions": 0, "tokens": 0, "prompt_tokens": 0}
    scale = samples * len(engines)

    def progress(done: int, tokens: int) -> None:
        if on_progress is not None:
            on_progress(done / scale, tokens)

    for name, engine in engines:
        where = [(i, k) for i in range(len(rows)) for k in range(samples)]
        requests = [
            Request(
                rows[i][PROMPT],
                completion_seed(params.seed, rows[i][PROMPT_ID], k),
                rows[i].get("chat_template_kwargs") or {},
            )
            for i, k in where
        ]
        outputs = engine.generate(requests, params, progress)
        for (i, k), out in zip(where, outputs, strict=True):
            for index in range(n) if params.greedy else [k]:
                per_row[i].append(_completion(name, engine, rows[i][PROMPT_ID], index, out, params))
                totals["completions"] += 1
                totals["tokens"] += out.completion_tokens
                totals["prompt_tokens"] += out.prompt_tokens
    counts = {"rows": len(rows), "scored": len(rows), **totals}
    return {"completions": per_row}, counts


def _completion(name: str, engine: Engine, pid: str, index: int, out: Any, params: SamplingParams) -> dict:
    return {
        "model": name,
        "response": out.response,
        "reasoning_content": out.reasoning_content,
        "revision": engine.info.get("revision"),
        "sample_index": index,
        "seed": completion_seed(params.seed, pid, index),
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k or 0,
        "max_new_tokens": params.max_new_tokens,
        "finish_reason": out.finish_reason,
        "prompt_tokens": out.prompt_tokens,
        "completion_tokens": out.completion_tokens,
    }


def _settings(
    out: Path, engines: list[tuple[str, Engine]], n: int, sampling: SamplingParams, extra: dict
) -> dict:
    """What decides the completions (fingerprinted): models and their weights, engine, sampling, n, the data."""
    from prefkit.output import read_output
    from prefkit.reflogps.plan import data_fingerprint

    keep = ("model", "revision", "weights_sha256", "tokenizer_sha256", "chat_template_sha256", "dtype")
    models = [{k: e.info.get(k) for k in keep} | {"name": m} for m, e in engines]
    first = engines[0][1].info
    return {
        "kind": "generate",
        "models": models,
        "engine": first.get("engine"),
        "engine_version": first.get("engine_version"),
        "device": str(first.get("device", "")).split(":")[0],
        "sampling": sampling.to_dict(),
        "n": n,
        "data_sha256": data_fingerprint(read_output(out)),
        **extra,
    }


def _run(
    out: Path,
    engines: list[tuple[str, Engine]],
    n: int,
    sampling: SamplingParams,
    kwargs: dict,
    job: JobOptions,
    ctx: Any,
    start: float,
) -> dict:
    from prefkit.output import read_output
    from prefkit.reflogps.merge import merge
    from prefkit.reflogps.plan import settings_fingerprint
    from prefkit.reflogps.runner import JobSpec, run_flagged

    folder = read_output(out)
    batch = getattr(engines[0][1], "batch_size", None)
    extra = {"chat_template_kwargs": kwargs, "shard_rows": job.shard_rows, "batch_size": batch}
    settings = ctx.on_main(lambda: _settings(out, engines, n, sampling, extra))

    def score(rows: list[dict], on_progress: Any) -> tuple[dict[str, list], dict]:
        return generate_shard(engines, rows, n, sampling, on_progress)

    spec = JobSpec(
        COLUMNS,
        ROW_COLUMNS,
        settings,
        settings_fingerprint(settings),
        score,
        count_keys=COUNT_KEYS,
        name=SECTION,
        work_dir=WORK_DIR,
        label=LABEL,
    )

    def finish(shards: list, counts: dict, check: Any) -> dict:
        section = {
            "command": job.command,
            "engine": settings["engine"],
            "engine_version": settings["engine_version"],
            "models": [e.info for _, e in engines],
            "sampling": sampling.to_dict(),
            "n": n,
            "chat_template_kwargs": kwargs,
            "seed_rule": "xxh3-64 of 'seed:prompt_id:sample_index' (prefkit.generate.sampling.completion_seed)",
            "world_size": ctx.world_size,
            "seconds": round(time.perf_counter() - start, 3),
            **counts,
        }
        return merge(
            out,
            shards,
            section,
            name=SECTION,
            columns=COLUMNS,
            work_dir=WORK_DIR,
            settings=settings,
            check=check,
        )

    run = run_flagged(folder, spec, ctx, job, finish)
    return ctx.on_main(lambda: _summary(out, run, time.perf_counter() - start))


def _summary(out: Path, run: Any, seconds: float) -> dict:
    from prefkit.reflogps.report import worker_summary

    section = run.manifest[SECTION]
    totals = section["totals"]
    return {
        "output": str(out),
        "models": [m.get("model") for m in section["models"]],
        "engine": section["engine"],
        "n": section["n"],
        "prompts": totals["rows"],
        "completions": totals["completions"],
        "tokens": totals["tokens"],
        **worker_summary(run, section, seconds),
        "splits": section["splits"],
    }
