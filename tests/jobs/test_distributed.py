"""The torchrun process group (prefkit.jobs.distributed): a job leaves it cleanly, so a rank's exit cannot abort.

Two ranks under ``torch.distributed.run`` (gloo on the CPU) join through :func:`init_distributed`, import what a job
imports while the group exists (transformers' model code, which imports ``torch.distributed.nn``), exchange
objects, and leave. After the ``with`` block no gloo thread may be left: one that outlives the group runs into the
interpreter's exit, which then aborts now and then ("terminate called without an active exception", SIGABRT)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

RANK_SCRIPT = """
import json, os, sys
from pathlib import Path
from prefkit.jobs.distributed import init_distributed

def gloo_threads():
    names = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/comm") as f:
            names.append(f.read().strip())
    return sorted(n for n in names if "gloo" in n)

with init_distributed("cpu") as ctx:
    import transformers.modeling_utils  # noqa: F401  (imports torch.distributed.nn while the group exists)
    during = gloo_threads()
    ranks = ctx.gather(ctx.rank)
    first = ctx.on_main(lambda: "from rank 0")
report = {"rank": ctx.rank, "ranks": ranks, "first": first, "during": during, "after": gloo_threads()}
Path(sys.argv[1], f"rank{ctx.rank}.json").write_text(json.dumps(report))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread names from /proc (Linux)")
def test_two_ranks_leave_the_group_with_no_gloo_thread_left(tmp_path):
    pytest.importorskip("torch.distributed.run")
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)]
    cmd.append(str(tmp_path))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["rank"] for r in reports] == [0, 1]
    for report in reports:
        assert report["ranks"] == [0, 1] and report["first"] == "from rank 0"
        assert report["during"], "the group's gloo threads should run while it exists"
        assert report["after"] == [], f"rank {report['rank']}: gloo threads outlive the group: {report['after']}"
