"""Weighted mixing of several sources: ``prefkit build a:0.5 b:2000 ./c.jsonl:2.0`` (weights: :mod:`prefkit.sources.spec`).

Sampling is seeded (``--seed``, 0 when not given), per source, so a mix is reproducible. Rows not drawn are dropped
with the reason ``not_sampled``; extra copies are counted in the manifest as ``added.upsampled``. Sources whose
margins are on different scales are normalised by each source's scale span (a preset's ``score_scale``, else the
largest absolute margin seen) before anything ranks them across sources.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import polars as pl

from prefkit.accounting import UPSAMPLED, Reason, declare, mark_dropped
from prefkit.frame import MARGIN, PROW, STAGE, Stage, is_stage, kept
from prefkit.select.selectable import Selectable
from prefkit.sources.spec import SourceSpec, Weight, parse_source, parse_weight  # noqa: F401 (prefkit.mix API)

(NOT_SAMPLED,) = declare(
    Reason(
        "not_sampled", "dropped", "not drawn by the source's mixing weight (SOURCE:WEIGHT)", selection=True
    ),
)
REASONS = (NOT_SAMPLED, UPSAMPLED)


def source_rng(seed: int | None, key: str) -> np.random.Generator:
    """A generator per source: the same seed and source give the same draws whatever else is in the mix."""
    return np.random.default_rng([0 if seed is None else seed, zlib.crc32(key.encode())])


def draw(n: int, weight: Weight | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(positions kept once, in order; positions drawn again as extra copies) among ``n`` rows."""
    every = np.arange(n)
    if weight is None or n == 0:
        return every, np.empty(0, dtype=np.int64)
    if weight.kind == "fraction":
        take = round(weight.value * n)
        return np.sort(rng.choice(n, size=take, replace=False)), np.empty(0, dtype=np.int64)
    target = int(weight.value) if weight.kind == "rows" else n + round((weight.value - 1) * n)
    if target <= n:
        return np.sort(rng.choice(n, size=target, replace=False)), np.empty(0, dtype=np.int64)
    return every, np.sort(rng.choice(n, size=target - n, replace=True))


def margin_scales(parts: Sequence[Selectable], specs: list) -> dict[int, dict]:
    """Per source (by position): the margin scale, and whether margins are divided by it (several sources with
    different scales)."""
    scales: dict[int, dict] = {}
    for i, spec in enumerate(specs):
        mine = [p for p in parts if p.spec is spec]
        preset = mine[0].preset if mine else None
        span = preset.scale_span if preset is not None else None
        origin = "preset" if span else None
        if not span:
            margins = [
                p.df.select(pl.col(MARGIN).filter(~is_stage(Stage.INVALID)).abs().max()).item()
                for p in mine
            ]
            margins = [m for m in margins if m is not None and m == m]
            span = max(margins) if margins else None
            origin = "observed max |margin|" if span else None
        scales[i] = {"span": span, "from": origin}
    spans = {v["span"] for v in scales.values() if v["span"]}
    normalise_them = len(specs) > 1 and len(spans) > 1
    for v in scales.values():
        v["normalised"] = bool(normalise_them and v["span"])
    return scales


def draw_weights(parts: Sequence[Selectable], seed: int | None) -> dict[int, pl.Series]:
    """Draw each part's source weight among its kept rows: rows not drawn are dropped ``not_sampled``; returns the
    rows drawn again (upsampling) per part index."""
    again_rows: dict[int, pl.Series] = {}
    for i, part in enumerate(parts):
        weight = part.spec.weight
        if weight is None:
            continue
        kept_rows = part.df.select(
            pl.int_range(pl.len(), dtype=pl.UInt32).filter(kept()).alias("_r")
        ).to_series()
        rng = source_rng(seed, f"{part.src.label}/{part.split}")
        once, again = draw(kept_rows.len(), weight, rng)
        not_drawn = kept_rows.filter(~kept_rows.is_in(kept_rows.gather(once).implode()))
        if not_drawn.len():
            part.df = mark_dropped(part.df, not_drawn, NOT_SAMPLED)
        if len(again):
            again_rows[i] = kept_rows.gather(again)
    return again_rows


def make_copies(parts: Sequence[Selectable], again_rows: dict[int, pl.Series]) -> None:
    """The upsampled copies of drawn rows that are still kept (``part.copies``; ``_prow`` links to the row)."""
    for i, rows in again_rows.items():
        part = parts[i]
        part.df = part.df.with_row_index(PROW)
        still = part.df[STAGE].gather(rows) == Stage.KEPT.value
        if still.any():
            part.copies = part.df[rows.filter(still).to_list()]
