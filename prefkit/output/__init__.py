"""What goes into a set folder: rejects (:mod:`.rejects`), the manifest (:mod:`.manifest`), exports
(:mod:`.exports`), statistics (:mod:`.stats`) and the one dataset card (:mod:`.card`); the folder itself (its layout,
the one atomic writer, the lock) is :mod:`prefkit.store`, whose reading and writing names this package re-exports.

Data files are written as batches arrive (:class:`ShardWriter`: shards of at most 500 MB, like ``push_to_hub``'s),
and so are rejects (:class:`ParquetFile`, the one parquet writer), so a set of any size is written with memory for
one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.output.card import render_card
from prefkit.output.exports import require_trl_shape
from prefkit.record import features_dict
from prefkit.store.folder import (
    CARD_NAME,
    DATA_DIR,
    MANIFEST_NAME,
    REJECTS_DIR,
    OutputFolder,
    content_digest,
    read_output,
    shard_name,
    split_files,
    split_sizes,
    staged_folder,
)
from prefkit.store.manifest_model import Manifest, checked_manifest
from prefkit.store.writer import ParquetFile, ShardWriter, write_parquet, write_text

__all__ = [
    "CARD_NAME",
    "DATA_DIR",
    "MANIFEST_NAME",
    "REJECTS_DIR",
    "OutputFolder",
    "ParquetFile",
    "ShardWriter",
    "read_output",
    "refresh_card",
    "require_trl_shape",
    "staged_folder",
    "write_manifest",
    "write_output",
    "write_parquet",
    "write_shard",
    "write_split",
    "write_text",
]


def write_manifest(out_dir: Path | str, manifest: Manifest | dict) -> None:
    """Write ``OUT/prefkit.json``, through the :class:`Manifest` model (a section of the wrong type is an error
    here, not in a later reader)."""
    write_text(Path(out_dir) / MANIFEST_NAME, checked_manifest(manifest).to_json())


def write_split(out_dir: Path, split: str, table: pa.Table, shard_rows: int | None = None) -> list[Path]:
    """Write one split's data shards (replacing any previous shards of that split): at most 500 MB of Arrow data
    each (and ``shard_rows`` rows, when given)."""
    data_dir = out_dir / DATA_DIR
    for old in split_files(data_dir, split):
        old.unlink()
    writer = ShardWriter(data_dir, split, max_rows=shard_rows)
    writer.write(table)
    return writer.close()


def write_shard(table: pa.Table, data_dir: Path, split: str, index: int, total: int) -> Path:
    """Write one data shard atomically, named by its content (:func:`prefkit.store.folder.content_digest`)."""
    plain = data_dir / shard_name(split, index, total)
    write_parquet(table, plain)
    path = plain.with_name(shard_name(split, index, total, content_digest(plain)))
    plain.replace(path)
    return path


def write_output(
    out_dir: Path | str,
    splits: dict[str, pa.Table],
    rejects: dict[str, pa.Table],
    manifest: dict,
    *,
    overwrite: bool = False,
    shard_rows: int | None = None,
    extra_files: Callable[[dict], dict[str, str]] | None = None,
    sources: tuple[Path, ...] = (),
) -> Path:
    """Write a whole output folder atomically: data shards, rejects, manifest, dataset card, and the text files
    ``extra_files(manifest)`` returns (name → content; called once the data files are listed in the manifest).

    A split with no rows gets no data file (``datasets`` cannot load an empty split); its counts stay in the
    manifest. ``sources``: local source paths the folder must not be, contain or lie inside."""
    out_dir = Path(out_dir)
    with staged_folder(out_dir, overwrite=overwrite, sources=sources) as stage:
        for split, table in splits.items():
            paths = write_split(stage, split, table, shard_rows) if table.num_rows else []
            manifest["splits"][split]["files"] = [p.relative_to(stage).as_posix() for p in paths]
        for split, table in rejects.items():
            write_parquet(table, stage / REJECTS_DIR / f"{split}.parquet", features=False, fast=True)
        schemas = {name: t.schema for name, t in splits.items() if t.num_rows}
        finish_folder(stage, manifest, schemas, Path(out_dir).resolve().name, extra_files)
    return out_dir


def finish_folder(
    stage: Path,
    manifest: dict,
    schemas: dict[str, pa.Schema],
    name: str,
    extra_files: Callable[[dict], dict[str, str]] | None = None,
) -> None:
    """The files written once the data files are: an export's own files (``extra_files(manifest)``: name → text),
    the manifest and the dataset card."""
    for file, text in (extra_files(manifest) if extra_files else {}).items():
        write_text(stage / file, text)
    write_manifest(stage, manifest)
    refresh_card(stage, manifest, schemas, name=name)


def refresh_card(
    out_dir: Path | str,
    manifest: Manifest | dict | None = None,
    schemas: dict[str, pa.Schema] | None = None,
    name: str | None = None,
) -> None:
    """(Re)write OUT/README.md from the manifest and the data files' schema (``name``: the set's folder name, when
    ``out_dir`` is its staging folder)."""

    out_dir = Path(out_dir)
    if manifest is None or schemas is None:
        folder = read_output(out_dir)
        manifest = folder.manifest
        schemas = {s: pq.read_schema(paths[0]) for s, paths in folder.shards.items()}
    schema = next(iter(schemas.values()), None)
    features = {} if schema is None else features_dict(schema.remove_metadata())
    typed = Manifest.read(manifest)
    shards = {split: split_files(out_dir / DATA_DIR, split) for split in typed.split_entries}
    sizes = {split: split_sizes(paths) for split, paths in shards.items() if paths}
    write_text(out_dir / CARD_NAME, render_card(typed, features, name=name or out_dir.name, sizes=sizes))
