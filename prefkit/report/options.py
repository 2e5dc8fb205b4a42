"""What `prefkit report` can be told, declared once: the keywords of :func:`prefkit.report.report` and the flags of
the command (generated from these fields, :mod:`prefkit.commands.flags`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import field_validator

from prefkit.chat.target import TargetOptions
from prefkit.optionspec import option


class ReportOptions(TargetOptions):
    """How many rows the page shows, sampled with which seed, next to which eval sets; with a tokenizer or chat
    template (:class:`~prefkit.chat.target.TargetOptions`) lengths are in tokens by TRL's rule."""

    COMMAND: ClassVar[str] = "report"

    rows: int = option(
        1000,
        "Kept rows shown per split (a uniform random sample when the split has more; the page says so).",
        ge=1
    )
    examples: int = option(
        20, "Rejected rows shown per reason (sampled the same way).", ge=1
    )
    eval_set: tuple[str, ...] = option(
        (),
        "A local file of an eval set the build decontaminated against (repeatable; matched by file name), to "
        "show the contaminating item next to each contaminated row. Hub eval sets are not downloaded.",
        path="file",
    )
    seed: int = option(0, "Seed of the row samples.")

    @field_validator("eval_set", mode="before")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        """One path or several, as strings (``Path`` objects too)."""
        if isinstance(value, (str, Path)):
            return (str(value),)
        if isinstance(value, (list, tuple)) and all(isinstance(v, (str, Path)) for v in value):
            return tuple(str(v) for v in value)
        return value
