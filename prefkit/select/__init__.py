"""Select: choices among valid rows, within one split (``--top``, ``--max-rows``: :mod:`.top`) and across every
source of a build (weights :mod:`.mix`, dedup :mod:`.dedup`, the leak-free test split :mod:`.splits`).

A selection never deletes a row: it marks it dropped with its reason, so the counts still add up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from prefkit.select import dedup, mix, quality, splits, top
from prefkit.select.top import select_within

__all__ = ["Part", "select_across", "select_within"]


@dataclass
class Part:
    """One split of one source on its way through a build: the source split, how it maps, the classified rows.

    ``df`` holds one compact row per candidate pair (``source_index``, ``stage``, ``reason``, ``detail``,
    ``margin``, ``flag_*``, and the hashes a selection compares), never the messages: those of the rows that may
    still be kept are in ``spill`` (with ``_row``, the row's place in ``df``), and the source fields the rejects
    list are in ``originals`` (:mod:`prefkit.spill`)."""

    src: Any  # prefkit.sources.Source
    spec: Any  # prefkit.sources.spec.SourceSpec
    preset: Any  # prefkit.formats.presets.Preset | None
    split: str
    out: str  # the output split it goes to
    raw: pa.Table | Any  # the source split: a table or a lazy reader (prefkit.sources.splits)
    mapping: Any  # prefkit.formats.Mapping
    df: pl.DataFrame | None = None
    copies: pl.DataFrame | None = None
    unused: dict[str, int] | None = None  # source columns no mapping reads: their non-null counts
    read_columns: list[str] | None = None  # the source columns read (and kept in rejects)
    raw_schema: pa.Schema | None = None  # their types
    spill: Any = None  # prefkit.spill.Spill: messages of the rows that may still be kept
    originals: Any = None  # prefkit.spill.Spill: source rows the rejects list with their fields
    template: pl.DataFrame | None = None  # the spill's columns, no row


def select_across(
    parts: list[Part], specs: list, options: Any, target: Any = None, token: Any = None
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
        if scale["normalised"] and part.df is not None:
            part.df = part.df.with_columns(pl.col("margin") / scale["span"])
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


def assign_test_split(parts: list[Part], options: Any) -> dict | None:
    """The leak-free train/test split when ``--test-size``/``--test-rows`` is set (else None)."""
    if options.test_size is None and options.test_rows is None:
        return None
    return splits.assign_parts(parts, options.test_size, options.test_rows, options.seed)


__all__ += ["assign_test_split", "top"]
