"""Waits with no end: a Hub that accepts connections and never answers ends a command with one Error line after
the documented bound (PREFKIT_HUB_TIMEOUT); a lease is renewed only while its work progresses, a lease renewed in
the far future (clock skew) or corrupted obeys the reader's --lease-seconds, and a waiting worker names the shard
and holder it waits for."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from prefkit.jobs.leases import Heartbeat, LeaseBook, Worker, create_exclusive

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def silent_hub():
    """A server that accepts every connection and never answers (a hung proxy or Hub)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


def _cli(args: list[str], endpoint: str, timeout: str = "1") -> tuple[subprocess.CompletedProcess, float]:
    env = {
        **os.environ,
        "HF_ENDPOINT": endpoint,
        "PREFKIT_HUB_TIMEOUT": timeout,
        "PYTHONPATH": str(ROOT),
    }
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "prefkit", *args], capture_output=True, text=True, env=env, timeout=120
    )
    return proc, time.monotonic() - start


def _one_error(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "no answer within 1 s (PREFKIT_HUB_TIMEOUT)" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_hub_that_never_answers_ends_build_with_one_error(silent_hub, tmp_path):
    proc, seconds = _cli(["build", "me/hangs", "-o", str(tmp_path / "o")], silent_hub)
    _one_error(proc)
    assert seconds < 60  # 5 attempts of 1 s + backoff + start-up; without a timeout it never ends
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_hub_that_never_answers_ends_push_and_detect(silent_hub, tmp_path):
    from prefkit import build

    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    build(str(src), tmp_path / "set")
    for args in (["push", str(tmp_path / "set"), "me/hangs"], ["detect", "me/hangs"]):
        proc, seconds = _cli(args, silent_hub)
        _one_error(proc)
        assert seconds < 60


def test_the_hub_timeout_applies_to_calls_that_pass_none(silent_hub, monkeypatch):
    """HfApi's own calls pass ``timeout=None`` (no bound): the bound is filled in for every request."""
    from huggingface_hub import HfApi

    from prefkit import hub_client as hub

    monkeypatch.setenv("PREFKIT_HUB_TIMEOUT", "0.5")
    hub.bound_requests()
    start = time.monotonic()
    with pytest.raises(Exception, match=r"(?i)timed out") as err:
        HfApi(endpoint=silent_hub, token=False).dataset_info("me/x", timeout=None)
    assert "Timeout" in type(err.value).__name__ and time.monotonic() - start < 10
    assert hub.transient(err.value)
    monkeypatch.setenv("PREFKIT_HUB_TIMEOUT", "nan")
    assert hub.request_timeout() == hub.DEFAULT_TIMEOUT


# ------------------------------------------------------------------------------------------------ leases


@pytest.fixture
def books(tmp_path):
    (tmp_path / "leases").mkdir()
    with (
        LeaseBook(tmp_path, Worker.here(), seconds=0.6) as mine,
        LeaseBook(tmp_path, Worker.here(), 0.6) as other,
    ):
        yield mine, other


def test_a_stuck_holder_stops_renewing_and_its_shard_is_taken_over(books, caplog):
    mine, other = books
    lease = mine.claim("train-00001")
    with caplog.at_level(logging.WARNING), Heartbeat(0.6) as beat:
        beat.add(lease)
        deadline = time.monotonic() + 10
        taken = None
        while taken is None and time.monotonic() < deadline:  # no progress: renewals stop, the lease expires
            time.sleep(0.1)
            taken = other.claim("train-00001")
    assert taken is not None and taken.taken_over and not lease.held()
    assert "shard train-00001: no progress for" in caplog.text and "stops renewing" in caplog.text


def _foreign(book: LeaseBook, key: str, **fields) -> Path:
    record = {"worker": "w-far", "host": "elsewhere", "pid": 4242, "key": key, "lease_seconds": 0.6, **fields}
    path = book.path(key, 0)
    assert create_exclusive(path, json.dumps(record))
    return path


def test_a_lease_renewed_in_the_far_future_is_clock_skew_and_expired(books, caplog):
    _, other = books
    path = _foreign(other, "train-00002")
    future = time.time() + 3600
    os.utime(path, (future, future))
    with caplog.at_level(logging.WARNING):
        assert other.expired(path) is True
    assert "clock skew" in caplog.text and "elsewhere pid 4242" in caplog.text
    near = _foreign(other, "train-00003", lease_seconds=600)
    os.utime(near, (time.time() + 5, time.time() + 5))  # a little ahead, within its lease time: still held
    assert other.expired(near) is False


@pytest.mark.parametrize(
    "content", ["{not json", '{"lease_seconds": 1e12}', '{"lease_seconds": true}', "[5]"]
)
def test_a_corrupted_lease_lasts_the_readers_lease_seconds(books, content, caplog):
    _, other = books
    path = other.path("train-00004", 0)
    assert create_exclusive(path, content)
    assert other.expired(path) is False
    time.sleep(0.7)  # the reader's --lease-seconds (0.6), not 120 s or what the file claims
    with caplog.at_level(logging.WARNING):
        assert other.expired(path) is True
    taken = other.claim("train-00004")
    assert taken is not None and taken.taken_over


def test_a_waiting_worker_names_the_shard_and_its_holder(books, caplog):
    from prefkit.jobs.leases import MERGE_KEY, LeaseWaits

    _, other = books
    _foreign(other, "train-00005", lease_seconds=600)
    _foreign(other, MERGE_KEY, lease_seconds=600)
    waits = LeaseWaits()
    with caplog.at_level(logging.WARNING):
        waits.say(other, {"train-00005", "train-00009"})
        waits.next_look = 0
        waits.say(other, {"train-00005"})  # said once only
        LeaseWaits().say(other, {MERGE_KEY})
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("waiting for shard train-00005, held by elsewhere pid 4242 (worker w-far)")
    assert "taken over if its lease is not renewed for 600 s" in lines[0]
    assert len(lines) == 2 and lines[1].startswith("waiting for the merge, held by elsewhere pid 4242")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (0.1, "greater than or equal to 0.5"),
        (float("nan"), "must be a finite number"),
        (float("inf"), "must be a finite number"),
        (1e9, "less than or equal to 86400"),
        (True, "must be a number, not true"),
        ("abc", "valid number"),
    ],
)
def test_lease_seconds_out_of_bounds_is_refused(value, why):
    """Bounded by the option's own declaration (0.5 .. 86400 s), with what is wrong said (a string that is no
    number is not told it is out of range)."""
    from prefkit.errors import OptionError
    from prefkit.jobs.options import JobOptions

    with pytest.raises(OptionError, match=rf"lease_seconds=\.\.\.: .*{why}") as err:
        JobOptions.create(lease_seconds=value)
    assert err.value.text("cli")[0].startswith("--lease-seconds: ")


def test_lease_seconds_as_text_that_is_a_number_is_read_as_one():
    """A recipe's `lease_seconds: 1e3` is text to YAML 1.1; it is the number it spells, as a flag's would be."""
    from prefkit.jobs.options import JobOptions

    assert JobOptions.create(lease_seconds="1e3").lease_seconds == 1000.0
