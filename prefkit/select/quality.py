"""The quality pass across every source of a build, on the rows still kept, in mix order:

1. ``--decontaminate EVAL`` (:mod:`.decontaminate`): rows whose prompt (with ``--decontaminate-answers`` an
   answer too) contains an eval item are dropped ``contaminated``; ``detail`` names the eval set and item;
2. ``--near-dedup [pair|prompt]`` (:mod:`.near_dedup`): near-duplicates of a kept row are dropped
   ``near_duplicate``; ``detail`` holds the kept row's ``id`` (as in the data files: :func:`kept_row_details`
   writes it once the set's schema is known), source and index;
3. ``--length-balance`` (:mod:`.length_balance`): per output split, the fewest pairs (lowest margins first) are
   dropped ``length_balance`` so that the chosen answer is the longer one in 50 % ± 1 % of the pairs kept
   (tokens by TRL's rule with ``--tokenizer``, else characters).

Decontamination runs first so that a near-duplicate is never kept in place of a contaminated row's cluster
representative; length balance runs last, on what the other stages left.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import polars as pl

from prefkit.accounting import mark_dropped
from prefkit.chat.lengths import message_token_lengths
from prefkit.chat.render import MessageRows
from prefkit.frame import DETAIL, MARGIN, PART, REASON, ROW, SOURCE_INDEX, STAGE, Stage
from prefkit.record import ROW_FIELDS, frame_rows, record_ids
from prefkit.select.decontaminate import CONTAMINATED, build_index, decontaminate_reasons
from prefkit.select.evalsets import resolve_evalset
from prefkit.select.length_balance import LENGTH_BALANCE, length_balance_drops, length_bias
from prefkit.select.near_dedup import (
    DEFAULT_NUM_PERM,
    DEFAULT_SHINGLE,
    NEAR_DUPLICATE,
    dedup_signatures,
    near_duplicates,
)
from prefkit.select.selectable import Selectable
from prefkit.spill import gather

REASONS = (CONTAMINATED, NEAR_DUPLICATE, LENGTH_BALANCE)

if TYPE_CHECKING:
    from prefkit.select.near_dedup import NearDedupMode


def _plain(column: str) -> pl.Expr:
    """A message column as role/content structs only (parts of several sources may carry other fields)."""
    el = pl.element().struct
    return pl.col(column).list.eval(pl.struct(el.field("role"), el.field("content"))).alias(column)


def pool(parts: Sequence[Selectable], parts_of: list[int] | None = None) -> Iterator[pl.DataFrame]:
    """The kept rows of ``parts`` (or of the parts at ``parts_of``) in mix order, batch by batch: ``_part``,
    ``_row`` (place in that part's frame), ``prompt``/``chosen``/``rejected`` (role and content), ``margin``,
    ``source``, ``source_index``. The messages are read back from each part's spill (``part.spill``: the rows
    that may still be kept, written as the part was read); only the rows kept now are given."""
    for i in parts_of if parts_of is not None else range(len(parts)):
        part = parts[i]
        if part.spill is None:
            continue
        kept = (part.df[STAGE] == Stage.KEPT.value).to_numpy()
        if not kept.any():
            continue
        margin = part.df[MARGIN].cast(pl.Float64)
        for frame in part.spill.frames([ROW, "prompt", "chosen", "rejected", SOURCE_INDEX]):
            rows = frame[ROW].to_numpy()
            take = kept[rows]
            if not take.any():
                continue
            frame = frame.filter(pl.Series(take))
            yield frame.select(
                pl.lit(i, dtype=pl.Int64).alias(PART),
                pl.col(ROW).cast(pl.Int64),
                *[_plain(c) for c in ("prompt", "chosen", "rejected")],
                margin.gather(frame[ROW]).alias(MARGIN),
                pl.lit(part.src.label).alias("source"),
                pl.col(SOURCE_INDEX).cast(pl.Int64),
            )


def apply_drops(parts: Sequence[Selectable], drops: pl.DataFrame) -> int:
    """Mark the rows ``drops`` names (``_part``, ``_row``) dropped with ``drops["reason"]`` and
    ``drops["detail"]``."""
    if not drops.height:
        return 0
    for (i,), mine in drops.group_by(PART, maintain_order=True):
        parts[i].df = mark_dropped(parts[i].df, mine[ROW], mine[REASON], mine[DETAIL])
    return drops.height


def decontaminate(
    parts: Sequence[Selectable], evalsets: tuple[str, ...], answers: bool, token: Any = None
) -> dict:
    """Drop contaminated rows; returns the manifest's ``decontamination`` section: per eval set its items,
    where it came from, and the rows removed."""

    loaded = [resolve_evalset(spec, token=token) for spec in evalsets]
    index = build_index({name: items for name, items, _ in loaded})
    found = []
    for pooled in pool(parts):  # row by row: each batch on its own
        hits = decontaminate_reasons(pooled, index, answers=answers)
        if hits.height:
            where = pooled.select(PART, ROW)[hits[ROW]]
            found.append(pl.concat([where, hits.drop(ROW)], how="horizontal"))
    removed: dict[str, int] = {}
    if found:
        hits = pl.concat(found)
        detail = pl.format("eval set {} item {}", "eval_set", "eval_index")
        apply_drops(parts, hits.select(PART, ROW, REASON, detail.alias(DETAIL)))
        removed = dict(hits.group_by("eval_set").len().iter_rows())
    sets = [
        {"name": name, "items": len(items), **where, "rows_removed": removed.get(name, 0)}
        for name, items, where in loaded
    ]
    return {"sets": sets, "answers": answers, "n": index.n, "min_words": index.min_words}


def near_dedup(parts: Sequence[Selectable], mode: str, threshold: float, seed: int | None) -> dict:
    """Drop near-duplicates across all parts; returns the manifest's ``near_dedup`` section. A dropped row's
    ``_kept_part`` / ``_kept_row`` point at the row kept for it (:func:`kept_row_details` turns them into ids).
    Signatures are made batch by batch (a kept row's texts exist only while its batch is hashed); the clusters
    are found over all of them."""

    seed = seed or 0
    where, sigs, words, margins = [], [], [], []
    for pooled in pool(parts):
        sig, has_words = dedup_signatures(
            pooled, mode=cast("NearDedupMode", mode), num_perm=DEFAULT_NUM_PERM, shingle=DEFAULT_SHINGLE, seed=seed
        )
        where.append(pooled.select(PART, ROW))
        sigs.append(sig)
        words.append(has_words)
        margins.append(pooled[MARGIN])
    removed = 0
    if where:
        at = pl.concat(where)
        drop, winner = near_duplicates(
            np.concatenate(sigs),
            np.concatenate(words),
            pl.concat(margins) if mode == "prompt" else None,
            threshold=threshold,
            num_perm=DEFAULT_NUM_PERM,
            shingle=DEFAULT_SHINGLE,
            seed=seed,
        )
        removed = len(drop)
        if removed:
            kept = at[winner]
            drops = at[drop].with_columns(
                NEAR_DUPLICATE.lit().alias(REASON), pl.lit(None, dtype=pl.String).alias(DETAIL)
            )
            apply_drops(parts, drops)
            pointers = at[drop].with_columns(kept[PART].alias("kp"), kept[ROW].alias("kr"))
            for (i,), mine in pointers.group_by(PART, maintain_order=True):
                df = parts[i].df
                for name, values in (("_kept_part", mine["kp"]), ("_kept_row", mine["kr"])):
                    base = (
                        df[name]
                        if name in df.columns
                        else pl.Series(name, [None] * df.height, dtype=pl.Int64)
                    )
                    df = df.with_columns(base.scatter(mine[ROW], values))
                parts[i].df = df
    return {
        "mode": mode,
        "threshold": threshold,
        "num_perm": DEFAULT_NUM_PERM,
        "shingle_words": DEFAULT_SHINGLE,
        "seed": seed,
        "rows_removed": removed,
    }


def kept_row_details(parts: Sequence[Selectable], fields: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
    """Write the ``detail`` of near-duplicate rows: the kept row's ``id`` in the data files (computed with the
    set's final ``fields``, from the kept row's messages in its part's spill), its source and index; drops the
    pointer columns."""

    ids: dict[tuple[int, int], tuple[str, int]] = {}
    wanted: dict[int, set[int]] = {}
    for part in parts:
        if "_kept_part" in part.df.columns:
            for kp, kr in part.df.select("_kept_part", "_kept_row").drop_nulls().iter_rows():
                wanted.setdefault(kp, set()).add(kr)
    for kp, rows in wanted.items():
        columns = [ROW, "prompt", "chosen", "rejected", SOURCE_INDEX, *ROW_FIELDS]
        spill = parts[kp].spill
        if spill is None:  # a kept row's part has its messages in a spill once it is read
            raise RuntimeError(f"{parts[kp].src.label} ({parts[kp].split}) has not been read yet")
        for frame in gather(spill, np.array(sorted(rows), dtype=np.int64)):
            frame = frame.select([c for c in columns if c in frame.columns])
            for r, rid, index in zip(
                frame[ROW], record_ids(frame, fields), frame[SOURCE_INDEX], strict=True
            ):
                ids[(kp, r)] = (rid, index)
    for part in parts:
        df = part.df
        if "_kept_part" not in df.columns:
            continue
        at = df.select(pl.col("_kept_part").is_not_null().arg_true()).to_series()
        details = []
        for kp, kr in df[at].select("_kept_part", "_kept_row").iter_rows():
            rid, index = ids[(kp, kr)]
            details.append(f"kept id {rid} ({parts[kp].src.label} row {index})")
        detail = df[DETAIL].scatter(at, pl.Series(details, dtype=pl.String))
        part.df = df.with_columns(detail).drop("_kept_part", "_kept_row")


def _answer_lengths(pooled: pl.DataFrame, target: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """Chosen and rejected answer lengths: tokens by TRL's rule with a tokenizer, else characters."""
    if target is not None and getattr(target, "tokenizer", None) is not None:
        prompts, chosen, rejected, extras = frame_rows(pooled)
        lengths = message_token_lengths(target, MessageRows(prompts, chosen, rejected, extras))
        return np.asarray(lengths.chosen, float), np.asarray(lengths.rejected, float), "tokens"
    chars = [
        pooled.select(pl.col(c).list.eval(pl.element().struct.field("content").str.len_chars()).list.sum())
        .to_series()
        .fill_null(0)
        .to_numpy()
        .astype(float)
        for c in ("chosen", "rejected")
    ]
    return chars[0], chars[1], "characters"


def length_balance(parts: Sequence[Selectable], target: Any = None) -> dict:
    """Balance the chosen-longer share per output split; returns the manifest's ``length_balance`` section.
    Answer lengths are measured batch by batch; the choice is made over the whole split."""

    out: dict[str, Any] = {"tolerance": 0.01, "splits": {}}
    for name in dict.fromkeys(p.out for p in parts):
        where, chosen_parts, rejected_parts, margins = [], [], [], []
        unit = None
        for pooled in pool(parts, [i for i, p in enumerate(parts) if p.out == name]):
            c, r, unit = _answer_lengths(pooled, target)
            where.append(pooled.select(PART, ROW))
            chosen_parts.append(c)
            rejected_parts.append(r)
            margins.append(pooled[MARGIN])
        if not where:
            continue
        at = pl.concat(where)
        chosen, rejected = np.concatenate(chosen_parts), np.concatenate(rejected_parts)
        margin = pl.concat(margins)
        drop = length_balance_drops(chosen, rejected, margin, tolerance=0.01)
        before = length_bias(chosen, rejected, margin)["chosen_longer_fraction"]
        keep = np.ones(len(chosen), bool)
        keep[drop] = False
        after = length_bias(chosen[keep], rejected[keep])["chosen_longer_fraction"] if keep.any() else None
        drops = at[drop].with_columns(
            LENGTH_BALANCE.lit().alias(REASON), pl.lit(None, dtype=pl.String).alias(DETAIL)
        )
        apply_drops(parts, drops)
        out["unit"] = unit
        out["splits"][name] = {
            "chosen_longer_before": before,
            "chosen_longer_after": after,
            "rows_removed": len(drop),
        }
    return out
