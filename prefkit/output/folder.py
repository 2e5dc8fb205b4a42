"""The output folder's layout, and reading it: what `build` writes and `reflogps` / `push` / `stats` read.

```
OUT/
  README.md                      dataset card; YAML `configs` so load_dataset(OUT) works
  data/<split>-00000-of-0000N.parquet
  rejects/<split>.parquet        every row not kept: source, source_index, stage, reason, original fields
  prefkit.json                   manifest
```

Every write is atomic (:mod:`prefkit.output.writer`): whole folders are staged next to OUT by
:func:`staged_folder` and renamed into place.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
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
