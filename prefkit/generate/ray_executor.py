"""``--executor ray`` (the optional extra ``prefkit[ray]``): the job's workers as Ray tasks, on a local Ray
instance or a cluster (``ray_address``, e.g. ``ray://head:10001`` or ``auto``).

Each task runs the same `generate` call as one worker (:func:`prefkit.generate.job.generate`): it leases shards
of the work folder, generates them and writes them, and the task that finds every shard finished merges: the
sharded job machinery (:mod:`prefkit.jobs.runner`) does the scheduling, Ray only places the workers (one
GPU each when the cluster has GPUs). OUT must be on storage every node reaches (as for Slurm arrays). A task
killed by Ray costs its shard only: its lease expires and another task takes the shard over.
"""

from __future__ import annotations

import importlib
from typing import Any

from prefkit.errors import require

#: the job function a task runs (``module:function``); any sharded job's worker call fits (`score`, `reflogps`)
GENERATE = "prefkit.generate.job:generate"


def _worker(target: str, call: dict) -> dict:
    module, _, name = target.partition(":")
    result = getattr(importlib.import_module(module), name)(**call)
    return result.to_dict() if hasattr(result, "to_dict") else result


def run_on_ray(
    call: dict, workers: int | None, address: str | None, seconds: float, target: str = GENERATE
) -> dict:
    """Run ``workers`` copies of the job ``call`` (keywords of ``target``, a sharded job's function) as Ray tasks
    (default: one per GPU of the cluster, or one) and return the summary of the task that merged, with
    ``executor``, ``ray_tasks`` (every task's ``shards``). Raises DependencyError without Ray."""
    ray = require("ray", "--executor ray")
    started = ray.is_initialized()
    if not started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        gpus = float(ray.cluster_resources().get("GPU", 0))
        count = workers or max(1, int(gpus))
        task = ray.remote(num_gpus=1 if gpus >= count else 0, num_cpus=1)(_worker)
        summaries: list[dict] = ray.get([task.remote(target, call) for _ in range(count)])
    finally:
        if not started:
            ray.shutdown()
    merged = next((s for s in summaries if s["shards"]["merged_here"]), summaries[0])
    out: dict[str, Any] = dict(merged)
    out["executor"] = "ray"
    out["ray_tasks"] = [s["shards"] for s in summaries]
    out["seconds"] = round(seconds + max(s["seconds"] for s in summaries), 3)
    return out
