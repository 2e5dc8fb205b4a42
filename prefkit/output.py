"""The output folder: what `build` writes and `reflogps` / `push` / `stats` read.

```
OUT/
  README.md                      dataset card; YAML `configs` so load_dataset(OUT) works
  data/<split>-00000-of-0000N.parquet
  rejects/<split>.parquet        every row not kept: source, source_index, stage, reason, original fields
  prefkit.json                   manifest
```

Every write is atomic: whole folders are staged next to OUT and renamed into place; single files are written
to a temporary name in the same folder and ``os.replace``d.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.errors import OutputError

MANIFEST_NAME = "prefkit.json"
CARD_NAME = "README.md"
DATA_DIR = "data"
REJECTS_DIR = "rejects"
#: rows per data shard; a shard of chat data at this size is ~100-500 MB
SHARD_ROWS = 200_000


@dataclass
class OutputFolder:
    """A built set on disk."""

    path: Path
    manifest: dict
    shards: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def splits(self) -> list[str]:
        return list(self.shards)

    def read_split(self, split: str, columns: list[str] | None = None) -> pa.Table:
        """One split as an Arrow table, shards concatenated in order."""
        return pa.concat_tables([pq.read_table(p, columns=columns) for p in self.shards[split]])

    def rejects_path(self, split: str) -> Path:
        return self.path / REJECTS_DIR / f"{split}.parquet"


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.parquet"


def split_files(data_dir: Path, split: str) -> list[Path]:
    """The shards of exactly ``split`` (``train-…`` must not pick up a split named ``train-extra``)."""
    pattern = re.compile(rf"{re.escape(split)}-\d{{5}}-of-\d{{5}}\.parquet")
    return sorted(
        p for p in data_dir.glob(f"{glob.escape(split)}-*-of-*.parquet") if pattern.fullmatch(p.name)
    )


def shard_tables(table: pa.Table, shard_rows: int = SHARD_ROWS) -> list[pa.Table]:
    n = max(1, -(-table.num_rows // shard_rows))
    return [table.slice(i * shard_rows, shard_rows) for i in range(n)]


def hf_schema(table_schema: pa.Schema) -> pa.Schema:
    """Attach the `datasets` features to the parquet schema so every reader gets the same types back."""
    from prefkit.records import features_dict

    meta = {
        b"huggingface": json.dumps(
            {"info": {"features": features_dict(table_schema.remove_metadata())}}
        ).encode()
    }
    return table_schema.remove_metadata().with_metadata(meta)


def write_parquet(table: pa.Table, path: Path, *, fast: bool = False) -> None:
    """Write one parquet file atomically (temp name in the same folder, then rename).

    Data files carry the `datasets` features in their metadata and use snappy (what `push_to_hub` writes);
    ``fast`` (rejects: large, written once, rarely read) also skips dictionary encoding.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if fast:
            pq.write_table(table, tmp, compression="snappy", use_dictionary=False)
        else:
            pq.write_table(table.cast(hf_schema(table.schema)), tmp, compression="snappy")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_manifest(out_dir: Path | str, manifest: dict) -> None:
    write_text(
        Path(out_dir) / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n"
    )


def write_split(out_dir: Path, split: str, table: pa.Table, shard_rows: int = SHARD_ROWS) -> list[Path]:
    """Write one split's data shards (replacing any previous shards of that split)."""
    data_dir = out_dir / DATA_DIR
    for old in split_files(data_dir, split):
        old.unlink()
    parts = shard_tables(table, shard_rows)
    paths = []
    for i, part in enumerate(parts):
        path = data_dir / shard_name(split, i, len(parts))
        write_parquet(part, path)
        paths.append(path)
    return paths


@contextmanager
def staged_folder(out_dir: Path | str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``out_dir``; on success it atomically becomes ``out_dir``.

    On any error the staging folder is removed and ``out_dir`` is left as it was.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise OutputError(
            f"output folder {str(out_dir)!r} already exists",
            "pass --overwrite to replace it, or choose another -o",
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{str(out_dir)!r} exists and is not a folder", "choose another -o")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    stage.chmod(0o777 & ~umask)  # mkdtemp makes 0700; the output is a normal folder
    try:
        yield stage
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(out_dir, old)
            os.replace(stage, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, out_dir)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def read_output(path: Path | str) -> OutputFolder:
    """Open a folder written by `prefkit build` (checks it is one, with a hint when not)."""
    path = Path(path)
    if not path.is_dir():
        raise OutputError(
            f"{str(path)!r} is not a folder", "pass the folder written by `prefkit build -o OUT`"
        )
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise OutputError(
            f"{str(path)!r} has no {MANIFEST_NAME}: not a prefkit output folder",
            "build it first with `prefkit build SOURCE -o OUT`",
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise OutputError(
            f"cannot read {manifest_path}: {err}", "rebuild the folder with `prefkit build`"
        ) from None
    shards: dict[str, list[Path]] = {}
    for split in manifest.get("splits", {}):
        files = split_files(path / DATA_DIR, split)
        if not files:
            raise OutputError(
                f"split {split!r} has no data files in {path / DATA_DIR}",
                "rebuild the folder with `prefkit build`",
            )
        shards[split] = files
    return OutputFolder(path=path, manifest=manifest, shards=shards)


def write_output(
    out_dir: Path | str,
    splits: dict[str, pa.Table],
    rejects: dict[str, pa.Table],
    manifest: dict,
    *,
    overwrite: bool = False,
    shard_rows: int = SHARD_ROWS,
    extra_files: Callable[[dict], dict[str, str]] | None = None,
) -> Path:
    """Write a whole output folder atomically: data shards, rejects, manifest, dataset card, and the text files
    ``extra_files(manifest)`` returns (name → content; called once the data files are listed in the manifest)."""
    out_dir = Path(out_dir)
    with staged_folder(out_dir, overwrite=overwrite) as stage:
        for split, table in splits.items():
            paths = write_split(stage, split, table, shard_rows)
            manifest["splits"][split]["files"] = [p.relative_to(stage).as_posix() for p in paths]
        for split, table in rejects.items():
            write_parquet(table, stage / REJECTS_DIR / f"{split}.parquet", fast=True)
        for name, text in (extra_files(manifest) if extra_files else {}).items():
            write_text(stage / name, text)
        write_manifest(stage, manifest)
        refresh_card(stage, manifest, {name: t.schema for name, t in splits.items()})
    return out_dir


def refresh_card(
    out_dir: Path | str, manifest: dict | None = None, schemas: dict[str, pa.Schema] | None = None
) -> None:
    """(Re)write OUT/README.md from the manifest and the data files' schema."""
    from prefkit.card import render_card

    out_dir = Path(out_dir)
    if manifest is None or schemas is None:
        folder = read_output(out_dir)
        manifest = folder.manifest
        schemas = {s: pq.read_schema(paths[0]) for s, paths in folder.shards.items()}
    schema = next(iter(schemas.values()), None)
    features = {} if schema is None else _features_dict(schema)
    write_text(out_dir / CARD_NAME, render_card(manifest, features))


def _features_dict(schema: pa.Schema) -> dict:
    from prefkit.records import features_dict

    return features_dict(schema.remove_metadata())


def require_trl_shape(folder: OutputFolder, command: str) -> None:
    """Refuse sets exported for other trainers (``--export kto|llamafactory|openrlhf``) in commands that read
    TRL's prompt/chosen/rejected shape."""
    shape = (folder.manifest.get("export") or {}).get("shape", "trl")
    if shape != "trl":
        raise OutputError(
            f"{str(folder.path)!r} was exported in the {shape!r} shape; `prefkit {command}` reads TRL's "
            "prompt/chosen/rejected shape",
            f"build the set again without --export (or with --export trl) to use `prefkit {command}`",
        )
