"""The row filters, one declaration each (as datatrove's ``BaseFilter``): the reason its rows are dropped for,
the option that turns it on or off, and the rows it drops.

:func:`prefkit.filters.classify` applies :data:`FILTERS` in order to the valid rows: a row gets the reason of the
first filter that drops it, so it is counted once. A new filter is one :class:`RowFilter` here, named and listed
in :data:`FILTERS` where it should run (its option a field of :class:`prefkit.options.FilterOptions`); its reason
joins the glossary, and ``tests/test_docs.py`` checks that it is documented.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import polars as pl

from prefkit.accounting import Reason, declare
from prefkit.filters.residue import RESIDUE, residue_markers
from prefkit.filters.rows import IDENTICAL_COLUMN, identical_answers
from prefkit.formats.base import TIE, first_reason
from prefkit.frame import MARGIN, TIE_COLUMN


class FilterSettings(Protocol):
    """What the row filters read of :class:`prefkit.options.FilterOptions`."""

    @property
    def keep_ties(self) -> bool: ...
    @property
    def keep_residue(self) -> bool: ...
    @property
    def min_margin(self) -> float | None: ...
    @property
    def negative_margin(self) -> Literal["keep", "drop", "flip"]: ...
    @property
    def drop_disagreeing(self) -> bool: ...


@dataclass(frozen=True, eq=False)
class RowFilter:
    """One row filter.

    ``reason``: what its rows are dropped as (declared in the glossary when the filter is); ``option``: the
    :class:`~prefkit.options.FilterOptions` field that turns it on or off (None: always on); ``applies(options)``:
    whether it runs; ``drops(options, frame)``: an expression, true for the rows it drops. A filter that needs a
    column computed over the batch first declares it: ``column`` (its name) and ``compute(frame,
    special_tokens)`` (the series; ``special_tokens``: the target tokenizer's); ``detail``: the expression the
    rejects show as a dropped row's ``detail``.
    """

    reason: Reason
    option: str | None
    applies: Callable[[FilterSettings], bool]
    drops: Callable[[FilterSettings, pl.DataFrame], pl.Expr]
    column: str | None = None
    compute: Callable[[pl.DataFrame, Sequence[str]], pl.Series] | None = None
    detail: pl.Expr | None = None

    def __post_init__(self) -> None:
        if self.reason.stage != "dropped":
            raise ValueError(
                f"filter {self.reason.name}: a filter drops rows (its reason is {self.reason.stage})"
            )
        if (self.column is None) != (self.compute is None):
            raise ValueError(f"filter {self.reason.name}: a column needs both its name and how to compute it")
        declare(self.reason)


def _tie(options: FilterSettings, df: pl.DataFrame) -> pl.Expr:
    """Margin 0, or a tie label (a family's ``tie`` column)."""
    tie = pl.col(MARGIN) == 0
    if TIE_COLUMN in df.columns:
        tie = tie.fill_null(False) | pl.col(TIE_COLUMN).fill_null(False)
    return tie


def _below_min_margin(options: FilterSettings, df: pl.DataFrame) -> pl.Expr:
    assert options.min_margin is not None
    return pl.col(MARGIN) < options.min_margin


IDENTICAL = RowFilter(
    Reason("identical", "dropped", "chosen == rejected after whitespace normalisation"),
    option=None,
    applies=lambda options: True,
    drops=lambda options, df: pl.col(IDENTICAL_COLUMN),
    column=IDENTICAL_COLUMN,
    compute=lambda df, special_tokens: identical_answers(df),
)
TEMPLATE_RESIDUE = RowFilter(
    Reason(
        "template_residue",
        "dropped",
        "chat-template turn markers left inside the text, where a turn starts or ends (not in code or prose "
        "about them; --keep-residue keeps them); the rejects' detail shows the marker",
    ),
    option="keep_residue",
    applies=lambda options: not options.keep_residue,
    drops=lambda options, df: pl.col(RESIDUE).is_not_null(),
    column=RESIDUE,
    compute=residue_markers,
    detail=pl.col(RESIDUE),
)
TIES = RowFilter(TIE, option="keep_ties", applies=lambda options: not options.keep_ties, drops=_tie)
NEGATIVE_MARGIN = RowFilter(
    Reason(
        "negative_margin",
        "dropped",
        "the margin is below 0 (its source, the scores or --margin-col, prefers the rejected answer; "
        "--negative-margin drop)",
    ),
    option="negative_margin",
    applies=lambda options: options.negative_margin == "drop",
    drops=lambda options, df: pl.col(MARGIN) < 0,
)
RM_DISAGREES = RowFilter(
    Reason(
        "rm_disagrees",
        "dropped",
        "the reward model does not prefer the chosen answer (rm_margin <= 0; --drop-disagreeing)",
    ),
    option="drop_disagreeing",
    applies=lambda options: options.drop_disagreeing,
    drops=lambda options, df: pl.col("rm_margin") <= 0,
)
MIN_MARGIN = RowFilter(
    Reason("below_min_margin", "dropped", "margin below --min-margin"),
    option="min_margin",
    applies=lambda options: options.min_margin is not None,
    drops=_below_min_margin,
)

#: every row filter, in the order a row is tested
FILTERS: tuple[RowFilter, ...] = (IDENTICAL, TEMPLATE_RESIDUE, TIES, NEGATIVE_MARGIN, RM_DISAGREES, MIN_MARGIN)
#: the filters by reason name
BY_REASON: dict[str, RowFilter] = {f.reason.name: f for f in FILTERS}


def active(options: FilterSettings) -> list[RowFilter]:
    """The filters ``options`` turn on, in order."""
    return [f for f in FILTERS if f.applies(options)]


def with_columns(
    df: pl.DataFrame, filters: Sequence[RowFilter], special_tokens: Sequence[str] = ()
) -> pl.DataFrame:
    """``df`` with the columns ``filters`` compute first."""
    computed = [f.compute(df, special_tokens) for f in filters if f.compute is not None]
    return df.with_columns(computed) if computed else df


def drop_reason(options: FilterSettings, df: pl.DataFrame, filters: Sequence[RowFilter]) -> pl.Expr:
    """The name of the first of ``filters`` that drops each row (null: none does); reads their columns."""
    return first_reason(*((f.drops(options, df), f.reason) for f in filters))


def drop_detail(drop: pl.Expr, filters: Sequence[RowFilter]) -> pl.Expr:
    """The ``detail`` of a row dropped by one of ``filters`` (``drop``: its reason's name), null for the others."""
    detail = pl.lit(None, dtype=pl.String)
    for f in reversed(filters):
        if f.detail is not None:
            detail = pl.when(drop == f.reason.name).then(f.detail).otherwise(detail)
    return detail


def helper_columns(filters: Sequence[RowFilter] = FILTERS) -> list[str]:
    """The columns the filters compute (classify drops them again)."""
    return [f.column for f in filters if f.column is not None]
