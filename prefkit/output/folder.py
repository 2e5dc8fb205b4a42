"""The output folder's layout, and reading it: what `build` writes and `reflogps` / `push` / `stats` read.

```
OUT/
  README.md                      dataset card; YAML `configs` so load_dataset(OUT) works
  data/<split>-00000-of-0000N-<digest>.parquet
  rejects/<split>.parquet        every row not kept: source, source_index, stage, reason, original fields
  prefkit.json                   manifest
```

Every write is atomic (:mod:`prefkit.output.writer`): whole folders are staged next to OUT by
:func:`staged_folder` and renamed into place.
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.errors import OutputError
from prefkit.output.writer import staged_dir, swap_in

MANIFEST_NAME = "prefkit.json"
CARD_NAME = "README.md"
DATA_DIR = "data"
REJECTS_DIR = "rejects"
#: the most Arrow bytes a data shard holds: ``push_to_hub``'s ``max_shard_size`` (500MB)
SHARD_BYTES = 500 * 10**6


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


def split_sizes(paths: list[Path]) -> dict[str, int]:
    """A split's size as ``datasets`` records it (``dataset_info.splits`` of a card): ``num_examples`` (rows),
    ``num_bytes`` (uncompressed Arrow bytes) and ``download_size`` (bytes of the Parquet files)."""
    metas = [pq.read_metadata(p) for p in paths]
    return {
        "num_examples": sum(m.num_rows for m in metas),
        "num_bytes": sum(m.row_group(i).total_byte_size for m in metas for i in range(m.num_row_groups)),
        "download_size": sum(p.stat().st_size for p in paths),
    }


def shard_name(split: str, index: int, total: int, digest: str | None = None) -> str:
    """``<split>-00000-of-00001[-<digest>].parquet``: the Hub's shard names, with the file's content digest."""
    return f"{split}-{index:05d}-of-{total:05d}{'-' + digest if digest else ''}.parquet"


def content_digest(path: Path) -> str:
    """The first 16 hex digits of the file's SHA-256: shard names change whenever their rows do.

    ``datasets`` caches ``load_dataset(OUT)`` under a hash of the card, which lists the data files by name; with
    the same names a rebuilt folder holding other rows of the same size would load the previous build's rows."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def split_files(data_dir: Path, split: str) -> list[Path]:
    """The shards of exactly ``split`` (``train-…`` must not pick up a split named ``train-extra``)."""
    pattern = re.compile(rf"{re.escape(split)}-\d{{5}}-of-\d{{5}}(?:-[0-9a-f]{{16}})?\.parquet")
    return sorted(
        p for p in data_dir.glob(f"{glob.escape(split)}-*-of-*.parquet") if pattern.fullmatch(p.name)
    )


def is_prefkit_folder(path: Path) -> bool:
    """Whether ``path`` is an output folder prefkit wrote (it holds prefkit's manifest)."""
    try:
        manifest = json.loads((Path(path) / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "prefkit_version" in manifest


def check_target(out_dir: Path, overwrite: bool, sources: tuple[Path, ...] = ()) -> Path:
    """The resolved output folder, or an :class:`OutputError` when writing it could destroy what prefkit did not
    make: OUT is, contains or lies inside a local source; OUT exists (without ``overwrite``); OUT exists and is
    not a prefkit output folder (``overwrite`` replaces only those)."""
    out = Path(out_dir).expanduser().resolve()
    for src in sources:
        src = Path(src).expanduser().resolve()
        if out == src or out in src.parents or src in out.parents:
            how = "is" if out == src else ("contains" if out in src.parents else "lies inside")
            raise OutputError(
                f"the output folder {str(out_dir)!r} {how} the source {str(src)!r}",
                "write the set to a folder of its own, outside the sources (e.g. -o ../my-set)",
            )
    if out.exists() and not out.is_dir():
        raise OutputError(f"{str(out_dir)!r} exists and is not a folder", "choose another -o")
    if out.exists() and not overwrite:
        raise OutputError(
            f"output folder {str(out_dir)!r} already exists",
            "pass --overwrite to replace it, or choose another -o",
        )
    if out.exists() and not is_prefkit_folder(out):
        raise OutputError(
            f"{str(out_dir)!r} exists and is not a prefkit output folder (it has no {MANIFEST_NAME}); "
            "--overwrite only replaces folders prefkit wrote",
            "choose a new -o (prefkit never deletes what it did not write)",
        )
    return out


@contextmanager
def staged_folder(
    out_dir: Path | str, overwrite: bool = False, sources: tuple[Path, ...] = ()
) -> Iterator[Path]:
    """Yield a temporary folder next to ``out_dir``; on success it atomically becomes ``out_dir``.

    On any error the staging folder is removed and ``out_dir`` is left as it was. Refuses targets that could
    destroy data prefkit did not write (:func:`check_target`); removes what killed runs left next to it.
    """
    out = check_target(Path(out_dir), overwrite, sources)
    with staged_dir(out) as stage:
        yield stage
        swap_in(stage, out)


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
    except (OSError, ValueError, RecursionError) as err:
        raise OutputError(
            f"cannot read {manifest_path}: {err}", "rebuild the folder with `prefkit build`"
        ) from None
    splits = manifest.get("splits", {}) if isinstance(manifest, dict) else None
    if not isinstance(splits, dict) or not all(isinstance(c, dict) for c in splits.values()):
        raise OutputError(
            f"{manifest_path} is not a prefkit manifest (a JSON object with `splits`, one object per split)",
            "rebuild the folder with `prefkit build`",
        )
    shards: dict[str, list[Path]] = {}
    for split, counts in manifest.get("splits", {}).items():
        files = split_files(path / DATA_DIR, split)
        if not files and isinstance(counts, dict) and counts.get("kept") == 0:
            continue  # a split that kept no rows has no data file (datasets cannot load an empty split)
        if not files:
            raise OutputError(
                f"split {split!r} has no data files in {path / DATA_DIR}",
                "rebuild the folder with `prefkit build`",
            )
        for file in files:
            _check_parquet(file)
        shards[split] = files
    return OutputFolder(path=path, manifest=manifest, shards=shards)


def _check_parquet(path: Path) -> None:
    """A data file's footer reads (a truncated copy or an interrupted download does not)."""
    try:
        pq.read_metadata(path)
    except (OSError, pa.ArrowException) as err:
        first = " ".join(str(err).split())[:200]
        raise OutputError(
            f"data file {str(path)!r} cannot be read ({first})",
            "the file is damaged (a truncated copy?): rebuild the folder with `prefkit build`",
        ) from None


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


#: the first ``datasets`` release that decodes ``Json`` inside message lists (a message's ``tool_calls``)
NESTED_JSON_DATASETS = (5, 0)


def nested_json_warnings(splits: dict[str, pa.Table]) -> list[str]:
    """A sentence when the set has messages with ``tool_calls`` and the installed ``datasets`` would load them as
    JSON text rather than objects (TRL's chat templates then cannot read them). Reads the installed version from
    the package metadata: importing ``datasets`` (and pandas) costs a build 0.4 s."""
    from importlib.metadata import version

    tool_calls = any(
        pa.types.is_list(dtype) and dtype.value_type.get_field_index("tool_calls") >= 0
        for table in splits.values()
        for dtype in (
            table.schema.field(n).type for n in ("prompt", "chosen", "rejected") if n in table.column_names
        )
    )
    if not tool_calls:
        return []
    installed = version("datasets")
    if tuple(int(p) for p in installed.split(".")[:2] if p.isdigit()) >= NESTED_JSON_DATASETS:
        return []
    return [
        f"the set's messages hold tool_calls, which datasets {installed} loads as JSON text "
        "(datasets >= 5.0 decodes them): upgrade datasets before training on it with load_dataset"
    ]
