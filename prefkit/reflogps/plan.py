"""The plan of a reflogps job: the work shards, the settings fingerprint, and the work folder that makes a killed
run resumable.

Each split of the output folder is cut into shards of ``shard_rows`` pairs. A finished shard is a parquet file
``OUT/.reflogps-work/<split>-<index>.parquet`` holding its four columns, stamped (schema metadata) with the
run's settings fingerprint and its row range: a rerun with the same settings skips it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.errors import OutputError
from prefkit.output import OutputFolder, read_output, write_parquet, write_text
from prefkit.record import REFLOGPS_FIELDS

WORK_DIR = ".reflogps-work"
SETTINGS_NAME = "settings.json"
#: pairs per work shard: large enough for good length-sorted batches, small enough to lose little on a kill
DEFAULT_SHARD_ROWS = 2048
REF_COLUMNS = [name for name, _ in REFLOGPS_FIELDS]
PART_META_KEY = b"prefkit_reflogps"


@dataclass(frozen=True)
class Shard:
    """Rows ``start:stop`` of one split; ``number`` is its position in the whole job (rank assignment)."""

    split: str
    index: int
    start: int
    stop: int
    number: int

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}.parquet"

    @property
    def rows(self) -> int:
        return self.stop - self.start


def plan_shards(folder: OutputFolder, shard_rows: int) -> list[Shard]:
    """Every split cut into shards of ``shard_rows`` rows, in manifest split order."""
    shards: list[Shard] = []
    for split in folder.splits:
        n = sum(pq.ParquetFile(p).metadata.num_rows for p in folder.shards[split])
        for index, start in enumerate(range(0, n, shard_rows)):
            shards.append(Shard(split, index, start, min(start + shard_rows, n), len(shards)))
    return shards


def data_fingerprint(folder: OutputFolder) -> str:
    """SHA-256 over the data files' names and bytes (a rebuilt set invalidates unfinished work)."""
    digest = hashlib.sha256()
    for split in folder.splits:
        for path in folder.shards[split]:
            digest.update(f"{path.name}\0".encode())
            with open(path, "rb") as fh:
                while chunk := fh.read(8 << 20):
                    digest.update(chunk)
    return digest.hexdigest()


def settings_fingerprint(settings: dict) -> str:
    """SHA-256 of the settings that decide the values (a rerun with other settings cannot reuse the work)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def has_columns(folder: OutputFolder, names: list[str]) -> bool:
    """Whether any data file already has one of the columns ``names``."""
    return any(
        name in pq.read_schema(path).names
        for paths in folder.shards.values()
        for path in paths
        for name in names
    )


def has_ref_columns(folder: OutputFolder) -> bool:
    """Whether any data file already has a reference column."""
    return has_columns(folder, REF_COLUMNS)


def read_part_meta(path: Path) -> dict | None:
    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta[PART_META_KEY])
    except (OSError, KeyError, ValueError, pa.ArrowInvalid):
        return None


def finished_shards(work: Path, shards: list[Shard], fingerprint: str) -> set[str]:
    """Names of the shards whose part file exists with this run's fingerprint and the right row range."""
    done = set()
    for shard in shards:
        path = work / shard.name
        if path.is_file():
            meta = read_part_meta(path)
            if (
                meta
                and meta.get("fingerprint") == fingerprint
                and (meta["start"], meta["stop"])
                == (
                    shard.start,
                    shard.stop,
                )
            ):
                done.add(shard.name)
    return done


def prepare_work(
    out: Path,
    settings: dict,
    fingerprint: str,
    *,
    resume: bool,
    overwrite: bool,
    work_dir: str = WORK_DIR,
    columns: list[str] = REF_COLUMNS,
    label: str = "reference log-prob",
) -> Path:
    """Check OUT's state against this run and make the work folder ``OUT/work_dir`` ready (rank 0 only).

    * work folder from the same settings: kept (resume) unless ``resume=False``;
    * work folder from other settings: OutputError unless ``overwrite`` (then discarded);
    * no resumable work and OUT already has one of ``columns``: OutputError unless ``overwrite``.

    ``label`` names the job in the messages (``"reference log-prob"``, ``"reward-model score"``).
    """
    work = out / work_dir
    earlier = None
    if work.is_dir():
        try:
            earlier = json.loads((work / SETTINGS_NAME).read_text())
        except (OSError, ValueError):
            earlier = {}
    resumable = earlier is not None and earlier.get("fingerprint") == fingerprint
    if earlier is not None and not resumable:
        if not overwrite:
            changed = sorted(
                k
                for k in set(settings) | set(earlier.get("settings", {}))
                if settings.get(k) != earlier.get("settings", {}).get(k)
            )
            raise OutputError(
                f"{out} has unfinished {label} scoring from a run with other settings"
                + (f" (differs in: {', '.join(changed)})" if changed else ""),
                "rerun with the same options to resume it, or pass --overwrite to discard it and start over",
            )
        shutil.rmtree(work)
    elif resumable and not resume:
        shutil.rmtree(work)
        resumable = False
    if not resumable and has_columns(read_output(out), columns) and not overwrite:
        raise OutputError(
            f"{out} already has {label} columns ({', '.join(columns[:2])})",
            "pass --overwrite to recompute them (e.g. with another model)",
        )
    work.mkdir(exist_ok=True)
    if not resumable:
        write_text(
            work / SETTINGS_NAME,
            json.dumps({"fingerprint": fingerprint, "settings": settings}, indent=2, default=str) + "\n",
        )
    return work


def write_part(
    path: Path, values: dict[str, list], meta: dict, columns: list[tuple[str, pa.DataType]] = REFLOGPS_FIELDS
) -> None:
    """One finished shard's columns, written atomically, with its metadata (fingerprint, range, counts)."""
    table = pa.table({name: pa.array(values[name], type=type_) for name, type_ in columns})
    write_parquet(table, path, features=False, metadata={PART_META_KEY: json.dumps(meta).encode()})
