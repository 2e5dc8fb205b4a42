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

from typing import Any

import numpy as np
import polars as pl

from prefkit.accounting import Reason, declare, mark_dropped

REASONS = declare(
    Reason(
        "contaminated",
        "dropped",
        "the prompt (with --decontaminate-answers, an answer too) contains an item of an eval set "
        "(--decontaminate); detail: the eval set and item index",
    ),
    Reason(
        "near_duplicate",
        "dropped",
        "near-duplicate (MinHash Jaccard >= --near-dedup-threshold) of a kept pair or prompt (--near-dedup); "
        "detail: the kept row's id, source and index",
    ),
    Reason(
        "length_balance",
        "dropped",
        "dropped so the chosen answer is longer in 50 % ± 1 % of pairs (--length-balance), lowest margins first",
    ),
)


def _plain(column: str) -> pl.Expr:
    """A message column as role/content structs only (parts of several sources may carry other fields)."""
    el = pl.element().struct
    return pl.col(column).list.eval(pl.struct(el.field("role"), el.field("content"))).alias(column)


def pool(parts: list[Any], parts_of: list[int] | None = None) -> pl.DataFrame:
    """The kept rows of ``parts`` (or of the parts at ``parts_of``) in mix order: ``_part``, ``_row`` (place in
    that part's frame), ``prompt``/``chosen``/``rejected`` (role and content), ``margin``, ``source``,
    ``source_index``."""
    frames = []
    for i in parts_of if parts_of is not None else range(len(parts)):
        df = parts[i].df
        frames.append(
            df.with_row_index("_row")
            .filter(pl.col("stage") == "kept")
            .select(
                pl.lit(i, dtype=pl.Int64).alias("_part"),
                pl.col("_row").cast(pl.Int64),
                *[_plain(c) for c in ("prompt", "chosen", "rejected")],
                pl.col("margin").cast(pl.Float64),
                pl.lit(parts[i].src.label).alias("source"),
                pl.col("source_index").cast(pl.Int64),
            )
        )
    return pl.concat(frames) if frames else pl.DataFrame()


def apply_drops(parts: list[Any], pooled: pl.DataFrame, drops: pl.DataFrame) -> int:
    """Mark the pooled rows at ``drops["_at"]`` dropped with ``drops["reason"]`` and ``drops["detail"]``."""
    if not drops.height:
        return 0
    where = pooled.select("_part", "_row")[drops["_at"]].with_columns(drops["reason"], drops["detail"])
    for (i,), mine in where.group_by("_part", maintain_order=True):
        parts[i].df = mark_dropped(parts[i].df, mine["_row"], mine["reason"], mine["detail"])
    return drops.height


def decontaminate(parts: list[Any], evalsets: tuple[str, ...], answers: bool, token: Any = None) -> dict:
    """Drop contaminated rows; returns the manifest's ``decontamination`` section: per eval set its items,
    where it came from, and the rows removed."""
    from prefkit.select.decontaminate import build_index, decontaminate_reasons
    from prefkit.select.evalsets import resolve_evalset

    loaded = [resolve_evalset(spec, token=token) for spec in evalsets]
    index = build_index({name: items for name, items, _ in loaded})
    pooled = pool(parts)
    found = decontaminate_reasons(pooled, index, answers=answers) if pooled.height else None
    removed: dict[str, int] = {}
    if found is not None and found.height:
        detail = pl.format("eval set {} item {}", "eval_set", "eval_index")
        apply_drops(
            parts, pooled, found.select(pl.col("_row").alias("_at"), "reason", detail.alias("detail"))
        )
        removed = dict(found.group_by("eval_set").len().iter_rows())
    sets = [
        {"name": name, "items": len(items), **where, "rows_removed": removed.get(name, 0)}
        for name, items, where in loaded
    ]
    return {"sets": sets, "answers": answers, "n": index.n, "min_words": index.min_words}


def near_dedup(parts: list[Any], mode: str, threshold: float, seed: int | None) -> dict:
    """Drop near-duplicates across all parts; returns the manifest's ``near_dedup`` section. A dropped row's
    ``_kept_part`` / ``_kept_row`` point at the row kept for it (:func:`kept_row_details` turns them into ids)."""
    from prefkit.select.near_dedup import DEFAULT_NUM_PERM, DEFAULT_SHINGLE, near_dedup_reasons

    pooled = pool(parts)
    found = None
    if pooled.height:
        found = near_dedup_reasons(pooled, mode=mode, threshold=threshold, seed=seed or 0)  # type: ignore[arg-type]
    if found is not None and found.height:
        kept = pooled[found["kept_row"]]
        drops = pl.DataFrame(
            {"_at": found["_row"], "reason": found["reason"], "detail": [None] * found.height}
        )
        apply_drops(parts, pooled, drops.cast({"detail": pl.String}))
        where = pooled.select("_part", "_row")[found["_row"]]
        for (i,), mine in where.with_columns(kept["_part"].alias("kp"), kept["_row"].alias("kr")).group_by(
            "_part", maintain_order=True
        ):
            df = parts[i].df
            for name, values in (("_kept_part", mine["kp"]), ("_kept_row", mine["kr"])):
                base = df[name] if name in df.columns else pl.Series(name, [None] * df.height, dtype=pl.Int64)
                df = df.with_columns(base.scatter(mine["_row"], values))
            parts[i].df = df
    return {
        "mode": mode,
        "threshold": threshold,
        "num_perm": DEFAULT_NUM_PERM,
        "shingle_words": DEFAULT_SHINGLE,
        "seed": seed or 0,
        "rows_removed": 0 if found is None else found.height,
    }


def kept_row_details(parts: list[Any], fields: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
    """Write the ``detail`` of near-duplicate rows: the kept row's ``id`` in the data files (computed with the
    set's final ``fields``), its source and index; drops the pointer columns."""
    from prefkit.record import record_ids

    for part in parts:
        df = part.df
        if "_kept_part" not in df.columns:
            continue
        at = df.select(pl.col("_kept_part").is_not_null().arg_true()).to_series()
        details = []
        for kp, kr in df[at].select("_kept_part", "_kept_row").iter_rows():
            row = parts[kp].df[kr]
            rid = record_ids(row, fields)[0]
            details.append(f"kept id {rid} ({parts[kp].src.label} row {row['source_index'][0]})")
        detail = df["detail"].scatter(at, pl.Series(details, dtype=pl.String))
        part.df = df.with_columns(detail).drop("_kept_part", "_kept_row")


def _answer_lengths(pooled: pl.DataFrame, target: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """Chosen and rejected answer lengths: tokens by TRL's rule with a tokenizer, else characters."""
    if target is not None and getattr(target, "tokenizer", None) is not None:
        from prefkit.chat.lengths import message_token_lengths
        from prefkit.record import frame_rows

        prompts, chosen, rejected, extras = frame_rows(pooled)
        lengths = message_token_lengths(
            target.tokenizer, target.renderer, prompts, chosen, rejected, extras=extras
        )
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


def length_balance(parts: list[Any], target: Any = None) -> dict:
    """Balance the chosen-longer share per output split; returns the manifest's ``length_balance`` section."""
    from prefkit.select.length_balance import length_balance_drops, length_bias

    out: dict[str, Any] = {"tolerance": 0.01, "splits": {}}
    for name in dict.fromkeys(p.out for p in parts):
        pooled = pool(parts, [i for i, p in enumerate(parts) if p.out == name])
        if not pooled.height:
            continue
        chosen, rejected, unit = _answer_lengths(pooled, target)
        margin = pooled["margin"]
        drop = length_balance_drops(chosen, rejected, margin, tolerance=0.01)
        before = length_bias(chosen, rejected, margin)["chosen_longer_fraction"]
        keep = np.ones(len(chosen), bool)
        keep[drop] = False
        after = length_bias(chosen[keep], rejected[keep])["chosen_longer_fraction"] if keep.any() else None
        drops = pl.DataFrame(
            {"_at": drop, "reason": ["length_balance"] * len(drop), "detail": [None] * len(drop)},
            schema={"_at": pl.Int64, "reason": pl.String, "detail": pl.String},
        )
        apply_drops(parts, pooled, drops)
        out["unit"] = unit
        out["splits"][name] = {
            "chosen_longer_before": before,
            "chosen_longer_after": after,
            "rows_removed": len(drop),
        }
    return out
