"""Start-up of the CLI: the median wall time and CPU time (user + system) of ``python -m prefkit ARGS`` over N runs,
for ``--help``, ``--version`` and every command's ``--help``.

    python benchmarks/startup.py                    # this checkout (or the installed prefkit), 10 runs each
    python benchmarks/startup.py --runs 20 --compare /path/to/other/checkout   # interleaved, the same load

``--compare`` runs another checkout's prefkit (through PYTHONPATH) alternately with this one, so both see the
same machine load. Which modules a command imports: ``python -X importtime -m prefkit build --help``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = ["build", "detect", "stats", "reflogps", "score", "verify", "push", "presets"]


def run_once(args: list[str], root: str | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``python -m prefkit ARGS``."""
    env = {**os.environ, **({"PYTHONPATH": root} if root else {})}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "prefkit", *args],
        env=env,
        cwd="/",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--compare", help="another checkout to time alternately (its root folder)")
    opts = parser.parse_args()
    here = str(Path(__file__).resolve().parent.parent)
    trees = {"this": here} if not opts.compare else {"other": opts.compare, "this": here}
    print(f"{'command':<18}" + "".join(f"{name + ' wall':>12}{name + ' cpu':>12}" for name in trees))
    for args in [["--help"], ["--version"], *([c, "--help"] for c in COMMANDS)]:
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for _ in range(opts.runs):
            for name, root in trees.items():
                times[name].append(run_once(args, root))
        row = f"{' '.join(args):<18}"
        for runs in times.values():
            row += f"{statistics.median(w for w, _ in runs):>11.3f}s{statistics.median(c for _, c in runs):>11.3f}s"
        print(row, flush=True)


if __name__ == "__main__":
    main()
