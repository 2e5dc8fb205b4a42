"""Leak-free train/test splits: ``--test-size 0.05`` or ``--test-rows 2000``.

Rows are grouped into connected components over three keys, and whole components go to one side:

* the prompt (its non-system turns, lower-cased, whitespace squashed; see :func:`prefkit.select.dedup.prompt_keys`),
* the source's group key when it has one (SHP ``post_id``, UltraFeedback ``prompt_id``, arena ``question_id``),
* the source row (so every pair binarised from one row, and every upsampled copy, stays together).

So no prompt is on both sides, even when two sources share it. Components are shuffled with the seed and taken
into ``test`` until it holds at least the asked number of kept rows; everything else is ``train``. Rows that
are not kept follow their component too, so each side's counts add up on their own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from prefkit.errors import SelectionError, option
from prefkit.frame import GROUP, GROUP_HASH, OUT, PROMPT_KEY, PROW, SOURCE_INDEX, TEST, TRAIN, kept
from prefkit.select.dedup import prompt_keys
from prefkit.select.selectable import Selectable

KEYS = (PROMPT_KEY, "_gkey", "_skey")


def components(rows: pl.DataFrame, keys: tuple[str, ...] = KEYS) -> pl.Series:
    """The connected component of each row (the smallest row index in it), rows linked by equal non-null keys.

    Label propagation until nothing changes: each round can only lower labels, so it always converges, and
    stopping early would let rows of one group land on both sides of the split."""
    df = rows.select([k for k in keys if k in rows.columns]).with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_comp")
    )
    present = [k for k in keys if k in rows.columns]
    while True:
        before = df["_comp"]
        for key in present:
            df = df.with_columns(
                pl.when(pl.col(key).is_not_null())
                .then(pl.col("_comp").min().over(key))
                .otherwise(pl.col("_comp"))
                .alias("_comp")
            )
        if df["_comp"].equals(before):
            break
    return df["_comp"]


def test_target(total_kept: int, test_size: float | None, test_rows: int | None) -> int:
    """How many kept rows the test side should get at least; errors with a hint on bad values."""
    if test_size is not None and test_rows is not None:
        raise SelectionError(
            f"{option('test_size')} and {option('test_rows')} both given", "pass one of them"
        )
    if test_size is not None:
        if not 0 < test_size < 1:
            raise SelectionError(
                f"{option('test_size', test_size)} is not a fraction",
                "use a value between 0 and 1, e.g. 0.05",
            )
        target = max(1, round(test_size * total_kept))
    else:
        assert test_rows is not None
        if test_rows < 1:
            raise SelectionError(
                f"{option('test_rows', test_rows)} is not a row count", "use a positive number"
            )
        target = test_rows
    if total_kept == 0:
        raise SelectionError(
            "no row is left to split into train and test: every row was dropped before the split",
            "build without --test-size / --test-rows: its summary and rejects/ say why each row was dropped",
        )
    if target >= total_kept:
        rows = "row" if target == 1 else "rows"
        raise SelectionError(
            f"a test split of {target} {rows} leaves no training rows (only {total_kept} kept)",
            "ask for a smaller --test-size / --test-rows",
        )
    return target


def assign_test(rows: pl.DataFrame, target: int, seed: int | None) -> tuple[pl.Series, dict]:
    """Which rows go to ``test``: ``rows`` holds the keys and ``_weight`` (kept rows each row stands for).

    Returns the boolean series and a summary (components, rows on each side) for the manifest.
    """
    comp = components(rows)
    per = (
        pl.DataFrame({"_comp": comp, "_weight": rows["_weight"]})
        .group_by("_comp")
        .agg(pl.col("_weight").sum())
        .filter(pl.col("_weight") > 0)
        .sort("_comp")
    )
    rng = np.random.default_rng(0 if seed is None else seed)
    order = per[rng.permutation(per.height).tolist()] if per.height else per
    cum = order["_weight"].cum_sum()
    n_take = int((cum < target).sum()) + 1
    chosen = order["_comp"].head(n_take)
    is_test = comp.is_in(chosen.implode())
    summary = {
        "groups": per.height,
        "test_groups": min(n_take, per.height),
        "test_kept": int(order["_weight"].head(n_take).sum()),
        "target": target,
    }
    return is_test, summary


def assign_parts(
    parts: Sequence[Selectable], test_size: float | None, test_rows: int | None, seed: int | None
) -> dict:
    """Leak-free train/test across every part: sets each ``part.df``'s ``_out`` column ("train"/"test") and
    returns the manifest's ``test_split`` entry."""
    frames = []
    for i, part in enumerate(parts):
        df = part.df
        copies = part.copies
        per_row = pl.Series([0] * df.height, dtype=pl.Int64)
        if copies is not None and copies.height and PROW in copies.columns:
            repeats = copies.group_by(PROW).len()
            per_row = per_row.scatter(repeats[PROW].cast(pl.Int64), repeats["len"].cast(pl.Int64))
        # group keys only link rows of the same source: hashed with the source's position as the seed
        if GROUP_HASH in df.columns:  # hashed as the part was read (prefkit.stream.read.compact)
            group = pl.col(GROUP_HASH)
        elif GROUP in df.columns:
            group = pl.col(GROUP).cast(pl.String).hash(seed=i)
        else:
            group = pl.lit(None, dtype=pl.UInt64)
        # prompt keys for the kept rows: rows not kept only need to follow their source row (or group), so each
        # side's counts add up; whether they share a prompt with the other side does not matter
        if PROMPT_KEY in df.columns:  # computed batch by batch as the part was read (dedup.row_keys)
            pkey = df.select(pl.when(kept()).then(pl.col(PROMPT_KEY))).to_series()
        else:
            kept_at = df.select(
                pl.int_range(pl.len(), dtype=pl.Int64).filter(kept())
            ).to_series()
            pkey = pl.Series(PROMPT_KEY, [None] * df.height, dtype=pl.UInt64).scatter(
                kept_at, prompt_keys(df.select(pl.col("prompt").filter(kept())))
            )
        frames.append(
            df.select(
                pl.lit(pkey).alias(PROMPT_KEY),
                group.alias("_gkey"),
                (pl.lit(i, dtype=pl.Int64) * (1 << 40) + pl.col(SOURCE_INDEX)).alias("_skey"),
                (kept().cast(pl.Int64) + pl.lit(per_row)).alias("_weight"),
            )
        )
    rows = pl.concat(frames)
    target = test_target(int(rows["_weight"].sum()), test_size, test_rows)
    is_test, info = assign_test(rows, target, seed)
    offset = 0
    for part in parts:
        n = part.df.height
        side = is_test.slice(offset, n)
        part.df = part.df.with_columns(
            pl.when(side).then(pl.lit(TEST)).otherwise(pl.lit(TRAIN)).alias(OUT)
        )
        offset += n
    return {
        **info,
        "test_size": test_size,
        "test_rows": test_rows,
        "seed": seed,
        "grouped_by": "prompt (non-system turns, case and whitespace folded), source group key, source row",
    }


def by_output_split(df: pl.DataFrame) -> list[tuple[str, pl.Expr]]:
    """(output split, row filter) for the sides this part has rows on."""
    present = set(df[OUT].unique().to_list())
    return [(name, pl.col(OUT) == name) for name in (TRAIN, TEST) if name in present]
