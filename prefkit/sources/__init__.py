"""Open a source: a Hub dataset id or a local file/folder, as splits read lazily in record batches.

Hub ids go through the real ``datasets``/``huggingface_hub`` clients (:mod:`prefkit.sources.hub`); the revision is
resolved to a commit sha first and the load is pinned to it. Local files and folders: :mod:`prefkit.sources.local`.
Splits and their batches: :mod:`prefkit.sources.splits`. Source specs with mixing weights:
:mod:`prefkit.sources.spec`; presets: :mod:`prefkit.formats.presets`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from prefkit.errors import SourceError
from prefkit.sources.hub import read_hub
from prefkit.sources.local import LOCAL_SUFFIXES, head, load_local
from prefkit.sources.source import Source
from prefkit.sources.splits import (
    LazySplit,
    ParquetSplit,
    StreamChanged,
    plain_split,
    split_batches,
)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

__all__ = [
    "HUB_ID",
    "LazySplit",
    "ParquetSplit",
    "Source",
    "StreamChanged",
    "head",
    "load_source",
    "split_batches",
]


def non_null_counts(table: pa.Table | LazySplit, columns: list[str]) -> dict[str, int]:
    """Non-null values per column (a parquet file answers from its statistics where it can; the other columns
    are read in batches, together)."""
    out = {}
    rest = []
    for name in columns:
        count = table.non_null(name) if isinstance(table, LazySplit) else None
        if count is None and not isinstance(table, LazySplit):
            column = table.column(name)
            count = len(column) - column.null_count
        if count is None:
            rest.append(name)
        else:
            out[name] = count
    if rest:
        counts = dict.fromkeys(rest, 0)
        for batch in split_batches(table, rest):
            for name in rest:
                column = batch.column(name)
                counts[name] += len(column) - column.null_count
        out.update(counts)
    return {name: out[name] for name in columns}


def load_source(
    source: str | Path,
    *,
    split: str | list[str] | None = None,
    revision: str | None = None,
    config: str | None = None,
    data_dir: str | None = None,
    token: str | bool | None = None,
    sample: int | None = None,
) -> Source:
    """Open ``source`` (Hub id or local path) and return all its splits, or those named in ``split``.

    Only the wanted splits' files are downloaded; ``sample`` reads just the first rows of each split (streamed
    from the Hub). Raises :class:`SourceError` with a hint for anything that cannot be read."""
    splits = [split] if isinstance(split, str) else split
    path = Path(source)
    if path.exists():
        loaded, info = load_local(path, data_dir=data_dir)
        chosen = _select_splits(loaded, splits, str(source))
        src = Source(str(source), "local", {k: plain_split(v) for k, v in chosen.items()}, data_dir=data_dir)
        src.manifest = info.pop("manifest", None)
        src.info.update(info)
        if sample is not None:
            src.splits = {name: head(table, sample) for name, table in src.splits.items()}
            src.info["sample"] = sample
        return src
    text = str(source)
    if not HUB_ID.match(text) or text.startswith((".", "/", "~")) or Path(text).suffix in LOCAL_SUFFIXES:
        raise SourceError(
            f"{text!r} is neither an existing file or folder nor a Hub dataset id",
            "check the path, or pass a Hub id like `namespace/name`",
        )

    hub_src = read_hub(
        text, splits=splits, revision=revision, config=config, data_dir=data_dir, token=token, sample=sample
    )
    hub_src.splits = {k: plain_split(v) for k, v in hub_src.splits.items()}  # dictionary / binary / decimal
    return hub_src


def _select_splits(
    tables: dict[str, pa.Table | LazySplit], wanted: list[str] | None, name: str
) -> dict[str, pa.Table | LazySplit]:
    if not wanted:
        return tables
    missing = [s for s in wanted if s not in tables]
    if missing:
        raise SourceError(
            f"split {missing[0]!r} not found in {name}; available splits: {', '.join(tables)}",
            f"pass one of them with --split (e.g. --split {next(iter(tables))})",
        )
    return {s: tables[s] for s in wanted}
