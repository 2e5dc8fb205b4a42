"""The build pipeline (`prefkit build`): sources → canonical records → validation and filters → output folder.

Every row read ends in exactly one place: kept, dropped by a filter (with its reason) or invalid (with the
validation error); the manifest's counts add up (``read = kept + dropped + invalid`` per split and reason).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from prefkit import __version__
from prefkit.filters import SELECTION_REASONS, FilterOptions, classify
from prefkit.formats import Mapping, detect, normalise, used_columns
from prefkit.progress import track
from prefkit.records import ARROW_SCHEMA, RECORD_COLUMNS
from prefkit.sources import Source, load_source


@dataclass
class SplitResult:
    """One split of one source after classification."""

    kept: pa.Table
    rejects: pa.Table
    counts: dict[str, Any]


@dataclass
class BuildResult:
    """What `build` produced: the kept rows, every rejected row, and the manifest."""

    splits: dict[str, pa.Table]
    rejects: dict[str, pa.Table]
    manifest: dict
    output: Path | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def dataset(self):
        """The kept rows as a ``datasets.DatasetDict``."""
        import datasets

        return datasets.DatasetDict({name: datasets.Dataset(table) for name, table in self.splits.items()})

    def summary(self) -> dict:
        """The JSON summary the CLI prints with --json."""
        return {
            "output": str(self.output) if self.output else None,
            "seconds": round(self.seconds, 3),
            "splits": self.manifest["splits"],
            "totals": self.manifest["totals"],
        }


def stable_ids(df: pl.DataFrame) -> pl.Series:
    """A stable 16-hex-digit hash of each row's normalised prompt/chosen/rejected."""
    encoded = df.select(pl.struct("prompt", "chosen", "rejected").struct.json_encode()).to_series()
    return pl.Series(
        "id", [hashlib.blake2b(s.encode(), digest_size=8).hexdigest() for s in encoded], dtype=pl.String
    )


def to_records(df: pl.DataFrame, source_label: str) -> pa.Table:
    """Kept rows as an Arrow table with exactly the canonical schema (plain, not large_, types)."""
    out = df.with_columns(pl.lit(source_label).alias("source"), stable_ids(df)).select(RECORD_COLUMNS)
    return out.to_arrow().cast(ARROW_SCHEMA)


REJECT_META = pa.schema(
    [
        ("source", pa.string()),
        ("source_index", pa.int64()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("margin", pa.float64()),
    ]
)


def reject_table(df: pl.DataFrame, raw: pa.Table, source_label: str, full: bool = False) -> pa.Table:
    """Rows not kept: source, source_index, stage, reason, margin, then the row's original fields.

    The original fields are the source columns the build read (its mapping), or all columns with ``full``.
    Rows dropped by a selection (``--top``, ``--max-rows``) carry null original fields unless ``full``: they are
    good rows not chosen, often most of the source, and ``source_index`` at the pinned revision finds them.
    """
    meta = df.select(pl.lit(source_label).alias("source"), "source_index", "stage", "reason", "margin")
    meta_table = meta.to_arrow().cast(REJECT_META)
    index = meta["source_index"]
    if not full:
        index = pl.select(
            pl.when(~pl.lit(meta["reason"]).is_in(list(SELECTION_REASONS))).then(pl.lit(index))
        ).to_series()
    original = raw.take(index.to_arrow())
    for name in original.column_names:
        column = original.column(name)
        meta_table = meta_table.append_column(
            f"original.{name}" if name in REJECT_META.names else name, column
        )
    return meta_table


def classify_split(
    raw: pa.Table, mapping: Mapping, options: FilterOptions, source_label: str, full_rejects: bool = False
) -> SplitResult:
    """Normalise, validate and filter one split of one source."""
    df = normalise(raw, mapping).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("source_index"))
    df = classify(df, options)
    kept = df.filter(pl.col("stage") == "kept")
    if options.top is not None:
        kept = kept.sort("_rank")
    rejected = df.filter(pl.col("stage") != "kept")
    return SplitResult(
        kept=to_records(kept, source_label),
        rejects=reject_table(rejected, raw, source_label, full_rejects),
        counts=count(df),
    )


def count(df: pl.DataFrame) -> dict[str, Any]:
    by = Counter()
    for stage, reason, n in df.group_by("stage", "reason").len().iter_rows():
        by[(stage, reason)] += n
    return {
        "read": df.height,
        "kept": by[("kept", None)],
        "dropped": dict(sorted((r, n) for (s, r), n in by.items() if s == "dropped")),
        "invalid": dict(sorted((r, n) for (s, r), n in by.items() if s == "invalid")),
    }


def merge_counts(a: dict, b: dict) -> dict:
    out = {"read": a["read"] + b["read"], "kept": a["kept"] + b["kept"]}
    for key in ("dropped", "invalid"):
        merged = Counter(a[key]) + Counter(b[key])
        out[key] = dict(sorted(merged.items()))
    return out


EMPTY_COUNTS = {"read": 0, "kept": 0, "dropped": {}, "invalid": {}}


def build(
    sources: str | Path | list[str | Path],
    output: str | Path | None = None,
    *,
    split: str | list[str] | None = None,
    revision: str | None = None,
    config: str | None = None,
    data_dir: str | None = None,
    format: str | None = None,
    prompt_col: str | None = None,
    chosen_col: str | None = None,
    rejected_col: str | None = None,
    system_col: str | None = None,
    margin_col: str | None = None,
    keep_ties: bool = False,
    keep_residue: bool = False,
    min_margin: float | None = None,
    top: int | None = None,
    max_rows: int | None = None,
    seed: int | None = None,
    full_rejects: bool = False,
    overwrite: bool = False,
    token: str | bool | None = None,
    progress: bool = False,
    command: str | None = None,
) -> BuildResult:
    """Build a clean preference set from one or more sources and (when ``output`` is given) write it.

    >>> result = build("HuggingFaceH4/ultrafeedback_binarized", "uf", split="train_prefs", min_margin=1)  # doctest: +SKIP
    >>> result.dataset["train_prefs"][0]["prompt"]  # doctest: +SKIP
    [{'role': 'user', 'content': '...'}]
    """
    start = time.perf_counter()
    options = FilterOptions(
        keep_ties=keep_ties,
        keep_residue=keep_residue,
        min_margin=min_margin,
        top=top,
        max_rows=max_rows,
        seed=seed,
    )
    columns = {"prompt": prompt_col, "chosen": chosen_col, "rejected": rejected_col, "system": system_col}
    specs = [sources] if isinstance(sources, (str, Path)) else list(sources)
    loaded: list[Source] = [
        load_source(s, split=split, revision=revision, config=config, data_dir=data_dir, token=token)
        for s in track(specs, desc="loading", show=progress and len(specs) > 1)
    ]
    kept: dict[str, list[pa.Table]] = {}
    rejects: dict[str, list[pa.Table]] = {}
    counts: dict[str, dict] = {}
    described = []
    work = [(src, name, table) for src in loaded for name, table in src.splits.items()]
    for src, name, table in track(work, desc="normalising", show=progress):
        mapping = detect(table, format=format, columns=columns, margin_col=margin_col)
        raw = table if full_rejects else table.select(used_columns(mapping))
        result = classify_split(raw, mapping, options, src.label, full_rejects)
        kept.setdefault(name, []).append(result.kept)
        rejects.setdefault(name, []).append(result.rejects)
        counts[name] = merge_counts(counts.get(name, EMPTY_COUNTS), result.counts)
        described.append(
            {**src.describe(), "split": name, "format": mapping.to_dict(), "counts": result.counts}
        )
    splits = {name: pa.concat_tables(parts) for name, parts in kept.items()}
    reject_tables = {
        name: pa.concat_tables(parts, promote_options="permissive") for name, parts in rejects.items()
    }
    manifest = make_manifest(loaded, described, counts, options, command)
    result = BuildResult(splits=splits, rejects=reject_tables, manifest=manifest)
    if output is not None:
        from prefkit.output import write_output

        result.output = write_output(output, splits, reject_tables, manifest, overwrite=overwrite)
    result.seconds = time.perf_counter() - start
    return result


def make_manifest(
    loaded: list[Source], described: list[dict], counts: dict, options: FilterOptions, command: str | None
) -> dict:
    totals = EMPTY_COUNTS
    for c in counts.values():
        totals = merge_counts(totals, c)
    sources = []
    for src in loaded:
        entry = {k: v for k, v in src.describe().items() if v is not None}
        entry["splits"] = {
            d["split"]: {"format": d["format"], **d["counts"]} for d in described if d["source"] == src.label
        }
        sources.append(entry)
    return {
        "prefkit_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "sources": sources,
        "parameters": options.to_dict(),
        "splits": counts,
        "totals": totals,
    }
