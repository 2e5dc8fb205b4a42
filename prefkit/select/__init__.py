"""Select: choices among valid rows, within one split (``--top``, ``--max-rows``: :mod:`.top`) and across every
source of a build (weights :mod:`.mix`, dedup :mod:`.dedup`, the leak-free test split :mod:`.splits`).

A selection never deletes a row: it marks it dropped with its reason, so the counts still add up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from prefkit.frame import MARGIN
from prefkit.select import dedup, mix, quality, splits, top
from prefkit.select.selectable import Selectable
from prefkit.select.top import select_within

__all__ = ["Selectable", "select_across", "select_within"]


def select_across(
    parts: Sequence[Selectable], specs: list, options: Any, target: Any = None, token: Any = None
) -> tuple[dict[int, dict], dict[str, dict]]:
    """Across all parts, in mix order: normalise margins (several scales), draw each source's weight, dedup, the
    quality pass (:mod:`.quality`: decontamination, near-dedup, length balance), then make the upsampled copies
    of the drawn rows that are still kept. Returns the margin scales per source and the quality pass's manifest
    sections.

    Dedup runs on the drawn rows, so it never removes a pair whose first copy was not drawn; a weight is what is
    drawn, and dedup may leave fewer rows. ``options`` are :class:`prefkit.options.SelectOptions`; ``target``
    (a :class:`prefkit.chat.Target`) measures lengths in tokens for length balance; ``token`` reads eval sets."""
    scales = mix.margin_scales(parts, specs)
    for part in parts:
        scale = scales[specs.index(part.spec)]
        if scale["normalised"] and part.is_read:
            part.df = part.df.with_columns(pl.col(MARGIN) / scale["span"])
    again = mix.draw_weights(parts, options.seed)
    dedup.dedup_parts(parts, exact=options.dedup, one_per_prompt=options.one_pair_per_prompt)
    sections: dict[str, dict] = {}
    if options.decontaminate:
        sections["decontamination"] = quality.decontaminate(
            parts, options.decontaminate, options.decontaminate_answers, token
        )
    if options.near_dedup:
        sections["near_dedup"] = quality.near_dedup(
            parts, options.near_dedup, options.near_dedup_threshold, options.seed
        )
    if options.length_balance:
        sections["length_balance"] = quality.length_balance(parts, target)
    mix.make_copies(parts, again)
    return scales, sections


def assign_test_split(parts: Sequence[Selectable], options: Any) -> dict | None:
    """The leak-free train/test split when ``--test-size``/``--test-rows`` is set (else None)."""
    if options.test_size is None and options.test_rows is None:
        return None
    return splits.assign_parts(parts, options.test_size, options.test_rows, options.seed)


__all__ += ["assign_test_split", "top"]
