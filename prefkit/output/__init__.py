"""The output folder: one atomic writer (:mod:`.writer`), the folder's layout and reading (:mod:`.folder`),
rejects (:mod:`.rejects`), the manifest (:mod:`.manifest`), exports (:mod:`.exports`), statistics
(:mod:`.stats`) and the one dataset card (:mod:`.card`).

```
OUT/
  README.md                      dataset card; YAML `configs` so load_dataset(OUT) works
  data/<split>-00000-of-0000N-<digest>.parquet
  rejects/<split>.parquet        every row not kept: source, source_index, stage, reason, original fields
  prefkit.json                   manifest
```

Data files are written as batches arrive (:class:`ShardWriter`: shards of at most 500 MB, like ``push_to_hub``'s),
and so are rejects (:class:`RejectsWriter`), so a set of any size is written with memory for one batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.output.folder import (
    CARD_NAME,
    DATA_DIR,
    MANIFEST_NAME,
    REJECTS_DIR,
    SHARD_BYTES,
    OutputFolder,
    content_digest,
    read_output,
    require_trl_shape,
    shard_name,
    split_files,
    split_sizes,
    staged_folder,
)
from prefkit.output.writer import hf_schema, os_error, write_json, write_parquet, write_text

__all__ = [
    "CARD_NAME",
    "DATA_DIR",
    "MANIFEST_NAME",
    "REJECTS_DIR",
    "OutputFolder",
    "RejectsWriter",
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


def write_manifest(out_dir: Path | str, manifest: dict) -> None:
    """Write ``OUT/prefkit.json``."""
    write_json(Path(out_dir) / MANIFEST_NAME, manifest)


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
    """Write one data shard atomically, named by its content (:func:`prefkit.output.folder.content_digest`)."""
    plain = data_dir / shard_name(split, index, total)
    write_parquet(table, plain)
    path = plain.with_name(shard_name(split, index, total, content_digest(plain)))
    plain.replace(path)
    return path


class ShardWriter:
    """One split's data shards, written as tables arrive: a shard is closed once it holds ``max_bytes`` of Arrow
    data (500 MB, as ``push_to_hub`` shards; or ``max_rows`` rows), and :meth:`close` names them
    ``<split>-<k>-of-<N>-<digest>.parquet``. Files carry the ``datasets`` features and use snappy, like
    :func:`prefkit.output.writer.write_parquet`. A split that gets no row gets no file."""

    def __init__(self, data_dir: Path, split: str, max_bytes: int = SHARD_BYTES, max_rows: int | None = None):
        self.data_dir = Path(data_dir)
        self.split = split
        self.max_bytes = max_bytes
        self.max_rows = max_rows
        self.rows = 0
        self.schema: pa.Schema | None = None
        self._done: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._path: Path | None = None
        self._bytes = 0
        self._shard_rows = 0

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        if self.schema is None:
            self.schema = hf_schema(table.schema)
        table = table.cast(self.schema)
        per_row = max(table.nbytes / table.num_rows, 1.0)
        while table.num_rows:
            if self._writer is None:
                self._open()
            room = self.max_bytes - self._bytes
            fit = min(table.num_rows, max(int(room // per_row), 0))
            if self.max_rows is not None:
                fit = min(fit, self.max_rows - self._shard_rows)
            if fit == 0 and self._shard_rows == 0:
                fit = 1  # a row larger than a shard goes alone
            if fit == 0:
                self._close_shard()
                continue
            self._put(table.slice(0, fit), fit * per_row)
            table = table.slice(fit)
            full = self._bytes >= self.max_bytes - per_row / 2
            if full or (self.max_rows is not None and self._shard_rows >= self.max_rows):
                self._close_shard()

    def _open(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._path = (
            self.data_dir / f".{self.split}.{len(self._done)}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        )
        try:
            self._writer = pq.ParquetWriter(
                self._path, self.schema, compression="snappy", use_dictionary=True
            )
        except OSError as err:
            raise os_error(err, self._path) from None
        self._bytes = 0
        self._shard_rows = 0

    def _put(self, table: pa.Table, nbytes: float) -> None:
        assert self._writer is not None and self._path is not None
        try:
            self._writer.write_table(table)
        except OSError as err:
            raise os_error(err, self._path) from None
        self._bytes += nbytes
        self._shard_rows += table.num_rows
        self.rows += table.num_rows

    def _close_shard(self) -> None:
        if self._writer is None:
            return
        try:
            self._writer.close()
        except OSError as err:
            raise os_error(err, self._path) from None  # type: ignore[arg-type]
        self._done.append(self._path)  # type: ignore[arg-type]
        self._writer = None

    def close(self) -> list[Path]:
        """Close the last shard and give every shard its name; returns the paths, in order."""
        self._close_shard()
        total = len(self._done)
        paths = []
        for i, tmp in enumerate(self._done):
            path = self.data_dir / shard_name(self.split, i, total, content_digest(tmp))
            tmp.replace(path)
            paths.append(path)
        self._done = []
        return paths


class RejectsWriter:
    """``rejects/<split>.parquet`` written as tables arrive (every table cast to ``schema``): snappy, no dictionary
    encoding (large, written once, rarely read). The file is there even when no row is."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = Path(path)
        self.schema = schema
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            self._writer = pq.ParquetWriter(self._tmp, schema, compression="snappy", use_dictionary=False)
        except OSError as err:
            raise os_error(err, self.path) from None

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        try:
            self._writer.write_table(table.cast(self.schema))
        except OSError as err:
            raise os_error(err, self.path) from None
        self.rows += table.num_rows

    def close(self) -> Path:
        try:
            self._writer.close()
            self._tmp.replace(self.path)
        except OSError as err:
            raise os_error(err, self.path) from None
        return self.path


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
    manifest: dict | None = None,
    schemas: dict[str, pa.Schema] | None = None,
    name: str | None = None,
) -> None:
    """(Re)write OUT/README.md from the manifest and the data files' schema (``name``: the set's folder name, when
    ``out_dir`` is its staging folder)."""
    from prefkit.output.card import render_card
    from prefkit.record import features_dict

    out_dir = Path(out_dir)
    if manifest is None or schemas is None:
        folder = read_output(out_dir)
        manifest = folder.manifest
        schemas = {s: pq.read_schema(paths[0]) for s, paths in folder.shards.items()}
    schema = next(iter(schemas.values()), None)
    features = {} if schema is None else features_dict(schema.remove_metadata())
    shards = {split: split_files(out_dir / DATA_DIR, split) for split in manifest.get("splits", {})}
    sizes = {split: split_sizes(paths) for split, paths in shards.items() if paths}
    write_text(out_dir / CARD_NAME, render_card(manifest, features, name=name or out_dir.name, sizes=sizes))
