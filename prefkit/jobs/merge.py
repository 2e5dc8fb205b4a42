"""Merging a finished job (reflogps, score, generate) into the output folder, atomically.

The data shards get ``ref_chosen_logps``, ``ref_rejected_logps`` (float32), ``chosen_tokens``,
``rejected_tokens`` (int32), ``prefkit.json`` a ``reflogps`` section (and fresh statistics), README.md fresh
``dataset_info`` features. The new folder is staged next to OUT (unchanged files are hard-linked) and swapped in
with a rename, so OUT is always either the old set or the new one; the work folder goes away with the old folder.

The whole merge (reading OUT, staging, the swap) holds OUT's writer lock (:func:`prefkit.store.lock.out_lock`), so a
`reflogps` and a `score` (or a `build --overwrite`, `stats`) on one OUT take turns instead of the later swap dropping
the earlier one's columns; just before the swap OUT is checked to be the folder the merge read, and the merge is
redone when it is not (a writer that does not take the lock).

The section records the job's ``fingerprint`` and ``result_fingerprint`` (the same settings over the merged data
files): a worker that starts or looks after the merge recognises its job as done
(:func:`prefkit.jobs.plan.completed`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.errors import OutputError
from prefkit.jobs.plan import (
    WORK_DIR,
    Shard,
    files_fingerprint,
    result_fingerprint,
    settings_fingerprint,
)
from prefkit.output import (
    CARD_NAME,
    DATA_DIR,
    MANIFEST_NAME,
    OutputFolder,
    read_output,
    refresh_card,
    staged_folder,
    write_manifest,
    write_shard,
)
from prefkit.output.stats import STATS_COLUMNS, split_stats
from prefkit.record import REFLOGPS_FIELDS
from prefkit.store.folder import FolderChanged
from prefkit.store.lock import folder_identity, out_lock


def _link_tree(src: Path, dst: Path, skip: set[Path]) -> None:
    """Recreate ``src`` under ``dst`` with hard links (copies where linking fails), leaving out ``skip``."""
    for root, dirs, files in os.walk(src):
        root_path = Path(root)
        dirs[:] = [d for d in dirs if root_path / d not in skip]
        target = dst / root_path.relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            path = root_path / name
            if path in skip:
                continue
            try:
                os.link(path, target / name)
            except OSError:
                shutil.copy2(path, target / name)


#: how many times a merge is redone when OUT was replaced under it (by a writer that does not take the lock)
MERGE_TRIES = 3


class PartsMissing(OutputError):
    """A finished shard's part file is gone from the work folder (removed, or lost to another job's swap):
    the job scores it again."""


def merge(
    out: Path,
    shards: list[Shard],
    section: dict,
    *,
    name: str = "reflogps",
    columns: list = REFLOGPS_FIELDS,
    settings: dict | None = None,
    check: Callable[[], None] | None = None,
    work_dir: str = WORK_DIR,
) -> dict:
    """Add the work folder's ``columns`` to OUT's data shards, record ``section`` as ``manifest[name]``, refresh the
    statistics and the card; atomic swap under OUT's writer lock. Returns the new manifest.

    ``settings``: the job's fingerprinted settings (the section then records ``fingerprint``,
    ``result_fingerprint`` and the number of ``shards``); ``check()`` is called just before the swap and may raise
    to abandon the merge (the merging worker lost its merge lease); ``work_dir``: the job's work folder under OUT.
    Raises :class:`PartsMissing` when a shard's part is gone, :class:`~prefkit.store.folder.FolderChanged` when
    OUT kept being replaced under the merge.
    """
    for attempt in range(MERGE_TRIES):
        with out_lock(out, name):
            try:
                return _merge_once(out, shards, section, name, columns, settings, check, work_dir)
            except FolderChanged:
                if attempt == MERGE_TRIES - 1:
                    raise
    raise AssertionError("unreachable")


def _merge_once(
    out: Path,
    shards: list[Shard],
    section: dict,
    name: str,
    columns: list,
    settings: dict | None,
    check: Callable[[], None] | None,
    work_dir: str,
) -> dict:
    """One merge, read and swapped under the lock (:func:`merge`)."""
    seen = folder_identity(out)
    folder = read_output(out)
    work = out / work_dir
    missing = [s.name for s in shards if not (work / s.name).is_file()]
    if missing:
        raise PartsMissing(f"{len(missing)} finished shard(s) are gone from {work}", "they are scored again")
    names = [n for n, _ in columns]
    data_files = [p for split in folder.splits for p in folder.shards[split]]
    leftovers = {p for p in out.iterdir() if ".discarded-" in p.name}  # work folders set aside to be removed
    skip = {work, out / MANIFEST_NAME, out / CARD_NAME, *data_files, *leftovers}
    manifest = dict(folder.manifest)
    manifest["splits"] = dict(manifest.get("splits", {}))
    section = dict(section)
    schemas: dict[str, pa.Schema] = {}
    stats: dict[str, dict] = {}
    written: list[str] = []
    mode = out.stat().st_mode & 0o7777
    with staged_folder(out, overwrite=True, expect=seen, what=name) as stage:
        os.chmod(stage, mode)  # keep OUT's permissions
        _link_tree(out, stage, skip)
        for split in folder.splits:
            mine = [s for s in shards if s.split == split]
            schemas[split], stats[split], files = _merge_split(
                folder, split, work, mine, stage, columns, names
            )
            manifest["splits"][split] = {**manifest["splits"][split], "files": files}
            written += files
        if settings is not None:
            merged = files_fingerprint([stage / f for f in written])
            section["shards"] = len(shards)
            section["fingerprint"] = settings_fingerprint(settings)
            section["result_fingerprint"] = result_fingerprint(settings, merged)
        manifest[name] = section
        manifest["stats"] = {**(manifest.get("stats") or {}), "splits": stats}
        write_manifest(stage, manifest)
        refresh_card(stage, manifest, schemas, name=out.name)
        if check is not None:
            check()
    return manifest


def _merge_split(
    folder: OutputFolder,
    split: str,
    work: Path,
    shards: list[Shard],
    stage: Path,
    columns: list,
    names: list[str],
) -> tuple[pa.Schema, dict, list[str]]:
    """One split's data shards with the new columns appended (replacing older ones); its schema, statistics and
    data files (renamed by their new content)."""
    parts = [pq.read_table(work / s.name) for s in shards]  # an empty split has no shards
    new = pa.concat_tables(parts).replace_schema_metadata(None) if parts else pa.schema(columns).empty_table()
    offset = 0
    written, files = [], []
    paths = folder.shards[split]
    for i, path in enumerate(paths):
        table = pq.read_table(path)
        table = table.drop_columns([c for c in names if c in table.column_names])
        piece = new.slice(offset, table.num_rows)
        for column in names:
            table = table.append_column(column, piece.column(column))
        offset += table.num_rows
        shard = write_shard(table, stage / DATA_DIR, split, i, len(paths))
        files.append(shard.relative_to(stage).as_posix())
        written.append(table.select([c for c in STATS_COLUMNS if c in table.column_names]))
    if offset != new.num_rows:
        raise OutputError(
            f"split {split!r} changed while it was being scored ({offset} rows, {new.num_rows} scored)",
            "rerun with --overwrite",
        )
    stats = split_stats(pa.concat_tables(written))
    stats["columns"] = table.column_names
    return table.schema, stats, files
