"""`prefkit generate SOURCE --model M -n K -o OUT`: K completions per prompt per model, resumably, on the sharded
job machinery of `reflogps` and `score` (:mod:`prefkit.jobs.runner`).

Two steps, both atomic swaps into OUT:

1. :func:`stage_prompts` writes OUT as a prompt set (``prompt_id``, ``prompt``: one row per distinct prompt of
   the source, :mod:`prefkit.generate.prompts`), unless OUT already holds these prompts (a resumed or joined run).
   Concurrent workers agree through one lock file next to OUT (:func:`_prompt_lock`).
2. The job: the prompt rows are cut into shards; each worker leases shards, generates their completions
   (:mod:`prefkit.generate.engine`) and writes them to ``OUT/.generate-work/``; the worker that finds every
   shard finished merges the ``completions`` column into the data shards and the ``generate`` section into
   ``prefkit.json`` (:func:`prefkit.jobs.merge.merge`).

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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefkit.errors import OptionError, OutputError, option
from prefkit.formats.base import NULL_VALUE
from prefkit.generate.engine import Engine, Request, load_engine
from prefkit.generate.options import DEFAULT_SHARD_ROWS, GenerateOptions, PromptOptions
from prefkit.generate.prompts import PROMPT, PROMPT_ID, Prompts, read_prompts
from prefkit.generate.ray_executor import run_on_ray
from prefkit.generate.sampling import COMPLETIONS_TYPE, SamplingParams, completion_seed
from prefkit.job_results import GenerateResult
from prefkit.jobs.distributed import init_distributed
from prefkit.jobs.leases import create_exclusive
from prefkit.jobs.plan import data_fingerprint, settings_fingerprint
from prefkit.jobs.report import worker_summary
from prefkit.jobs.runner import JobKind, JobSpec, merging, run_shards
from prefkit.loading.model import resolve_device
from prefkit.optionspec import OptionGroup
from prefkit.output import MANIFEST_NAME, read_output, write_output
from prefkit.version import __version__

__all__ = [
    "DEFAULT_SHARD_ROWS",
    "GenerateOptions",
    "PromptOptions",
    "generate",
    "generate_shard",
    "stage_prompts",
]

SECTION = "generate"
WORK_DIR = ".generate-work"
LABEL = "generated completion"
COLUMNS = [("completions", COMPLETIONS_TYPE)]
ROW_COLUMNS = (PROMPT_ID, PROMPT, "chat_template_kwargs")
COUNT_KEYS = ("rows", "scored", "completions", "tokens", "prompt_tokens")
#: generation: the job's section, work folder, label and counts
KIND = JobKind(SECTION, WORK_DIR, LABEL, COUNT_KEYS)
#: a prompt-stage lock older than this (seconds) belongs to a killed worker
STALE_LOCK_SECONDS = 600.0


def generate(
    source: str | Path,
    output: str | Path | None = None,
    model: str | list[str] | None = None,
    *,
    options: OptionGroup | None = None,
    **keywords: Any,
) -> GenerateResult:
    """Generate ``n`` completions per prompt of ``source`` with each ``model`` (a local folder or Hub id, or a list
    of them; the CLI's repeatable ``--model``) and write them to ``output`` (``-o``) as a prefkit set: ``prompt_id``,
    ``prompt`` (messages), ``completions`` (list of structs, :data:`prefkit.generate.sampling.COMPLETION_FIELDS`:
    ``model``, ``response``, ``reasoning_content``, revision, sample index, seed, sampling parameters,
    ``finish_reason``, token counts).

    ``options`` / keywords are :class:`~prefkit.generate.options.GenerateOptions` (the flags of `prefkit
    generate`): ``n``, ``engine``, ``endpoint`` (the server of ``engine="openai"``; its token from
    ``OPENAI_API_KEY``, never recorded), ``chat_template_kwargs``, sampling (``temperature``, ``top_p``,
    ``top_k``, ``max_new_tokens``, ``seed``, ``stop``), the model (``dtype``, ``device`` …), the prompts
    (``split``, ``source_revision``, ``format``, ``prompt_col``, ``system_col``, ``max_prompts``) and the job
    (``shard_rows``, ``lease_seconds``, ``resume``, ``overwrite``, ``batch_size``, ``executor`` …). Any number of
    calls with the same arguments (processes, machines sharing OUT, torchrun ranks) share the work. Returns a
    summary. Raises OptionError (bad option), SourceError/FormatError (the source), OutputError (OUT exists and
    holds something else without ``overwrite``, unfinished work from other settings), ModelError,
    DependencyError (an engine's package missing).

    >>> generate("prompts.jsonl", "gen", ["Qwen/Qwen3-0.6B"], n=4, temperature=0.8)  # doctest: +SKIP
    """

    start = time.perf_counter()
    named = {k: v for k, v in (("output", output), ("model", model)) if v is not None}
    opts = GenerateOptions.create(options, **keywords, **named)
    names = list(opts.model or ())
    _check(names)
    if opts.output is None:
        raise OptionError(f"no output folder: give {option('output')}", "name the folder to write the set to")
    out = Path(str(opts.output))
    prompts = read_prompts(str(source), **opts.prompts.read_keywords())
    if opts.executor == "ray":
        stage_prompts(out, prompts, opts.overwrite, opts.command)
        call = {"source": str(source), **opts.given(), "output": str(out), "model": names}
        call |= {"executor": "local", "progress": False}
        return GenerateResult.from_dict(
            run_on_ray(call, opts.workers, opts.ray_address, time.perf_counter() - start)
        )
    if opts.executor != "local":
        raise OptionError(f"unknown --executor {opts.executor!r}", "use local or ray")
    dev = resolve_device(opts.device)
    with init_distributed(dev) as ctx:
        ctx.on_main(lambda: stage_prompts(out, prompts, opts.overwrite, opts.command))
        ctx.barrier()
        placed = opts.replace(device=str(dev))
        kwargs = dict(opts.chat_template_kwargs or {})
        engines = [
            (m, load_engine(opts.engine, m, placed, kwargs, opts.endpoint, opts.batch_size)) for m in names
        ]
        return GenerateResult.from_dict(_run(out, engines, opts, ctx, start))


def _check(models: list[str]) -> None:
    if not models:
        raise OptionError(f"no model given: give {option('model')}", "name at least one model, e.g. Qwen/Qwen3-0.6B")
    if len(set(models)) != len(models):
        raise OptionError("a --model is named twice", "name each model once")


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
    try:
        data = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _holds(out: Path, fingerprint: str) -> bool:
    return ((_manifest(out) or {}).get("prompts") or {}).get("fingerprint") == fingerprint


def stage_prompts(out: Path, prompts: Prompts, overwrite: bool, command: str | None) -> None:
    """Write OUT as the prompt set, unless it already holds these prompts. The one place `generate` swaps a new
    folder into OUT (the merge is the other, :mod:`prefkit.jobs.merge`); an output-folder write lock goes
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


def _settings(out: Path, engines: list[tuple[str, Engine]], opts: GenerateOptions, extra: dict) -> dict:
    """What decides the completions (fingerprinted): models and their weights, engine, sampling, n, the data."""

    keep = ("model", "revision", "weights_sha256", "tokenizer_sha256", "chat_template_sha256", "dtype")
    models = [{k: e.info.get(k) for k in keep} | {"name": m} for m, e in engines]
    first = engines[0][1].info
    return {
        "kind": "generate",
        "models": models,
        "engine": first.get("engine"),
        "engine_version": first.get("engine_version"),
        "device": str(first.get("device", "")).split(":")[0],
        "sampling": opts.sampling.to_dict(),
        "n": opts.n,
        "data_sha256": data_fingerprint(read_output(out)),
        **extra,
    }


def _run(out: Path, engines: list[tuple[str, Engine]], opts: GenerateOptions, ctx: Any, start: float) -> dict:
    folder = read_output(out)
    n, sampling, kwargs = opts.n, opts.sampling, dict(opts.chat_template_kwargs or {})
    batch = getattr(engines[0][1], "batch_size", None)
    extra = {"chat_template_kwargs": kwargs, "shard_rows": opts.shard_rows, "batch_size": batch}
    settings = ctx.on_main(lambda: _settings(out, engines, opts, extra))

    def score(rows: list[dict], on_progress: Any) -> tuple[dict[str, list], dict]:
        return generate_shard(engines, rows, n, sampling, on_progress)

    spec = JobSpec(
        COLUMNS,
        ROW_COLUMNS,
        settings,
        settings_fingerprint(settings),
        score,
        KIND,
    )

    def section(shards: list, counts: dict) -> dict:
        return {
            "command": opts.command,
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

    run = run_shards(folder, spec, ctx, opts, merging(out, spec, section))
    return ctx.on_main(lambda: _summary(out, run, time.perf_counter() - start))


def _summary(out: Path, run: Any, seconds: float) -> dict:
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
