"""Running a sharded scoring job over an output folder: the part shared by `reflogps` (reference log-probs)
and any other per-pair scoring that adds columns to a set.

A job is a :class:`JobSpec`: the columns it adds, the settings that decide their values (the fingerprint), and
how to score one shard's rows. :func:`run_shards` plans the shards, prepares the work folder (resuming finished
shards with the same fingerprint), scores this process's share (``torchrun`` ranks split the shards), and
collects the counts; the caller merges (:mod:`prefkit.reflogps.merge`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.errors import OutputError
from prefkit.output import OutputFolder
from prefkit.reflogps.plan import (
    WORK_DIR,
    Shard,
    finished_shards,
    plan_shards,
    prepare_work,
    read_part_meta,
    write_part,
)

#: ``score(rows, on_progress) -> (column values, counts)`` for one shard; ``on_progress(pairs, tokens)``
ShardScorer = Callable[[list[dict], Any], tuple[dict[str, list], dict]]


@dataclass
class JobSpec:
    """What a scoring job adds and how: ``columns`` (name, Arrow type), ``row_columns`` the scorer reads,
    ``settings`` that decide the values, ``score`` for one shard, and the count keys its shards report."""

    columns: list[tuple[str, pa.DataType]]
    row_columns: tuple[str, ...]
    settings: dict
    fingerprint: str
    score: ShardScorer
    count_keys: tuple[str, ...] = ("rows", "scored", "truncated", "completion_tokens", "tokens")
    #: the work folder under OUT (one per kind of job, so an unfinished job of one kind never blocks another)
    work_dir: str = WORK_DIR
    #: what the job adds, for messages ("reference log-prob" → "… already has reference log-prob columns")
    label: str = "reference log-prob"


@dataclass
class JobRun:
    """What :func:`run_shards` did: every shard, those found finished, counts (all / this run), seconds."""

    shards: list[Shard]
    already: set[str]
    counts: dict
    fresh: dict
    scoring_seconds: float


def run_shards(
    folder: OutputFolder,
    spec: JobSpec,
    ctx: Any,
    *,
    shard_rows: int,
    resume: bool,
    overwrite: bool,
    progress: bool,
) -> JobRun:
    """Plan, prepare (rank 0), score this rank's unfinished shards, and collect the counts (rank 0)."""
    out = folder.path
    shards = plan_shards(folder, shard_rows)

    def prepare() -> list[str]:
        work = prepare_work(
            out,
            spec.settings,
            spec.fingerprint,
            resume=resume,
            overwrite=overwrite,
            work_dir=spec.work_dir,
            columns=[name for name, _ in spec.columns],
            label=spec.label,
        )
        return sorted(finished_shards(work, shards, spec.fingerprint))

    already = set(ctx.on_main(prepare))
    mine = [s for s in shards if s.number % ctx.world_size == ctx.rank and s.name not in already]
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        _score_shards(folder, spec, mine, ctx, progress)
    except BaseException as err:  # re-raised on every rank by check_all
        error = err
    ctx.check_all(error)
    seconds = time.perf_counter() - started

    def collect() -> tuple[dict, dict]:
        work = out / spec.work_dir
        missing = [s.name for s in shards if s.name not in finished_shards(work, shards, spec.fingerprint)]
        if missing:
            raise OutputError(
                f"{len(missing)} shard(s) were not scored: {', '.join(missing[:5])}",
                "rerun the same command to finish them",
            )
        fresh = collect_counts(work, [s for s in shards if s.name not in already], spec.count_keys)
        return collect_counts(work, shards, spec.count_keys), fresh["totals"]

    counts, fresh = ctx.on_main(collect)
    return JobRun(shards, already, counts, fresh, seconds)


def _read_rows(folder: OutputFolder, split: str, columns: tuple[str, ...]) -> pa.Table:
    names = pq.read_schema(folder.shards[split][0]).names
    return folder.read_split(split, columns=[c for c in columns if c in names])


def _score_shards(folder: OutputFolder, spec: JobSpec, mine: list[Shard], ctx: Any, progress: bool) -> None:
    from prefkit.progress import bar

    work = folder.path / spec.work_dir
    tables = {
        split: _read_rows(folder, split, spec.row_columns) for split in dict.fromkeys(s.split for s in mine)
    }
    show = progress and ctx.is_main
    desc = "scoring" if not ctx.active else f"scoring (rank 0 of {ctx.world_size})"
    started = time.perf_counter()
    state = {"tokens": 0, "pairs": 0.0, "rows": 0}
    with bar(desc=desc, total=sum(s.rows for s in mine), show=show, unit="pair") as pbar:

        def on_progress(pairs: float, tokens: int) -> None:
            state["tokens"] += tokens
            state["pairs"] += pairs  # the engine counts half pairs without prefix sharing
            pbar.update(int(state["pairs"]) - pbar.n)
            rate = state["tokens"] / max(time.perf_counter() - started, 1e-9)
            pbar.set_postfix_str(f"{rate:,.0f} tok/s", refresh=False)

        for shard in mine:
            t0 = time.perf_counter()
            rows = tables[shard.split].slice(shard.start, shard.rows).to_pylist()
            values, counts = spec.score(rows, on_progress if show else None)
            meta = {
                "fingerprint": spec.fingerprint,
                "split": shard.split,
                "index": shard.index,
                "start": shard.start,
                "stop": shard.stop,
                "seconds": round(time.perf_counter() - t0, 3),
                "rank": ctx.rank,
                **counts,
            }
            write_part(work / shard.name, values, meta, spec.columns)
            state["rows"] += shard.rows
            if show:  # dropped rows are not scored: bring the bar to the shard's end
                state["pairs"] = float(state["rows"])
                pbar.update(max(0, state["rows"] - pbar.n))


def collect_counts(work: Path, shards: list[Shard], keys: tuple[str, ...]) -> dict:
    """Counts per split and in total from the finished shards' metadata (``dropped`` by reason)."""
    splits: dict[str, dict] = {}
    for shard in shards:
        meta = read_part_meta(work / shard.name) or {}
        entry = splits.setdefault(shard.split, {k: 0 for k in keys} | {"dropped": {}})
        for k in keys:
            entry[k] += int(meta.get(k, 0))
        for reason, n in (meta.get("dropped") or {}).items():
            entry["dropped"][reason] = entry["dropped"].get(reason, 0) + n
    totals: dict[str, Any] = {k: sum(s[k] for s in splits.values()) for k in keys}
    totals["dropped"] = dict(sum((Counter(s["dropped"]) for s in splits.values()), Counter()))
    return {"splits": splits, "totals": totals}
