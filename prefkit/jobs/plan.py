"""The plan of a reflogps job: the work shards, the settings fingerprint, and the work folder that makes a killed
run resumable and lets any number of workers share the job.

Each split of the output folder is cut into shards of ``shard_rows`` pairs. A finished shard is a parquet file
``OUT/.reflogps-work/<split>-<index>.parquet`` holding its four columns, stamped (schema metadata) with the
run's settings fingerprint and its row range: a rerun with the same settings skips it. ``settings.json`` (created
exclusively, so workers starting together agree on one) holds the fingerprint; ``leases/`` the shards being
scored (:mod:`prefkit.jobs.leases`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.errors import OutputError, option
from prefkit.jobs.leases import LEASE_DIR, LeaseBook, Worker, create_exclusive, describe, read_json
from prefkit.output import MANIFEST_NAME, OutputFolder, read_output, write_parquet
from prefkit.record import REFLOGPS_FIELDS
from prefkit.store.writer import os_error

WORK_DIR = ".reflogps-work"
SETTINGS_NAME = "settings.json"
#: pairs per work shard: large enough for good length-sorted batches, small enough to lose little on a kill
DEFAULT_SHARD_ROWS = 2048
REF_COLUMNS = [name for name, _ in REFLOGPS_FIELDS]
PART_META_KEY = b"prefkit_reflogps"
#: the key of a job's settings that holds the data files' hash (the merged files' hash in the result fingerprint)
DATA_KEY = "data_sha256"


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


def files_fingerprint(paths: list[Path]) -> str:
    """SHA-256 over the files' names and bytes, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.name}\0".encode())
        with open(path, "rb") as fh:
            while chunk := fh.read(8 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def data_fingerprint(folder: OutputFolder) -> str:
    """SHA-256 over the data files' names and bytes (a rebuilt set invalidates unfinished work)."""
    return files_fingerprint([path for split in folder.splits for path in folder.shards[split]])


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


def result_fingerprint(settings: dict, data_sha256: str) -> str:
    """The fingerprint a worker started after the merge computes: the same settings over the merged data files."""
    return settings_fingerprint({**settings, DATA_KEY: data_sha256})


def completed(out: Path, name: str, fingerprint: str) -> dict | None:
    """OUT's manifest when its ``name`` section was merged by a job with this fingerprint (seen before or after
    the merge rewrote the data files), else None."""
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sec = manifest.get(name) if isinstance(manifest, dict) else None
    if isinstance(sec, dict) and fingerprint in (sec.get("fingerprint"), sec.get("result_fingerprint")):
        return manifest
    return None


def read_work_settings(work: Path) -> dict | None:
    """The work folder's settings.json: None when there is none, ``{}`` when it cannot be read."""
    return read_json(work / SETTINGS_NAME)


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare_work` found: OUT's ``manifest`` when this job is already complete, else the work
    folder to score in (``created`` by this worker, or joined)."""

    work: Path
    manifest: dict | None = None
    created: bool = False


@dataclass(frozen=True)
class WorkFolder:
    """Which job a work folder is for: the manifest section ``name`` its merge writes, the folder ``work_dir``
    under OUT, the ``columns`` the job adds (OUT holding one of them means its kind of result is there), and
    ``label``, what it adds, for messages (``"reference log-prob"``, ``"reward-model score"``)."""

    name: str = "reflogps"
    work_dir: str = WORK_DIR
    columns: tuple[str, ...] = tuple(REF_COLUMNS)
    label: str = "reference log-prob"


def prepare_work(
    out: Path,
    settings: dict,
    fingerprint: str,
    *,
    resume: bool,
    overwrite: bool,
    record: dict | None = None,
    where: WorkFolder | None = None,
) -> Prepared:
    """Check OUT's state against this job and make the work folder ready; safe when many workers start at once.

    * OUT already merged by a job with this fingerprint (and ``resume``): nothing to do (``manifest`` set);
    * work folder from the same settings: joined (its finished shards are kept) unless ``resume=False``;
    * work folder from other settings: OutputError unless ``overwrite``;
    * discarding a work folder (``overwrite`` over other settings, ``resume=False``) is refused with OutputError
      while live workers hold leases in it;
    * no work folder and OUT already has reference columns: OutputError unless ``overwrite``;
    * otherwise settings.json is created exclusively: of workers starting together one creates, the rest join.

    ``record``: extra JSON kept in settings.json (the model's provenance, for ``--merge-only``); ``where``: the
    job's work folder, what it adds and its name in messages (:class:`WorkFolder`; default: `reflogps`'s).
    """
    where = where or WorkFolder()
    name, work_dir, columns, label = where.name, where.work_dir, list(where.columns), where.label
    work = out / work_dir
    join = resume
    for _ in range(8):
        # looked at on every pass: another worker's merge may swap OUT in between (then this job is done)
        if resume and (manifest := completed(out, name, fingerprint)) is not None:
            return Prepared(work, manifest)
        earlier = read_work_settings(work)
        if earlier is not None:
            same = earlier.get("fingerprint") == fingerprint
            if same and join and _ensure_lease_dir(work):
                return Prepared(work)
            if not same and not overwrite:
                raise _other_settings(out, settings, earlier, label)
            if not same or not join:
                discard_work(out, work_dir)
            join = True  # a folder with our settings made after our discard is a concurrent worker's: join it
            continue
        if not out.is_dir():  # between the two renames of another worker's swap
            time.sleep(0.1)
            continue
        if has_columns(read_output(out), columns) and not overwrite:
            if resume and (manifest := completed(out, name, fingerprint)) is not None:
                return Prepared(work, manifest)  # merged since we looked
            raise OutputError(
                f"{out} already has {label} columns ({', '.join(columns[:2])})",
                f"pass {option('overwrite', True)} to recompute them (e.g. with another model)",
            )
        if _create_work(work, fingerprint, settings, record):
            return Prepared(work, created=True)
    raise OutputError(
        f"{work} kept changing while this worker prepared it",
        "rerun the command; workers with the same options join",
    )


def _ensure_lease_dir(work: Path) -> bool:
    try:
        (work / LEASE_DIR).mkdir(exist_ok=True)
    except FileNotFoundError:  # discarded meanwhile
        return False
    except OSError as err:
        raise os_error(err, work / LEASE_DIR) from None
    return True


def _create_work(work: Path, fingerprint: str, settings: dict, record: dict | None) -> bool:
    """Create settings.json exclusively (False when another worker did first or the folder vanished)."""
    body = {
        "fingerprint": fingerprint,
        "settings": settings,
        "run": os.urandom(8).hex(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(record or {}),
    }
    try:
        work.mkdir(exist_ok=True)
        (work / LEASE_DIR).mkdir(exist_ok=True)
        return create_exclusive(work / SETTINGS_NAME, json.dumps(body, indent=2, default=str) + "\n")
    except FileNotFoundError:
        return False
    except OSError as err:
        raise os_error(err, work) from None


def _other_settings(out: Path, settings: dict, earlier: dict, label: str) -> OutputError:
    if not isinstance(earlier.get("settings"), dict) or not earlier.get("fingerprint"):
        return OutputError(
            f"{out} has unfinished {label} scoring whose {SETTINGS_NAME} cannot be read (it is corrupted or was "
            "written only in part), so its settings are unknown",
            "pass --overwrite to discard that work and start over (refused while its workers are alive)",
        )
    before = earlier.get("settings") or {}
    changed = sorted(k for k in set(settings) | set(before) if settings.get(k) != before.get(k))
    return OutputError(
        f"{out} has unfinished {label} scoring from a run with other settings"
        + (f" (differs in: {', '.join(changed)})" if changed else ""),
        "rerun with the same options to resume (or join) it, or pass --overwrite to discard it and start over "
        "(refused while its workers are alive)",
    )


def discard_work(out: Path, work_dir: str = WORK_DIR) -> None:
    """Remove OUT's work folder, unless live workers hold leases in it (then OutputError: their work is never
    discarded). The folder is first renamed to a unique name, so of several workers discarding at once exactly
    one does, and none deletes a folder another has just made."""
    work = out / work_dir
    live = LeaseBook(work, Worker.here()).live()
    if live:
        raise OutputError(
            f"{len(live)} lease(s) in {work} are held by live workers ({describe(live)}); "
            "--overwrite/--no-resume do not discard work that live workers are doing",
            "wait for them to finish or stop them (a stopped worker's lease expires after its --lease-seconds); "
            "workers started with the same options join each other",
        )
    aside = out / f"{work_dir}.discarded-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        os.rename(work, aside)
    except FileNotFoundError:
        return
    except OSError as err:
        raise os_error(err, work) from None
    shutil.rmtree(aside, ignore_errors=True)


def write_part(
    path: Path, values: dict[str, list], meta: dict, columns: list[tuple[str, pa.DataType]] = REFLOGPS_FIELDS
) -> None:
    """One finished shard's columns, written atomically, with its metadata (fingerprint, range, counts)."""
    table = pa.table({name: pa.array(values[name], type=type_) for name, type_ in columns})
    write_parquet(table, path, features=False, metadata={PART_META_KEY: json.dumps(meta).encode()})
