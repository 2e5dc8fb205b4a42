"""One writer lock per output folder: a `reflogps` merge and a `score` merge forced to overlap on one OUT both
land (the second waits for the first), the lock across processes, and the re-check before a swap."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from prefkit.store import lock as lock_mod
from prefkit.store.folder import FolderChanged, folder_identity, staged_folder
from prefkit.store.lock import lock_path, out_lock
from tests.reflogps_data import build_set
from tests.tinymodel import tiny_model_path

REF = ["ref_chosen_logps", "ref_rejected_logps", "chosen_tokens", "rejected_tokens"]
RM = ["rm_chosen", "rm_rejected", "rm_margin"]
ROOT = Path(__file__).resolve().parents[2]


def _reflogps(out: Path) -> None:
    from prefkit.reflogps import job

    job.reflogps(out, str(tiny_model_path()), max_length=96, shard_rows=8, device="cpu")


def _score(out: Path) -> None:
    import prefkit

    prefkit.score(out, str(tiny_model_path(reward=True)), max_length=160, shard_rows=8, device="cpu")


def _columns(out: Path) -> dict[str, list]:
    tables = [pq.read_table(p) for p in sorted((out / "data").glob("*.parquet"))]
    return {c: [v for t in tables for v in t.column(c).to_pylist()] for c in tables[0].column_names}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return build_set(tmp_path_factory.mktemp("built"), splits={"train": 14, "test": 6})


@pytest.fixture(scope="module")
def sequential(built, tmp_path_factory) -> dict[str, list]:
    """The columns of the set scored by reflogps, then score, one after the other."""
    out = tmp_path_factory.mktemp("seq") / "set"
    shutil.copytree(built, out)
    _reflogps(out)
    _score(out)
    return _columns(out)


@pytest.mark.parametrize("first", ["reflogps", "score"])
def test_overlapping_merges_keep_both_jobs_columns(first, built, sequential, tmp_path, monkeypatch):
    """The first job's merge is held between reading OUT and its swap while the second job runs whole: with one
    lock per OUT the second waits, and OUT ends with both jobs' columns (today's code lost the first's or the
    second's)."""
    from prefkit.jobs import merge as merge_mod

    out = tmp_path / "set"
    shutil.copytree(built, out)
    jobs = {"reflogps": _reflogps, "score": _score}
    second = "score" if first == "reflogps" else "reflogps"
    paused, second_done = threading.Event(), threading.Event()
    real = merge_mod.refresh_card
    errors: list[BaseException] = []

    def held(*args, **kwargs):
        if threading.current_thread().name == first and not paused.is_set():
            paused.set()
            second_done.wait(6)  # the other job runs meanwhile (or waits for our lock)
        return real(*args, **kwargs)

    monkeypatch.setattr(merge_mod, "refresh_card", held)

    def run(name: str) -> None:
        try:
            jobs[name](out)
        except BaseException as err:
            errors.append(err)
        finally:
            if name == second:
                second_done.set()

    one = threading.Thread(target=run, args=(first,), name=first)
    one.start()
    assert paused.wait(120)
    two = threading.Thread(target=run, args=(second,), name=second)
    two.start()
    one.join(180)
    two.join(180)
    assert not errors, errors
    got = _columns(out)
    for column in REF + RM:
        assert got.get(column) == pytest.approx(sequential[column], nan_ok=True), column
    assert not [p.name for p in out.iterdir() if p.name.endswith("-work")]
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_lock_is_held_across_processes(tmp_path):
    """A second process waits while the first holds OUT's lock, says whom it waits for, and gets it after."""
    out = tmp_path / "set"
    out.mkdir()
    code = (
        "import sys, time; from prefkit.store.lock import out_lock\n"
        "with out_lock(sys.argv[1], 'reflogps'):\n"
        "    print('held', flush=True); time.sleep(1.5)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    said: list[str] = []
    start = time.monotonic()
    with out_lock(out, "score", notify=said.append):
        waited = time.monotonic() - start
        assert lock_path(out).is_file()
    proc.wait(30)
    assert waited > 0.5
    assert said and "reflogps (pid" in said[0]
    assert not lock_path(out).exists()  # the holder removes it


def test_lock_is_reentrant_and_serialises_threads(tmp_path):
    out = tmp_path / "set"
    out.mkdir()
    order: list[str] = []
    with out_lock(out, "a"):
        with out_lock(out, "a again"):  # the holder's own call under its lock
            order.append("inner")
        other = threading.Thread(target=lambda: _take(out, order))
        other.start()
        time.sleep(0.3)
        order.append("outer")
    other.join(10)
    assert order == ["inner", "outer", "thread"]
    assert not lock_mod._held[out.resolve()][1]


def _take(out: Path, order: list[str]) -> None:
    with out_lock(out, "b", notify=None):
        order.append("thread")


def test_swap_refused_when_out_changed_since_read(built, tmp_path):
    """A writer that staged a copy of OUT does not swap it in over a folder someone replaced meanwhile."""
    out = tmp_path / "set"
    shutil.copytree(built, out)
    seen = folder_identity(out)
    with pytest.raises(FolderChanged, match="was replaced by another command while score wrote it"), staged_folder(out, overwrite=True, expect=seen, what="score") as stage:
        shutil.copytree(out, stage, dirs_exist_ok=True)
        (out / "prefkit.json").write_text((out / "prefkit.json").read_text() + " ")  # another writer
    assert (out / "data").is_dir()
