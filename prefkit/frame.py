"""The per-row frame of a build, declared once: its columns and the values of ``stage``.

Pass 1 (:mod:`prefkit.stream`) classifies every normalised row (:func:`prefkit.filters.classify`: ``stage``,
``reason``, ``detail``) and keeps a compact frame of one row per candidate pair, never the messages; the
selections (:mod:`prefkit.select`) mark rows dropped in it and add their own columns; pass 2 reads it to write
the kept rows, the rejects and the counts (:class:`prefkit.accounting.Counts`). The names below are the only
spelling of those columns and values.

A shared module: it imports nothing of prefkit, so every folder can use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

import polars as pl


class Stage(str, Enum):
    """Where a row ends: the values of the ``stage`` column (a ``str``, so it compares, hashes and is written as
    its value)."""

    KEPT = "kept"
    DROPPED = "dropped"
    INVALID = "invalid"

    def __str__(self) -> str:
        return self.value


#: the output splits a leak-free test split sends rows to (the values of :data:`OUT`)
TRAIN, TEST = "train", "test"

# ----------------------------------------------------- what a normaliser adds to the canonical columns (formats/)
#: the reason a row could not be normalised or is not valid (null when it is)
INVALID_COLUMN = "invalid"
#: a drop reason a normaliser decided from labels (SHP caps, PKU's axes …): final, before any filter
NORMALISER_DROP = "normaliser_drop"
#: a tie label (the pair is a tie whatever its margin)
TIE_COLUMN = "tie"
#: the source's group key (rows of one post or prompt: leak-free splits keep them on one side)
GROUP = "group"

# ---------------------------------------------------------------- every classified row (and every rejects row)
#: the row's place in its source split
SOURCE_INDEX = "source_index"
#: a :class:`Stage` value
STAGE = "stage"
#: the declared :class:`prefkit.accounting.Reason` a row was dropped or is invalid for (null when kept)
REASON = "reason"
#: more about the reason (the residue marker, the template's message, the eval item); null when none
DETAIL = "detail"
#: the pair's margin (chosen score − rejected score), null when the source has none
MARGIN = "margin"
#: ``flag_<reason>``: booleans counted as the manifest's ``flags`` (a property worth reporting, not an outcome)
FLAG_PREFIX = "flag_"

# ------------------------------------------------------------------------ what pass 1 keeps for the selections
#: which optional record fields the row uses (bits: :func:`prefkit.stream.read.field_bits`)
FIELDS = "_fields"
#: the source's group key, hashed (seeded by the part's position; leak-free splits)
GROUP_HASH = "_ghash"
#: the prompt's key (:func:`prefkit.select.dedup.prompt_keys`; one pair per prompt, leak-free splits)
PROMPT_KEY = "_pkey"
#: ``_h_<column>``: content hashes of prompt, chosen and rejected (``--dedup``)
CONTENT_HASH_PREFIX = "_h_"

# -------------------------------------------------------------------------- what the selections add or link by
#: a row's place in its part's frame (the spilled rows carry it; dedup and the quality pass name rows by it)
ROW = "_row"
#: the part a pooled row comes from (its position in the build's parts)
PART = "_part"
#: the row's place in ``--top``'s order (margin descending, source order among equals)
RANK = "_rank"
#: the row an upsampled copy repeats (its place in the part's frame)
PROW = "_prow"
#: the output split a row goes to (:data:`TRAIN` or :data:`TEST`), with a test split
OUT = "_out"


def flag(name: str) -> str:
    """The column of the flag ``name`` (``flag_<name>``)."""
    return FLAG_PREFIX + name


def flag_columns(columns: Iterable[str]) -> list[str]:
    """The flag columns among ``columns``, in order."""
    return [c for c in columns if c.startswith(FLAG_PREFIX)]


def content_hash(column: str) -> str:
    """The content hash column of a message column (``_h_prompt``)."""
    return CONTENT_HASH_PREFIX + column


def is_stage(stage: Stage) -> pl.Expr:
    """Rows at ``stage``."""
    return pl.col(STAGE) == stage.value


def kept() -> pl.Expr:
    """Rows kept so far."""
    return is_stage(Stage.KEPT)
