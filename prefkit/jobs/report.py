"""What a sharded scoring job tells: its progress bar, its counts (from the finished shards' metadata) and each
worker's summary (:func:`worker_summary`, shared by `reflogps` and `score`)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefkit.jobs.plan import Shard, read_part_meta
from prefkit.progress import bar


@dataclass
class Tally:
    """What one worker did (summed over the ranks of a torchrun job): shards scored, of those taken over from
    an expired lease, leases lost to another worker, whether it merged, its scoring seconds, and the counts of
    the shards it scored."""

    scored: int = 0
    taken_over: int = 0
    lost: int = 0
    merged_here: bool = False
    seconds: float = 0.0
    counts: Counter = field(default_factory=Counter)

    def plus(self, other: Tally) -> Tally:
        """Two ranks' tallies together (ranks score in parallel: the longer time counts)."""
        return Tally(
            self.scored + other.scored,
            self.taken_over + other.taken_over,
            self.lost + other.lost,
            self.merged_here or other.merged_here,
            max(self.seconds, other.seconds),
            self.counts + other.counts,
        )


@dataclass
class JobRun:
    """What :func:`run_shards` did: every shard, those found finished when this worker started, OUT's manifest
    after the merge, this worker's tally, and ``outcome``: ``merged_here``, ``merged_elsewhere`` (another worker
    merged) or ``already_complete`` (OUT held this job's result before this worker started)."""

    shards: list[Shard]
    already: set[str]
    manifest: dict
    tally: Tally
    outcome: str


def worker_summary(run: JobRun, section: dict, seconds: float) -> dict:
    """What a worker reports of its run, shared by every sharded job's summary: time, this worker's rates (the
    pairs it scored), ``outcome`` and ``shards`` (total, resumed, scored, taken over, left to others, lost,
    whether it merged)."""
    tally = run.tally
    fresh, scoring = tally.counts, tally.seconds
    n = len(run.shards) or int(section.get("shards") or 0)
    resumed = n if run.outcome == "already_complete" else len(run.already)
    rated = bool(fresh.get("rows")) and scoring > 0
    return {
        "seconds": round(seconds, 3),
        "scoring_seconds": round(scoring, 3),
        "pairs_per_s": round(fresh["rows"] / scoring, 2) if rated else None,
        "tokens_per_s": round(fresh["tokens"] / scoring, 1) if rated else None,
        "outcome": run.outcome,
        "shards": {
            "total": n,
            "resumed": resumed,
            "scored": tally.scored,
            "taken_over": tally.taken_over,
            "by_others": max(0, n - resumed - tally.scored),
            "lost": tally.lost,
            "merged_here": tally.merged_here,
        },
    }


class JobProgress:
    """The progress bar (the main rank, interactive stderr): all pairs of the job, finished shards counted as
    they appear (whoever scored them), the shard being scored as its batches finish; this worker's tokens/s."""

    def __init__(self, shards: list[Shard], show: bool) -> None:
        self.rows = {s.name: s.rows for s in shards}
        self.counted: set[str] = set()
        self.base = 0
        self.partial = 0.0
        self.tokens = 0
        self.started = time.perf_counter()
        self.bar = bar(desc="scoring", total=sum(self.rows.values()), show=show, unit="pair")

    def __enter__(self) -> JobProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def sync(self, done: set[str]) -> None:
        for name in done - self.counted:
            self.counted.add(name)
            self.base += self.rows[name]
        self.partial = 0.0  # dropped rows are not scored: a finished shard counts whole
        self._show()

    def advance(self, pairs: float, tokens: int) -> None:
        self.partial += pairs  # the engine counts half pairs without prefix sharing
        self.tokens += tokens
        rate = self.tokens / max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix_str(f"{rate:,.0f} tok/s", refresh=False)
        self._show()

    def drop_partial(self) -> None:
        self.partial = 0.0
        self._show()

    def _show(self) -> None:
        n = min(self.base + int(self.partial), self.bar.total or 0)
        if n != self.bar.n:
            self.bar.update(n - self.bar.n)


def collect_counts(work: Path, shards: list[Shard], keys: tuple[str, ...]) -> dict:
    """Counts per split and in total from the finished shards' metadata (``dropped`` by reason), and how many
    distinct ``workers`` wrote them."""
    splits: dict[str, dict] = {}
    workers = set()
    for shard in shards:
        meta = read_part_meta(work / shard.name) or {}
        workers.add(meta.get("worker", meta.get("rank")))
        entry = splits.setdefault(shard.split, {k: 0 for k in keys} | {"dropped": {}})
        for k in keys:
            entry[k] += int(meta.get(k, 0))
        for reason, n in (meta.get("dropped") or {}).items():
            entry["dropped"][reason] = entry["dropped"].get(reason, 0) + n
    totals: dict[str, Any] = {k: sum(s[k] for s in splits.values()) for k in keys}
    totals["dropped"] = dict(sum((Counter(s["dropped"]) for s in splits.values()), Counter()))
    return {"splits": splits, "totals": totals, "workers": len(workers)}
