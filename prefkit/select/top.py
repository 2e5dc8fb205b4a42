"""Selection within one split of one source: ``--top N`` (largest margins) and ``--max-rows N``.

``--top`` is a stable sort by margin, descending (equal margins keep source order), then the first N: how the
2K subset of OpenHermes2.5-dpo-binarized-alpha was made. ``--max-rows`` keeps the first N (in ``--top`` order
when both are given), or a seeded sample with ``--seed``.
"""

from __future__ import annotations

import polars as pl

from prefkit.accounting import Reason, declare, drop_where
from prefkit.frame import MARGIN, RANK, kept

NOT_IN_TOP, OVER_MAX_ROWS = declare(
    Reason("not_in_top", "dropped", "not among the --top N rows by margin", selection=True),
    Reason("over_max_rows", "dropped", "beyond --max-rows", selection=True),
)


def select_top(df: pl.DataFrame, top: int) -> pl.DataFrame:
    """Keep the ``top`` kept rows with the largest margin; adds ``_rank`` (the rows' order by margin)."""
    order = df.select(
        pl.arg_sort_by(pl.col(MARGIN).fill_null(float("-inf")), descending=True, maintain_order=True)
    )
    rank = pl.Series(RANK, range(df.height), dtype=pl.Int64).scatter(order.to_series(), range(df.height))
    df = df.with_columns(rank)
    top_rows = df.filter(kept()).sort(RANK).head(top).select(RANK)
    return drop_where(df, kept() & ~pl.col(RANK).is_in(top_rows.to_series().implode()), NOT_IN_TOP)


def select_max_rows(df: pl.DataFrame, max_rows: int, seed: int | None) -> pl.DataFrame:
    """Keep at most ``max_rows`` kept rows: the first ones (by ``_rank`` after ``--top``), or a seeded sample."""
    rows = df.with_row_index("_i").filter(kept())
    order = (rows.sort(RANK) if RANK in rows.columns else rows)["_i"]
    if order.len() <= max_rows:
        return df
    keep = order.sample(max_rows, seed=seed) if seed is not None else order.head(max_rows)
    index = pl.int_range(pl.len(), dtype=pl.UInt32)  # with_row_index's dtype
    return drop_where(df, index.is_in(order.implode()) & ~index.is_in(keep.implode()), OVER_MAX_ROWS)


def select_within(df: pl.DataFrame, top: int | None, max_rows: int | None, seed: int | None) -> pl.DataFrame:
    """``--top`` then ``--max-rows`` on one classified split."""
    if top is not None:
        df = select_top(df, top)
    if max_rows is not None:
        df = select_max_rows(df, max_rows, seed)
    return df
