"""Data-parallel scoring with ``torchrun`` (torch.distributed), and the same code path for one process.

``torchrun --nproc-per-node N -m prefkit reflogps OUT --model M`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
:func:`init_distributed` then joins the process group (NCCL on CUDA, gloo on the CPU). Without those
variables everything runs in one process and the collective calls below are no-ops.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from prefkit import errors

T = TypeVar("T")

#: How long a rank waits at a barrier (e.g. for rank 0's merge, or for a slower rank's last shard).
BARRIER_TIMEOUT = timedelta(hours=24)


@dataclass
class DistContext:
    """Where this process stands in a (possibly one-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and hand its result (or its PrefkitError) to every rank."""
        if not self.active:
            return fn()
        outcome: tuple
        if self.is_main:
            try:
                outcome = ("ok", fn())
            except errors.PrefkitError as err:
                outcome = ("error", type(err).__name__, err.raw_message, err.raw_hint)
                self.broadcast(outcome)
                raise
            except BaseException as err:
                self.broadcast(("crash", f"{type(err).__name__}: {err}"))
                raise
        outcome = self.broadcast(outcome if self.is_main else None)
        return _unwrap(outcome)

    def check_all(self, error: BaseException | None) -> None:
        """Collective: raise on every rank when any rank failed (its PrefkitError travels to all)."""
        if not self.active:
            if error is not None:
                raise error
            return
        info = None
        if error is not None:
            info = (
                ("error", type(error).__name__, error.raw_message, error.raw_hint)
                if isinstance(error, errors.PrefkitError)
                else ("crash", f"rank {self.rank}: {type(error).__name__}: {error}")
            )
        failures = [f for f in self.gather(info) if f is not None]
        if error is not None:
            raise error
        if failures:
            _unwrap(failures[0])

    def close(self, synced: bool = True) -> None:
        """Leave the process group this context joined. ``synced`` (the job ended on every rank, as a success or
        an error every rank raised): wait at a barrier first, so that no rank tears down its connections while
        another still reads from them (gloo aborts the process at exit then: "terminate called without an
        active exception")."""
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                if synced:
                    dist.barrier()
                dist.destroy_process_group()
            self.owns_group = False

    def __enter__(self) -> DistContext:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        """The job's end: a barrier before leaving the group when it ended without an error (see :meth:`close`);
        on an error a rank may be alone, so it leaves without one."""
        self.close(synced=kind is None)


def _unwrap(outcome: tuple) -> Any:
    if outcome[0] == "ok":
        return outcome[1]
    if outcome[0] == "error":
        cls = getattr(errors, outcome[1], errors.PrefkitError)
        raise cls(outcome[2], outcome[3])
    raise RuntimeError(f"another rank failed: {outcome[1]}")


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init_distributed(device: Any) -> DistContext:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (NCCL for CUDA ``device``, else gloo)."""
    world = env_world_size()
    if world <= 1:
        return DistContext()
    import torch
    import torch.distributed as dist
    import torch.distributed.nn  # before the group exists: see the note below

    # torch.distributed.nn.functional's defaults (``group=group.WORLD``) hold the group it finds at import. Imported
    # later (transformers imports it with FSDP), they would keep the gloo group alive past destroy_process_group,
    # its threads running into the interpreter's exit, which then aborts now and then ("terminate called without
    # an active exception", SIGABRT). Imported first, they hold None.
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if dist.is_initialized():
        return DistContext(rank, dist.get_world_size(), local_rank, dist.get_backend(), owns_group=False)
    backend = "nccl" if getattr(device, "type", str(device)) == "cuda" else "gloo"
    kwargs: dict[str, Any] = {"backend": backend, "timeout": BARRIER_TIMEOUT}
    if backend == "nccl":
        torch.cuda.set_device(device)
        kwargs["device_id"] = device
    dist.init_process_group(**kwargs)
    return DistContext(rank, dist.get_world_size(), local_rank, backend, owns_group=True)
