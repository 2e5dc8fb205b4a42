"""What every sharded job can be told (:class:`JobOptions`: shards, leases, resume, overwrite), declared once for
`reflogps`, `score` and `generate`, whose options classes are made of it (:mod:`prefkit.reflogps.options`,
:mod:`prefkit.rewards.options`, :mod:`prefkit.generate.options`)."""

from __future__ import annotations

from typing import Any

from prefkit.jobs.leases import (
    DEFAULT_LEASE_SECONDS,
    MAX_LEASE_SECONDS,
    MIN_LEASE_SECONDS,
)
from prefkit.jobs.plan import DEFAULT_SHARD_ROWS
from prefkit.optionspec import OptionGroup, option


def lease_option(help: str) -> Any:
    """The ``lease_seconds`` field (a command whose workers are other processes words its help its own way)."""
    return option(DEFAULT_LEASE_SECONDS, help, ge=MIN_LEASE_SECONDS, le=MAX_LEASE_SECONDS)


def resume_option(help: str) -> Any:
    """The ``resume`` field: ``--resume/--no-resume``, on by default."""
    return option(True, help, decls=("--resume/--no-resume",))


class JobOptions(OptionGroup):
    """The flags every sharded job takes (`reflogps`, `score`, `generate`): how its rows are cut into shards,
    how long a worker's lease on one lasts, whether finished work is reused or replaced; and how the job reports
    (``progress``, the ``command`` line recorded in the manifest; Python keywords only)."""

    shard_rows: int = option(
        DEFAULT_SHARD_ROWS, "Pairs per work shard (the unit of resume and of work a worker leases).", ge=1
    )
    lease_seconds: float = lease_option(
        "How long this worker's claim on a shard lasts without renewal (renewed every quarter of it while its "
        "scoring progresses); a killed or hung worker's shard is taken over by another after this long. Keep it "
        "above the shared file system's attribute cache time and the time of one batch."
    )
    resume: bool = resume_option(
        "Continue from the finished shards (same options; also joins workers already running); --no-resume "
        "starts over (refused while live workers hold leases)."
    )
    overwrite: bool = option(
        False,
        "Recompute when OUT already has the columns, and discard unfinished work from a run with other options "
        "(refused while live workers hold leases in it).",
    )
    progress: bool = option(False, "Show a progress bar (the CLI does unless --quiet).", cli=False)
    command: str | None = option(None, "The command line, recorded in the manifest.", cli=False)
