"""Running a sharded scoring job over an output folder: the part shared by `reflogps` (reference log-probs)
and any other per-pair scoring that adds columns to a set.

A job is a :class:`JobSpec`: the columns it adds, the settings that decide their values (the fingerprint), and
how to score one shard's rows. :func:`run_shards` plans the shards and prepares the work folder (created, or
joined when another worker made it: :func:`prefkit.reflogps.plan.prepare_work`), then works as one of any number
of workers (processes on machines that share OUT, torchrun ranks): it claims an unfinished shard with a lease
(:mod:`prefkit.reflogps.leases`), scores it while a heartbeat renews the lease, writes its part atomically, and
claims the next. With nothing left to claim it waits for the shards other workers hold, taking over any whose
lease expires. Once every shard is finished, the worker that takes the merge lease calls ``finish`` (the merge,
:mod:`prefkit.reflogps.merge`); the others wait until it is in place and report.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.errors import OutputError
from prefkit.output import OutputFolder
from prefkit.record import decode_row
from prefkit.reflogps.leases import DEFAULT_LEASE_SECONDS, Heartbeat, Lease, LeaseBook, LeaseLost, Worker
from prefkit.reflogps.plan import (
    WORK_DIR,
    Shard,
    completed,
    finished_shards,
    plan_shards,
    prepare_work,
    read_part_meta,
    read_work_settings,
    write_part,
)

#: ``score(rows, on_progress) -> (column values, counts)`` for one shard; ``on_progress(pairs, tokens)``
ShardScorer = Callable[[list[dict], Any], tuple[dict[str, list], dict]]
#: ``finish(shards, counts, check) -> manifest``: merge the finished job; ``check()`` raises
#: :class:`~prefkit.reflogps.leases.LeaseLost` when this worker no longer holds the merge lease (called just
#: before the result is swapped in)
Finish = Callable[[list[Shard], dict, Callable[[], None]], dict]
#: the lease key of the merge (a shard's key is its split and index, e.g. ``train-00003``)
MERGE_KEY = "merge"
#: seconds a worker waits for the work folder or OUT to reappear (a swap, a concurrent restart) before failing
GONE_WAIT = 30.0


@dataclass
class JobSpec:
    """What a scoring job adds and how: ``columns`` (name, Arrow type), ``row_columns`` the scorer reads,
    ``settings`` that decide the values, ``score`` for one shard, the count keys its shards report, and the
    manifest section ``name`` the merge writes."""

    columns: list[tuple[str, pa.DataType]]
    row_columns: tuple[str, ...]
    settings: dict
    fingerprint: str
    score: ShardScorer
    count_keys: tuple[str, ...] = ("rows", "scored", "truncated", "completion_tokens", "tokens")
    name: str = "reflogps"
    #: the work folder under OUT (one per kind of job, so an unfinished job of one kind never blocks another)
    work_dir: str = WORK_DIR
    #: what the job adds, for messages ("reference log-prob" → "… already has reference log-prob columns")
    label: str = "reference log-prob"


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


class _WorkGone(Exception):
    """The work folder is gone (merged, or discarded by another run) or belongs to other settings now."""


def run_shards(
    folder: OutputFolder,
    spec: JobSpec,
    ctx: Any,
    *,
    shard_rows: int,
    resume: bool,
    overwrite: bool,
    progress: bool,
    finish: Finish,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    record: dict | None = None,
) -> JobRun:
    """Plan, prepare (rank 0), then score shards as a lease-taking worker until the job is merged, here or by
    another worker. ``lease_seconds``: how long this worker's leases last without renewal; ``record``: extra JSON
    for settings.json. Raises OutputError (see :func:`~prefkit.reflogps.plan.prepare_work`; the work folder
    removed under it) and the scorer's errors; under torchrun any rank's error is raised on every rank."""
    shards = plan_shards(folder, shard_rows)

    def prepare() -> tuple[dict | None, list[str]]:
        prepared = prepare_work(
            folder.path,
            spec.settings,
            spec.fingerprint,
            resume=resume,
            overwrite=overwrite,
            name=spec.name,
            record=record,
            work_dir=spec.work_dir,
            columns=[name for name, _ in spec.columns],
            label=spec.label,
        )
        if prepared.manifest is not None:
            return prepared.manifest, [s.name for s in shards]
        return None, sorted(finished_shards(prepared.work, shards, spec.fingerprint))

    manifest, found = ctx.on_main(prepare)
    if manifest is not None:
        return JobRun(shards, set(found), manifest, Tally(), "already_complete")
    worker = Worker.here(ctx.rank)
    outcome: tuple[dict, Tally] | None = None
    error: BaseException | None = None
    try:
        outcome = _work(folder, spec, shards, worker, lease_seconds, finish, progress and ctx.is_main)
    except BaseException as err:  # re-raised on every rank by check_all
        error = err
    ctx.check_all(error)
    assert outcome is not None
    manifest, tally = outcome
    ranks = ctx.gather(tally)
    total = ranks[0]
    for other in ranks[1:]:
        total = total.plus(other)
    return JobRun(
        shards, set(found), manifest, total, "merged_here" if total.merged_here else "merged_elsewhere"
    )


def merge_finished(
    folder: OutputFolder, spec: JobSpec, shards: list[Shard], finish: Finish, lease_seconds: float
) -> JobRun:
    """``--merge-only``: merge a job whose shards are all finished, unless another worker merges it first (then
    wait for that). Raises OutputError naming the unfinished shards."""
    work = folder.path / spec.work_dir
    done = finished_shards(work, shards, spec.fingerprint)
    missing = [s.name for s in shards if s.name not in done]
    if missing:
        raise OutputError(
            f"{len(missing)} of {len(shards)} shard(s) are not finished yet ({', '.join(missing[:3])}"
            + (", …)" if len(missing) > 3 else ")"),
            "start workers with the same command without --merge-only (or wait for them): they score the rest "
            "and the last one merges",
        )
    tally = Tally()
    poll = _poll(lease_seconds)
    with LeaseBook(work, Worker.here(), lease_seconds) as book, Heartbeat(lease_seconds) as beat:
        try:
            manifest = _merge_or_wait(folder.path, spec, shards, book, beat, finish, poll, tally)
            if manifest is None:
                raise OutputError(
                    f"a shard of {work} went missing while this worker merged", "rerun the workers' command"
                )
        except _WorkGone:
            manifest = _after_gone(folder.path, spec, time.monotonic() + GONE_WAIT, poll)
            if manifest is None:  # workers started over in a new work folder meanwhile
                raise OutputError(
                    f"{work} was replaced while this worker was merging", "let its workers finish it"
                ) from None
    return JobRun(shards, done, manifest, tally, "merged_here" if tally.merged_here else "merged_elsewhere")


def _poll(lease_seconds: float) -> float:
    """Seconds between looks at the work folder while waiting for other workers (a look is a listing of the
    work folder and of the lease folder, and a read of the leases held: cheap on a shared file system)."""
    return min(1.0, max(0.05, lease_seconds / 8))


def _work(
    folder: OutputFolder,
    spec: JobSpec,
    shards: list[Shard],
    worker: Worker,
    lease_seconds: float,
    finish: Finish,
    show: bool,
) -> tuple[dict, Tally]:
    """This worker's part: score shards until none is left, then merge or wait for the merge."""
    out = folder.path
    tally = Tally()
    poll = _poll(lease_seconds)
    with LeaseBook(out / spec.work_dir, worker, lease_seconds) as book, Heartbeat(lease_seconds) as beat:
        while True:
            try:
                _score_all(folder, spec, shards, book, beat, tally, show, poll)
                manifest = _merge_or_wait(out, spec, shards, book, beat, finish, poll, tally)
                if manifest is not None:
                    return manifest, tally
            except _WorkGone:
                manifest = _after_gone(out, spec, time.monotonic() + GONE_WAIT, poll)
                if manifest is not None:
                    return manifest, tally


def _after_gone(out: Path, spec: JobSpec, deadline: float, poll: float) -> dict | None:
    """After the work folder went away: OUT's manifest when this job was merged; None when a folder with this
    job's settings is back (keep working); OutputError when other settings took it over or it stays gone."""
    while True:
        manifest = completed(out, spec.name, spec.fingerprint)
        if manifest is not None:
            return manifest
        info = read_work_settings(out / spec.work_dir)
        if info and info.get("fingerprint") == spec.fingerprint:
            return None
        if info or time.monotonic() > deadline:
            raise OutputError(
                f"{out / spec.work_dir} was "
                + ("taken over by a run with other settings" if info else "removed")
                + " while this worker was scoring, and OUT does not hold this job's result",
                "another run used --overwrite or --no-resume; rerun this command to start again",
            )
        time.sleep(min(poll, 1.0))


def _work_run(work: Path, fingerprint: str) -> str:
    """The work folder's run id; raises _WorkGone unless the folder is still this job's."""
    info = read_work_settings(work)
    if not info or info.get("fingerprint") != fingerprint:
        raise _WorkGone
    return str(info.get("run"))


def _score_all(
    folder: OutputFolder,
    spec: JobSpec,
    shards: list[Shard],
    book: LeaseBook,
    beat: Heartbeat,
    tally: Tally,
    show: bool,
    poll: float,
) -> None:
    """Claim and score shards until every shard is finished (by any worker)."""
    work = folder.path / spec.work_dir
    tables: dict[str, pa.Table] = {}
    done: set[str] = set()
    run = None
    with _Progress(shards, show) as prog:
        while True:
            current = _work_run(work, spec.fingerprint)
            if current != run:  # a folder replaced by a same-settings one starts empty
                run, done = current, set()
            done |= _newly_finished(work, [s for s in shards if s.name not in done], spec.fingerprint)
            prog.sync(done)
            todo = [s for s in shards if s.name not in done]
            if not todo:
                return
            claimed = _claim(book, todo)
            if claimed is None:
                time.sleep(poll)  # the rest is held by live workers: wait, take over what expires
                continue
            shard, lease = claimed
            beat.add(lease)
            try:
                if _score_one(folder, spec, shard, lease, tables, prog, tally):
                    done.add(shard.name)
            finally:
                beat.remove(lease)
                lease.release()


def _newly_finished(work: Path, pending: list[Shard], fingerprint: str) -> set[str]:
    """Which of ``pending`` are finished now: one listing of the work folder, then only the new part files are
    read (a shared file system is asked little however many shards there are)."""
    try:
        present = set(os.listdir(work))
    except FileNotFoundError:
        raise _WorkGone from None
    return finished_shards(work, [s for s in pending if s.name in present], fingerprint)


def _claim(book: LeaseBook, todo: list[Shard]) -> tuple[Shard, Lease] | None:
    """The first unfinished shard this worker can lease (free, or its lease expired), or None."""
    try:
        scan = book.scan()
        for shard in todo:
            lease = book.claim(shard.name.removesuffix(".parquet"), scan)
            if lease is not None:
                return shard, lease
    except FileNotFoundError:  # the work folder went away; the next pass finds out why
        return None
    return None


def _score_one(
    folder: OutputFolder,
    spec: JobSpec,
    shard: Shard,
    lease: Lease,
    tables: dict[str, pa.Table],
    prog: _Progress,
    tally: Tally,
) -> bool:
    """Score a leased shard and write its part; False when the lease was lost (another worker has the shard)."""
    work = folder.path / spec.work_dir
    if finished_shards(work, [shard], spec.fingerprint):
        return True  # finished by another worker between our look and our lease
    if shard.split not in tables:
        tables[shard.split] = _read_rows(folder, shard.split, spec.row_columns)
    rows = [decode_row(r) for r in tables[shard.split].slice(shard.start, shard.rows).to_pylist()]
    started = time.perf_counter()

    def on_progress(pairs: float, tokens: int) -> None:
        if lease.lost:
            raise LeaseLost(lease.key)
        prog.advance(pairs, tokens)

    try:
        values, counts = spec.score(rows, on_progress)
        lease.check()
    except LeaseLost:
        tally.lost += 1
        prog.drop_partial()
        return False
    seconds = time.perf_counter() - started
    meta = {
        "fingerprint": spec.fingerprint,
        "split": shard.split,
        "index": shard.index,
        "start": shard.start,
        "stop": shard.stop,
        "seconds": round(seconds, 3),
        "rank": lease.book.worker.rank,
        "worker": lease.book.worker.id,
        **counts,
    }
    write_part(work / shard.name, values, meta, spec.columns)
    tally.scored += 1
    tally.taken_over += lease.taken_over
    tally.seconds += seconds
    tally.counts.update({k: v for k, v in counts.items() if isinstance(v, int)})
    return True


def _merge_or_wait(
    out: Path,
    spec: JobSpec,
    shards: list[Shard],
    book: LeaseBook,
    beat: Heartbeat,
    finish: Finish,
    poll: float,
    tally: Tally,
) -> dict | None:
    """Every shard is finished: take the merge lease and merge, or wait while another worker holds it (taking it
    over if it expires). Returns the merged manifest, or None when a shard is unfinished after all (a part file
    was removed); raises _WorkGone once another worker's merge replaced OUT."""
    work = out / spec.work_dir
    while True:
        _work_run(work, spec.fingerprint)
        try:
            lock = book.claim(MERGE_KEY)
        except FileNotFoundError:
            lock = None
        if lock is None:
            time.sleep(poll)
            continue
        beat.add(lock)
        try:
            if len(finished_shards(work, shards, spec.fingerprint)) < len(shards):
                return None  # a part went missing since we looked: score it again
            manifest = finish(shards, collect_counts(work, shards, spec.count_keys), lock.check)
        except LeaseLost:
            continue  # our merge lease expired and another worker took the merge over
        except Exception:
            if lock.lost:
                continue
            raise
        finally:
            beat.remove(lock)
            lock.release()
        tally.merged_here = True
        return manifest


def _read_rows(folder: OutputFolder, split: str, columns: tuple[str, ...]) -> pa.Table:
    names = pq.read_schema(folder.shards[split][0]).names
    return folder.read_split(split, columns=[c for c in columns if c in names])


class _Progress:
    """The progress bar (the main rank, interactive stderr): all pairs of the job, finished shards counted as
    they appear (whoever scored them), the shard being scored as its batches finish; this worker's tokens/s."""

    def __init__(self, shards: list[Shard], show: bool) -> None:
        from prefkit.progress import bar

        self.rows = {s.name: s.rows for s in shards}
        self.counted: set[str] = set()
        self.base = 0
        self.partial = 0.0
        self.tokens = 0
        self.started = time.perf_counter()
        self.bar = bar(desc="scoring", total=sum(self.rows.values()), show=show, unit="pair")

    def __enter__(self) -> _Progress:
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
