"""Leased shards: independent `prefkit reflogps` workers on one OUT (started together, killed, paused), --merge-only,
concurrent starts, and the lease primitives (exclusive claims, atomic take-over, heartbeat, dead holders)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from prefkit.errors import OutputError
from prefkit.jobs.leases import Heartbeat, LeaseBook, Worker, create_exclusive
from prefkit.jobs.plan import SETTINGS_NAME, prepare_work
from prefkit.reflogps import job
from tests.reflogps_data import build_set, data_columns, run_cli
from tests.tinymodel import tiny_model_path

MAX_LENGTH = 96
SHARD_ROWS = 4  # 22 + 8 rows: 8 shards
SHARDS = 8
REF = ["ref_chosen_logps", "ref_rejected_logps", "chosen_tokens", "rejected_tokens"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A pristine built set (train 22 rows + test 8, some too long for MAX_LENGTH); copy it before scoring."""
    return build_set(tmp_path_factory.mktemp("built"), splits={"train": 22, "test": 8})


@pytest.fixture
def fresh(built, tmp_path) -> Path:
    import shutil

    out = tmp_path / "set"
    shutil.copytree(built, out)
    return out


@pytest.fixture(scope="module")
def reference(built, tmp_path_factory) -> Path:
    """The set scored by one uninterrupted in-process worker (the same shards)."""
    import shutil

    out = tmp_path_factory.mktemp("ref") / "set"
    shutil.copytree(built, out)
    job.reflogps(out, str(tiny_model_path()), max_length=MAX_LENGTH, shard_rows=SHARD_ROWS, device="cpu")
    return out


def _clean(out: Path) -> None:
    """Nothing of the job is left: no work folder in OUT, no staging folder next to it."""
    assert not [p.name for p in out.iterdir() if p.name.startswith(job.WORK_DIR)]
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def _worker(
    out: Path, *extra: str, delay: float = 0.0, barrier: tuple[Path, int] | None = None, stuck: bool = False
):
    """A `prefkit reflogps` worker process (through tests.slow_worker: shards slowed by ``delay`` seconds of
    progressing work, or of a hang with ``stuck``, the first one held until ``barrier`` = (folder, workers)
    workers have reached it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "SLOW_WORKER_DELAY": str(delay)}
    env["SLOW_WORKER_STUCK"] = "1" if stuck else "0"
    if barrier:
        env["SLOW_WORKER_BARRIER"] = f"{barrier[0]}:{barrier[1]}"
    cmd = [
        sys.executable, "-m", "tests.slow_worker", "reflogps", str(out), "--model", str(tiny_model_path()),
        "--max-length", str(MAX_LENGTH), "--shard-rows", str(SHARD_ROWS), "--device", "cpu", "--json", "-q",
        *extra,
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _summary(proc: subprocess.Popen, timeout: float = 180) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    return json.loads(out)


def _wait_for(predicate, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _add_up(summary: dict) -> None:
    shards = summary["shards"]
    assert shards["total"] == SHARDS
    assert shards["resumed"] + shards["scored"] + shards["by_others"] == SHARDS


def test_two_workers_started_together_match_one(fresh, reference, tmp_path):
    """(a) Two independent processes on one OUT: both score shards, one merges, columns as with one process."""
    gate = tmp_path / "gate"
    gate.mkdir()
    procs = [_worker(fresh, delay=0.05, barrier=(gate, 2)) for _ in range(2)]
    first, second = (_summary(p) for p in procs)
    assert data_columns(fresh, REF) == data_columns(reference, REF)
    _clean(fresh)
    for s in (first, second):
        _add_up(s)
        assert s["shards"]["scored"] >= 1 and s["shards"]["taken_over"] == 0 and s["shards"]["lost"] == 0
        assert s["pairs"] == 30 and s["dropped"] == {"prompt_too_long": 4}
    assert first["shards"]["scored"] + second["shards"]["scored"] == SHARDS
    assert sorted([first["outcome"], second["outcome"]]) == ["merged_elsewhere", "merged_here"]
    assert [first["shards"]["merged_here"], second["shards"]["merged_here"]].count(True) == 1
    section = json.loads((fresh / "prefkit.json").read_text())["reflogps"]
    assert section["shards"] == SHARDS and section["fingerprint"] and section["result_fingerprint"]
    assert section["workers"] == 2 and first["workers"] == second["workers"] == 2


def test_killed_worker_costs_its_shard_only(fresh, reference, tmp_path):
    """(b) A worker killed (SIGKILL) mid-shard: the other takes its shard over, output identical."""
    gate = tmp_path / "gate"
    gate.mkdir()
    doomed = _worker(fresh, "--lease-seconds", "1", delay=600, barrier=(gate, 2))  # never finishes a shard
    survivor = _worker(fresh, "--lease-seconds", "1", delay=0.2, barrier=(gate, 2))
    work = fresh / job.WORK_DIR
    _wait_for(lambda: len(list(gate.iterdir())) == 2, what="both workers holding a shard")
    _wait_for(lambda: any(work.glob("*.parquet")), what="the survivor's first part")
    doomed.kill()
    doomed.wait(timeout=30)
    summary = _summary(survivor)
    assert summary["shards"] == {
        "total": SHARDS,
        "resumed": 0,
        "scored": SHARDS,
        "taken_over": 1,
        "by_others": 0,
        "lost": 0,
        "merged_here": True,
    }
    assert data_columns(fresh, REF) == data_columns(reference, REF)
    _clean(fresh)


def test_a_stuck_worker_stops_renewing_and_its_shard_is_taken_over(fresh, reference, tmp_path):
    """A worker whose scoring hangs (alive, its heartbeat thread running) stops renewing its lease once it makes
    no progress for --lease-seconds: another worker takes its shard over and finishes the job without it."""
    gate = tmp_path / "gate"
    gate.mkdir()
    stuck = _worker(fresh, "--lease-seconds", "1", delay=600, stuck=True, barrier=(gate, 2))
    try:
        survivor = _worker(fresh, "--lease-seconds", "1", delay=0.1, barrier=(gate, 2))
        out, err = survivor.communicate(timeout=180)
        assert survivor.returncode == 0, err[-3000:]
        summary = json.loads(out)
        assert summary["shards"]["taken_over"] == 1 and summary["shards"]["scored"] == SHARDS
        assert summary["outcome"] == "merged_here"
        assert data_columns(fresh, REF) == data_columns(reference, REF)
        assert stuck.poll() is None  # still hung, and its shard is done
        _, stuck_err = _kill(stuck)
        assert "no progress for" in stuck_err and "stops renewing its lease" in stuck_err
    finally:
        stuck.kill()


def _kill(proc: subprocess.Popen) -> tuple[str, str]:
    proc.kill()
    return proc.communicate(timeout=30)


@pytest.mark.slow
def test_paused_worker_loses_its_lease_and_gives_the_shard_up(fresh, reference, tmp_path):
    """(b) A worker that stops renewing (SIGSTOP) while its holder process is alive: its lease expires, another
    worker takes the shard over and merges; woken up, the first finds its lease lost and reports the merge."""
    gate = tmp_path / "gate"
    gate.mkdir()
    paused = _worker(fresh, "--lease-seconds", "1", delay=2, barrier=(gate, 2))
    other = _worker(fresh, delay=0.1, barrier=(gate, 2))
    _wait_for(lambda: len(list(gate.iterdir())) == 2, what="both workers holding a shard")
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        summary = _summary(other)
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    woken = _summary(paused)
    assert summary["shards"]["taken_over"] == 1 and summary["shards"]["merged_here"]
    assert summary["shards"]["scored"] == SHARDS
    assert woken["shards"]["lost"] == 1 and woken["shards"]["scored"] == 0
    assert woken["outcome"] == "merged_elsewhere" and not woken["shards"]["merged_here"]
    assert data_columns(fresh, REF) == data_columns(reference, REF)
    _clean(fresh)


def _killed_before_merging(*args) -> dict:
    raise KeyboardInterrupt("killed before merging")


def test_merge_only(fresh, reference, monkeypatch, capsys):
    """(c) --merge-only: refused (one line, with a hint) while shards are unfinished; merges a finished job
    without loading the model; a merged job is reported complete, also to a worker started after the merge (a
    late array task: nothing to do, no error)."""
    real = job.score_shard
    calls = []

    def interrupt_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed in the third shard")
        return real(*args, **kwargs)

    model = str(tiny_model_path())
    kwargs = {"max_length": MAX_LENGTH, "shard_rows": SHARD_ROWS, "device": "cpu"}
    monkeypatch.setattr(job, "score_shard", interrupt_third)
    with pytest.raises(KeyboardInterrupt, match="killed in the third shard"):
        job.reflogps(fresh, model, **kwargs)
    assert not list((fresh / job.WORK_DIR / "leases").iterdir())  # an interrupted worker releases its lease
    args = ["reflogps", str(fresh), "--model", model, "--merge-only"]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and "Traceback" not in err
    assert f"{SHARDS - 2} of {SHARDS} shard(s) are not finished" in err and "Hint: start workers" in err

    # every shard scored, but the worker dies before merging
    monkeypatch.setattr(job, "score_shard", real)
    monkeypatch.setattr(job, "_finisher", lambda *a: _killed_before_merging)
    with pytest.raises(KeyboardInterrupt, match="killed before merging"):
        job.reflogps(fresh, model, **kwargs)
    monkeypatch.undo()
    code, _, err = run_cli(["reflogps", str(fresh), "--model", "other-model", "--merge-only"], capsys)
    assert code == 1 and "pass the workers' --model" in err

    monkeypatch.setattr("prefkit.loading.model.load_model", lambda *a, **k: pytest.fail("loaded a model"))
    code, out, err = run_cli([*args, "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["shards"] == {
        "total": SHARDS,
        "resumed": SHARDS,
        "scored": 0,
        "taken_over": 0,
        "by_others": 0,
        "lost": 0,
        "merged_here": True,
    }
    assert data_columns(fresh, REF) == data_columns(reference, REF)
    _clean(fresh)
    code, out, err = run_cli([*args, "--json"], capsys)
    assert code == 0 and json.loads(out)["outcome"] == "already_complete", err
    monkeypatch.undo()
    late = job.reflogps(fresh, model, **kwargs)
    assert late["outcome"] == "already_complete" and late["shards"]["resumed"] == SHARDS


def _prepare(out: Path, fingerprint: str = "f" * 64, **kw):
    settings = {"model": "m", "max_length": MAX_LENGTH, "fp": fingerprint}
    return prepare_work(out, settings, fingerprint, resume=kw.pop("resume", True), overwrite=False, **kw)


def test_concurrent_start_with_the_same_settings_joins(fresh):
    """(d) Workers preparing the work folder at once: one creates settings.json, the others join, none errs."""
    results: list = []
    errors: list = []
    start = threading.Barrier(8)

    def prepare() -> None:
        start.wait()
        try:
            results.append(_prepare(fresh))
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=prepare) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 8
    assert sum(p.created for p in results) == 1
    assert json.loads((fresh / job.WORK_DIR / SETTINGS_NAME).read_text())["fingerprint"] == "f" * 64

    # other settings are refused; --overwrite / --no-resume never discard a folder live workers use
    with pytest.raises(OutputError, match="other settings"):
        _prepare(fresh, "e" * 64)
    book = LeaseBook(fresh / job.WORK_DIR, Worker.here(), seconds=60)
    with book:
        lease = book.claim("train-00000")
        assert lease is not None
        with pytest.raises(OutputError, match="held by live workers"):
            prepare_work(fresh, {}, "e" * 64, resume=True, overwrite=True)
        with pytest.raises(OutputError, match="held by live workers"):
            _prepare(fresh, resume=False)
    # the holder is gone (not active in this process any more): its lease no longer protects the folder
    assert prepare_work(fresh, {}, "e" * 64, resume=True, overwrite=True).created


def test_claims_are_exclusive_and_take_over_is_atomic(tmp_path):
    (tmp_path / "leases").mkdir()
    books = [LeaseBook(tmp_path, Worker.here(), seconds=60) for _ in range(12)]

    def race(key: str) -> list:
        won: list = []
        gate = threading.Barrier(len(books))

        def claim(book: LeaseBook) -> None:
            gate.wait()
            lease = book.claim(key)
            if lease is not None:
                won.append(lease)

        threads = [threading.Thread(target=claim, args=(b,)) for b in books]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return won

    for book in books:
        book.__enter__()
    try:
        (first,) = race("train-00001")
        assert first.generation == 0 and not first.taken_over and first.held()
        assert race("train-00001") == []  # live: nobody takes it
        os.utime(first.path, (time.time() - 120, time.time() - 120))  # not renewed for longer than its lease
        (taker,) = race("train-00001")
        assert taker.generation == 1 and taker.taken_over  # any book may win, the old holder too
        assert not first.held() and first.lost  # the old holder sees it lost and gives the shard up
        assert [p.name for p in (tmp_path / "leases").iterdir()] == ["train-00001~1.lease"]
        first.release()  # releasing a lost lease leaves the new holder's file alone
        assert taker.held()
        taker.release()
        assert list((tmp_path / "leases").iterdir()) == []
    finally:
        for book in books:
            book.__exit__()


def test_heartbeat_keeps_a_short_lease_alive_and_dead_holders_expire(tmp_path):
    (tmp_path / "leases").mkdir()
    with LeaseBook(tmp_path, Worker.here(), seconds=0.6) as mine, LeaseBook(tmp_path, Worker.here()) as other:
        lease = mine.claim("k")
        with Heartbeat(0.6) as beat:
            beat.add(lease)
            for _ in range(15):  # the holder's work progresses: the heartbeat keeps the lease
                time.sleep(0.1)
                lease.progressed()
            assert other.claim("k") is None and lease.held()
        time.sleep(0.8)  # no heartbeat: expired
        taken = other.claim("k")
        assert taken is not None and taken.taken_over and not lease.held()

        # a holder that is a dead process on this machine: expired at once, whatever its lease time
        done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
        dead = {**other.worker.record(), "worker": "gone", "pid": int(done.stdout), "lease_seconds": 3600}
        assert create_exclusive(other.path("d", 0), json.dumps(dead))
        assert other.expired(other.path("d", 0)) is (other.worker.boot is not None)
        # one on another machine is trusted until its lease time has passed
        far = {**dead, "host": "elsewhere"}
        assert create_exclusive(other.path("e", 0), json.dumps(far))
        assert other.expired(other.path("e", 0)) is False
        assert not create_exclusive(other.path("e", 0), "{}")  # exists: not replaced
        assert [p for p in (tmp_path / "leases").iterdir() if p.name.startswith(".")] == []


def _torchrun(out: Path, delay: float) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "SLOW_WORKER_DELAY": str(delay)}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "tests.slow_worker", "reflogps", str(out), "--model", str(tiny_model_path()),
        "--max-length", str(MAX_LENGTH), "--shard-rows", str(SHARD_ROWS), "--device", "cpu", "--json", "-q",
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _lease_of_rank(work: Path, rank: int) -> dict | None:
    for path in (work / "leases").glob("*.lease"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("rank") == rank:
            return record
    return None


@pytest.mark.slow
def test_torchrun_lost_rank_is_taken_over_when_run_again(fresh, reference):
    """A torchrun rank killed mid-shard stops the torchrun job; run again, its ranks take the dead ranks' leases
    over at once (same machine, dead processes) and the output is the one-process output."""
    pytest.importorskip("torch.distributed.run")
    work = fresh / job.WORK_DIR
    first = _torchrun(fresh, delay=1.0)
    held: list = [None]

    def rank_1_holds_a_shard_after_a_part() -> bool:
        held[0] = _lease_of_rank(work, 1)
        return held[0] is not None and any(work.glob("*.parquet"))

    _wait_for(rank_1_holds_a_shard_after_a_part, what="rank 1 holding a shard")
    os.kill(held[0]["pid"], signal.SIGKILL)
    first.communicate(timeout=120)
    assert first.returncode != 0 and list((work / "leases").glob("*.lease"))
    summary = _summary(_torchrun(fresh, delay=0))
    assert summary["outcome"] == "merged_here" and summary["shards"]["taken_over"] >= 1
    assert summary["shards"]["resumed"] >= 1 and summary["world_size"] == 2
    assert data_columns(fresh, REF) == data_columns(reference, REF)
    _clean(fresh)
