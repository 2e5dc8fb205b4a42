"""The prefkit CLI with slowed-down shards, for the multi-worker tests: ``python -m tests.slow_worker reflogps ...``.

Environment (read here only, never by prefkit):

* ``SLOW_WORKER_DELAY``: seconds to sleep before scoring each shard (the lease is held meanwhile);
* ``SLOW_WORKER_BARRIER``: ``DIR:N``: before its first shard, the worker writes ``DIR/<pid>`` and waits until N
  workers have (so every worker holds a lease when scoring starts).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def _barrier(spec: str) -> None:
    folder, _, count = spec.rpartition(":")
    Path(folder, str(os.getpid())).write_text("")
    deadline = time.monotonic() + 120
    while len(os.listdir(folder)) < int(count) and time.monotonic() < deadline:
        time.sleep(0.02)


def main() -> None:
    from prefkit.cli import main as cli
    from prefkit.reflogps import job

    delay = float(os.environ.get("SLOW_WORKER_DELAY", "0") or 0)
    barrier = os.environ.get("SLOW_WORKER_BARRIER")
    real = job.score_shard
    first = [True]

    def slow(*args, **kwargs):
        if first[0] and barrier:
            _barrier(barrier)
        first[0] = False
        time.sleep(delay)
        return real(*args, **kwargs)

    job.score_shard = slow
    cli(sys.argv[1:])


if __name__ == "__main__":
    main()
