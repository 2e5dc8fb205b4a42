"""The prefkit CLI with slowed-down shards, for the multi-worker tests: ``python -m tests.slow_worker reflogps ...``.

Environment (read here only, never by prefkit):

* ``SLOW_WORKER_DELAY``: seconds of slow work before scoring each shard (the lease is held meanwhile; the work
  reports progress every 0.1 s, so the heartbeat keeps renewing it);
* ``SLOW_WORKER_STUCK=1``: the delay is a hang instead (no progress: a hung kernel, a deadlocked read);
* ``SLOW_WORKER_BARRIER``: ``DIR:N``: before its first shard, the worker writes ``DIR/<pid>`` and waits until N
  workers have (so every worker holds a lease when scoring starts).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def _barrier(spec: str, progress) -> None:
    folder, _, count = spec.rpartition(":")
    Path(folder, str(os.getpid())).write_text("")
    deadline = time.monotonic() + 120
    while len(os.listdir(folder)) < int(count) and time.monotonic() < deadline:
        time.sleep(0.02)
        progress(0, 0)  # waiting for the other workers is not a hang


def _slow(seconds: float, progress, stuck: bool) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(0.1, max(end - time.monotonic(), 0)))
        if not stuck:
            progress(0, 0)


def main() -> None:
    from prefkit.cli import main as cli
    from prefkit.reflogps import job

    delay = float(os.environ.get("SLOW_WORKER_DELAY", "0") or 0)
    barrier = os.environ.get("SLOW_WORKER_BARRIER")
    stuck = os.environ.get("SLOW_WORKER_STUCK") == "1"
    real = job.score_shard
    first = [True]

    def slow(*args, **kwargs):
        progress = kwargs.get("on_progress") or (lambda pairs, tokens: None)
        if first[0] and barrier:
            _barrier(barrier, progress)
        first[0] = False
        _slow(delay, progress, stuck)
        return real(*args, **kwargs)

    job.score_shard = slow
    cli(sys.argv[1:])


if __name__ == "__main__":
    main()
