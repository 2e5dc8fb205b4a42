"""Running a sharded scoring job over an output folder: the part shared by `reflogps` (reference log-probs)
and any other per-pair scoring that adds columns to a set.

A job is a :class:`JobSpec`: the columns it adds, the settings that decide their values (the fingerprint), and
how to score one shard's rows. :func:`run_shards` plans the shards and prepares the work folder (created, or
joined when another worker made it: :func:`prefkit.jobs.plan.prepare_work`), then works as one of any number
of workers (processes on machines that share OUT, torchrun ranks): it claims an unfinished shard with a lease
(:mod:`prefkit.jobs.leases`), scores it while a heartbeat renews the lease, writes its part atomically, and
claims the next. With nothing left to claim it waits for the shards other workers hold, taking over any whose
lease expires. Once every shard is finished, the worker that takes the merge lease calls ``finish`` (the merge,
:mod:`prefkit.jobs.merge`); the others wait until it is in place and report.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.errors import OutputError
from prefkit.jobs.leases import (
    MERGE_KEY,
    Heartbeat,
    Lease,
    LeaseBook,
    LeaseLost,
    LeaseWaits,
    Worker,
)
from prefkit.jobs.merge import PartsMissing, merge
from prefkit.jobs.plan import (
    WORK_DIR,
    Shard,
    WorkFolder,
    completed,
    finished_shards,
    plan_shards,
    prepare_work,
    read_work_settings,
    write_part,
)
from prefkit.jobs.report import JobProgress, JobRun, Tally, collect_counts
from prefkit.output import OutputFolder, read_output
from prefkit.record import decode_row
from prefkit.store.lock import out_lock

#: ``score(rows, on_progress) -> (column values, counts)`` for one shard; ``on_progress(pairs, tokens)``
ShardScorer = Callable[[list[dict], Any], tuple[dict[str, list], dict]]
#: ``finish(shards, counts, check) -> manifest``: merge the finished job; ``check()`` raises
#: :class:`~prefkit.jobs.leases.LeaseLost` when this worker no longer holds the merge lease (called just
#: before the result is swapped in)
Finish = Callable[[list[Shard], dict, Callable[[], None]], dict]
#: seconds a worker waits for the work folder or OUT to reappear (a swap, a concurrent restart) before failing
GONE_WAIT = 30.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobKind:
    """What one kind of job is, declared once by the package that runs it: the manifest section its merge writes
    (``name``), its work folder under OUT (one per kind, so an unfinished job of one kind never blocks another),
    what it adds in words (``label``: "reference log-prob" → "… already has reference log-prob columns") and the
    count keys its shards report."""

    name: str = "reflogps"
    work_dir: str = WORK_DIR
    label: str = "reference log-prob"
    count_keys: tuple[str, ...] = ("rows", "scored", "truncated", "completion_tokens", "tokens")


@dataclass(frozen=True)
class JobSpec:
    """What a scoring job adds and how: ``columns`` (name, Arrow type), ``row_columns`` the scorer reads,
    ``settings`` that decide the values (and their ``fingerprint``), ``score`` for one shard, and its ``kind``
    (:class:`JobKind`: section, work folder, label, count keys)."""

    columns: list[tuple[str, pa.DataType]]
    row_columns: tuple[str, ...]
    settings: dict
    fingerprint: str
    score: ShardScorer
    kind: JobKind = JobKind()
    #: the shards (``plan(folder, shard_rows)``); None: :func:`~prefkit.jobs.plan.plan_shards` (KTO cuts at its
    #: KL batch boundaries, :func:`prefkit.reflogps.kto.planner`)
    plan: Callable[[OutputFolder, int], list[Shard]] | None = None
    #: the top-level columns whose presence means OUT already holds this job's kind of result (default: the
    #: ``columns``; a job that rewrites an existing column, like scoring each completion, checks on its own)
    guard_columns: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.kind.name

    @property
    def work_dir(self) -> str:
        return self.kind.work_dir

    @property
    def label(self) -> str:
        return self.kind.label

    @property
    def count_keys(self) -> tuple[str, ...]:
        return self.kind.count_keys


class _WorkGone(Exception):
    """The work folder is gone (merged, or discarded by another run) or belongs to other settings now."""


class JobFlags(Protocol):
    """The flags every sharded job takes (:class:`prefkit.jobs.options.JobOptions`, which the options of
    `reflogps`, `score` and `generate` extend); read-only, so frozen option models match."""

    @property
    def shard_rows(self) -> int: ...
    @property
    def resume(self) -> bool: ...
    @property
    def overwrite(self) -> bool: ...
    @property
    def progress(self) -> bool: ...
    @property
    def lease_seconds(self) -> float: ...


def run_shards(
    folder: OutputFolder,
    spec: JobSpec,
    ctx: Any,
    flags: JobFlags,
    finish: Finish,
    record: dict | None = None,
) -> JobRun:
    """Plan, prepare (rank 0), then score shards as a lease-taking worker until the job is merged, here or by
    another worker. ``flags``: the job's shard size, resume/overwrite, progress bar and how long this worker's
    leases last without renewal; ``record``: extra JSON for settings.json. Raises OutputError (see
    :func:`~prefkit.jobs.plan.prepare_work`; the work folder removed under it) and the scorer's errors; under
    torchrun any rank's error is raised on every rank."""
    shards = spec.plan(folder, flags.shard_rows) if spec.plan else plan_shards(folder, flags.shard_rows)

    def prepare() -> tuple[dict | None, list[str]]:
        with out_lock(folder.path, spec.name):  # the work folder is made in OUT, not in a copy about to go
            prepared = _prepare(folder, spec, flags, record)
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
        outcome = _work(
            folder, spec, shards, worker, flags.lease_seconds, finish, flags.progress and ctx.is_main
        )
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


def merging(out: Path, spec: JobSpec, section: Callable[[list[Shard], dict], dict]) -> Finish:
    """The usual ``finish``: the manifest section ``section(shards, counts)`` makes, merged (:func:`~prefkit.reflogps
    .merge.merge`) with the spec's columns, settings, section name and work folder."""

    def finish(shards: list[Shard], counts: dict, check: Callable[[], None]) -> dict:
        return merge(
            out,
            shards,
            section(shards, counts),
            name=spec.name,
            columns=spec.columns,
            settings=spec.settings,
            check=check,
            work_dir=spec.work_dir,
        )

    return finish


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
    waited = LeaseWaits()
    run = None
    with JobProgress(shards, show) as prog:
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
                waited.say(book, {s.name.removesuffix(".parquet") for s in todo})
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
    prog: JobProgress,
    tally: Tally,
) -> bool:
    """Score a leased shard and write its part; False when the lease was lost (another worker has the shard)."""
    work = folder.path / spec.work_dir
    if finished_shards(work, [shard], spec.fingerprint):
        return True  # finished by another worker between our look and our lease
    if shard.split not in tables:
        tables[shard.split] = _read_rows(folder, shard.split, spec.row_columns, spec.name)
    rows = [decode_row(r) for r in tables[shard.split].slice(shard.start, shard.rows).to_pylist()]
    started = time.perf_counter()

    def on_progress(pairs: float, tokens: int) -> None:
        if lease.lost:
            raise LeaseLost(lease.key)
        lease.progressed()  # the heartbeat renews the lease only while this moves
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
    with out_lock(folder.path, spec.name):  # not into a copy of OUT another command is about to swap out
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
    waited = LeaseWaits()
    while True:
        _work_run(work, spec.fingerprint)
        try:
            lock = book.claim(MERGE_KEY)
        except FileNotFoundError:
            lock = None
        if lock is None:
            waited.say(book, {MERGE_KEY})
            time.sleep(poll)
            continue
        lock.watch_progress = False  # the merge reports no progress; its lease lives while this process does
        beat.add(lock)
        try:
            if len(finished_shards(work, shards, spec.fingerprint)) < len(shards):
                return None  # a part went missing since we looked: score it again
            manifest = finish(shards, collect_counts(work, shards, spec.count_keys), lock.check)
        except LeaseLost:
            continue  # our merge lease expired and another worker took the merge over
        except PartsMissing:
            return None  # a part was lost (to another command's swap of OUT): score it again
        except Exception:
            if lock.lost:
                continue
            raise
        finally:
            beat.remove(lock)
            lock.release()
        tally.merged_here = True
        return manifest


def _read_rows(folder: OutputFolder, split: str, columns: tuple[str, ...], name: str) -> pa.Table:
    """The split's ``columns``, read under OUT's lock from the data files OUT holds now (another command's merge
    may have renamed them since the job started; their rows are the same, which the merge checks)."""

    with out_lock(folder.path, name):
        current = read_output(folder.path)
        names = pq.read_schema(current.shards[split][0]).names
        return current.read_split(split, columns=[c for c in columns if c in names])


def _prepare(folder: OutputFolder, spec: JobSpec, flags: JobFlags, record: dict | None) -> Any:
    """:func:`~prefkit.jobs.plan.prepare_work` with the job's spec."""
    columns = [name for name, _ in spec.columns] if spec.guard_columns is None else list(spec.guard_columns)
    where = WorkFolder(spec.name, spec.work_dir, tuple(columns), spec.label)
    return prepare_work(
        folder.path,
        spec.settings,
        spec.fingerprint,
        resume=flags.resume,
        overwrite=flags.overwrite,
        record=record,
        where=where,
    )
