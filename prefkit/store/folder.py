"""The output folder's layout, and reading it: what `build` writes and `reflogps` / `push` / `stats` read.

```
OUT/
  README.md                      dataset card; YAML `configs` so load_dataset(OUT) works
  data/<split>-00000-of-0000N-<digest>.parquet
  rejects/<split>.parquet        every row not kept: source, source_index, stage, reason, original fields
  prefkit.json                   manifest
```

Every write is atomic (:mod:`prefkit.store.writer`): whole folders are staged next to OUT by
:func:`staged_folder` and renamed into place.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from prefkit.errors import OutputError, option
from prefkit.store.lock import folder_identity, out_lock
from prefkit.store.manifest_model import Manifest
from prefkit.store.writer import (  # noqa: F401 (shard names: this module's API too)
    SHARD_BYTES,
    TEMP_NAME,
    content_digest,
    shard_name,
    staged_dir,
    swap_in,
)

MANIFEST_NAME = "prefkit.json"
CARD_NAME = "README.md"
DATA_DIR = "data"
REJECTS_DIR = "rejects"
#: the folder of the JSONL files the ``openai`` export writes for upload
OPENAI_DIR = "openai"
#: the folder of the JSONL files the ``nemo-rl`` export writes (NeMo-RL reads JSON lines)
NEMO_RL_DIR = "nemo-rl"
#: the files exports (prefkit.output.exports) add to the folder (``extra_files``), as globs in it: what `prefkit push` uploads with the data
EXPORT_FILES = ("dataset_info.json", f"{OPENAI_DIR}/*.jsonl", f"{NEMO_RL_DIR}/*.jsonl")


@dataclass
class OutputFolder:
    """A built set on disk."""

    path: Path
    manifest: dict
    shards: dict[str, list[Path]] = field(default_factory=dict)
    #: what a reader should say: data files the manifest does not list
    warnings: list[str] = field(default_factory=list)

    @property
    def splits(self) -> list[str]:
        return list(self.shards)

    @property
    def typed_manifest(self) -> Manifest:
        """:attr:`manifest` read through the :class:`~prefkit.store.manifest_model.Manifest` model (read anew at
        each call: the dict may have been changed). Raises :class:`OutputError` when a known key holds a value of
        the wrong type."""
        return typed_manifest(self.manifest, self.path / MANIFEST_NAME)

    def read_split(self, split: str, columns: list[str] | None = None) -> pa.Table:
        """One split as an Arrow table, shards concatenated in order."""
        return pa.concat_tables([pq.read_table(p, columns=columns) for p in self.shards[split]])

    def rejects_path(self, split: str) -> Path:
        return self.path / REJECTS_DIR / f"{split}.parquet"


def typed_manifest(manifest: dict | Manifest, where: Path | str) -> Manifest:
    """``manifest`` as a :class:`Manifest`; an :class:`OutputError` naming the first wrong key when it is not one
    (``where``: the file it was read from)."""
    try:
        return Manifest.read(manifest)
    except ValidationError as err:
        first = err.errors()[0]
        at = ".".join(str(p) for p in first["loc"]) or "the top level"
        raise OutputError(
            f"{where} is not a prefkit manifest ({at}: {first['msg']})",
            "rebuild the folder with `prefkit build`",
        ) from None


def split_sizes(paths: list[Path]) -> dict[str, int]:
    """A split's size as ``datasets`` records it (``dataset_info.splits`` of a card): ``num_examples`` (rows),
    ``num_bytes`` (uncompressed Arrow bytes) and ``download_size`` (bytes of the Parquet files)."""
    metas = [pq.read_metadata(p) for p in paths]
    return {
        "num_examples": sum(m.num_rows for m in metas),
        "num_bytes": sum(m.row_group(i).total_byte_size for m in metas for i in range(m.num_row_groups)),
        "download_size": sum(p.stat().st_size for p in paths),
    }


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
        raise OutputError(
            f"{str(out_dir)!r} exists and is not a folder", f"choose another {option('output')}"
        )
    if out.exists() and not overwrite:
        raise OutputError(
            f"output folder {str(out_dir)!r} already exists",
            f"pass {option('overwrite', True)} to replace it, or choose another {option('output')}",
        )
    if out.exists() and not is_prefkit_folder(out):
        raise OutputError(
            f"{str(out_dir)!r} exists and is not a prefkit output folder (it has no {MANIFEST_NAME}); "
            f"{option('overwrite', True)} only replaces folders prefkit wrote",
            f"choose a new {option('output')} (prefkit never deletes what it did not write)",
        )
    return out


class FolderChanged(OutputError):
    """OUT is no longer the folder a writer read (another writer swapped it in meanwhile): redo the work."""


@contextmanager
def staged_folder(
    out_dir: Path | str,
    overwrite: bool = False,
    sources: tuple[Path, ...] = (),
    *,
    expect: tuple | None = None,
    what: str = "build",
    carried: list[str] | None = None,
) -> Iterator[Path]:
    """Yield a temporary folder next to ``out_dir``; on success it atomically becomes ``out_dir``.

    On any error the staging folder is removed and ``out_dir`` is left as it was. Refuses targets that could
    destroy data prefkit did not write (:func:`check_target`); removes what killed runs left next to it. The swap
    happens under OUT's writer lock (:func:`prefkit.store.lock.out_lock`, held by ``what``), after a last check:

    * ``expect`` (a writer that staged a copy of OUT: a merge): OUT must still be the folder it read
      (:func:`prefkit.store.lock.folder_identity`), else :class:`FolderChanged` (the caller redoes its work);
    * otherwise (``build``): OUT is checked again, and the files in it that prefkit did not write
      (:func:`foreign_files`) are carried over into the new folder at the same paths (their names appended to
      ``carried``); one the new folder also writes is refused, naming it.
    """
    out = check_target(Path(out_dir), overwrite, sources)
    with staged_dir(out) as stage:
        yield stage
        with out_lock(out, what):
            if expect is not None:
                if folder_identity(out) != expect:
                    raise FolderChanged(
                        f"{str(out_dir)!r} was replaced by another command while {what} wrote it",
                        f"run `prefkit {what}` again",
                    )
            elif out.exists():
                check_target(out, overwrite, sources)
                names = carry_over(out, stage)
                if carried is not None:
                    carried += names
            swap_in(stage, out)


#: top-level work folders of prefkit's jobs (``.prefkit-work``, ``.reflogps-work``, ``.score-work``, and those set
#: aside to be removed: ``.<job>-work.discarded-<pid>-<random>``)
WORK_NAME = re.compile(r"^\.[a-z0-9_-]+-work(?:\.discarded-.+)?$")
#: a data shard's name as prefkit writes it (:func:`shard_name`)
SHARD_NAME = re.compile(r"^.+-\d{5}-of-\d{5}(?:-[0-9a-f]{16})?\.parquet$")


def prefkit_written(out: Path, manifest: dict) -> set[str]:
    """Paths (relative, POSIX) of the files in ``out`` prefkit wrote, from its manifest: the manifest and the
    card, data shards (any file named like one, listed or stale), the rejects of its splits, recorded plots and
    an export's own files (LLaMA-Factory's ``dataset_info.json``, the JSONL folders) and the report page. Work folders are recognised by name
    (:data:`WORK_NAME`), temporary files by :data:`prefkit.store.writer.TEMP_NAME`.

    The manifest is read as a dict, each key checked: the folder a build replaces may hold any manifest, and what
    of it is readable still says which files prefkit wrote."""
    written = {MANIFEST_NAME, CARD_NAME}
    splits: dict = manifest["splits"] if isinstance(manifest.get("splits"), dict) else {}
    for split, counts in splits.items():
        written.add(f"{REJECTS_DIR}/{split}.parquet")
        if isinstance(counts, dict):
            written.update(str(f) for f in counts.get("files") or [])
    stats: dict = manifest["stats"] if isinstance(manifest.get("stats"), dict) else {}
    written.update(str(p) for p in stats.get("plots") or [])
    shape = (manifest.get("export") or {}).get("shape") if isinstance(manifest.get("export"), dict) else None
    if shape:
        for pattern in EXPORT_FILES:
            written.update(p.relative_to(out).as_posix() for p in Path(out).glob(pattern))
    report = manifest.get("report")
    if isinstance(report, dict) and isinstance(report.get("path"), str):  # `prefkit report` wrote it inside OUT
        written.add(report["path"])
    return written


def foreign_files(out: Path, manifest: dict | None = None) -> list[str]:
    """The files (and empty folders, ending in ``/``) in output folder ``out`` that prefkit did not write
    (:func:`prefkit_written`), as sorted relative POSIX paths: a user's notes, checkpoints, hand-made files."""
    out = Path(out)
    if manifest is None:
        manifest = json.loads((out / MANIFEST_NAME).read_text())
    written = prefkit_written(out, manifest)
    found: list[str] = []
    for root, dirs, files in os.walk(out):
        rel = Path(root).relative_to(out)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if not WORK_NAME.match(d)]
        for name in files:
            path = (rel / name).as_posix()
            if path in written or TEMP_NAME.match(name):
                continue
            if rel.as_posix() == DATA_DIR and SHARD_NAME.match(name):
                continue
            found.append(path)
        if not dirs and not files and rel != Path("."):
            found.append(rel.as_posix() + "/")
    return sorted(found)


def carry_over(out: Path, stage: Path) -> list[str]:
    """Hard-link (or copy) the files of ``out`` prefkit did not write into the new folder ``stage`` at the same
    paths; returns their names. Raises :class:`OutputError` naming those the new folder writes too (nothing is
    carried then: the caller's swap does not happen)."""
    names = foreign_files(out)
    clash = [n for n in names if (stage / n.rstrip("/")).exists() and not n.endswith("/")]
    if clash:
        raise OutputError(
            f"{str(out)!r} holds files prefkit did not write that the new set would replace: "
            + ", ".join(clash[:5])
            + (" …" if len(clash) > 5 else ""),
            "move them out of the folder (prefkit never deletes what it did not write), or choose another -o",
        )
    for name in names:
        target = stage / name
        if name.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(out / name, target)
        except OSError:
            shutil.copy2(out / name, target)
    return names


def read_output(path: Path | str, warn: Callable[[str], None] | None = None) -> OutputFolder:
    """Open a folder written by `prefkit build` (checks it is one, with a hint when not).

    Reads the data files the manifest lists (:func:`_listed_shards`) and checks their rows against its counts
    (:func:`check_counts`), raising :class:`OutputError` with a hint when they disagree; other parquet files in
    ``data/`` are named in ``folder.warnings`` (and passed to ``warn``, e.g. a command's stderr)."""
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
    shards = _listed_shards(path, typed_manifest(manifest, manifest_path))
    folder = OutputFolder(path=path, manifest=manifest, shards=shards)
    folder.warnings = _unlisted_warnings(path, shards)
    check_counts(folder)
    if warn is not None:
        for text in folder.warnings:
            warn(text)
    return folder


def _listed_shards(path: Path, manifest: Manifest) -> dict[str, list[Path]]:
    """Each split's data files: those its manifest entry lists (``files``), each present and readable; for a
    manifest without lists (an older prefkit) the files named like the split's shards."""
    shards: dict[str, list[Path]] = {}
    for split, counts in manifest.split_entries.items():
        listed = counts.files
        if listed is not None:
            files = [path / str(f) for f in listed]
            missing = [str(f) for f, p in zip(listed, files, strict=True) if not p.is_file()]
            if missing:
                raise OutputError(
                    f"split {split!r} of {str(path)!r} lacks data files its {MANIFEST_NAME} lists: "
                    + ", ".join(missing[:3])
                    + (" …" if len(missing) > 3 else ""),
                    "the folder is incomplete (a copy that missed files?): copy it again, or rebuild it with "
                    f"`prefkit build --recipe {path / MANIFEST_NAME} -o {path} --overwrite`",
                )
        else:
            files = split_files(path / DATA_DIR, split)
        if not files and counts.kept == 0:
            continue  # a split that kept no rows has no data file (datasets cannot load an empty split)
        if not files:
            raise OutputError(
                f"split {split!r} has no data files in {path / DATA_DIR}",
                "rebuild the folder with `prefkit build`",
            )
        for file in files:
            _check_parquet(file)
        shards[split] = files
    return shards


def _unlisted_warnings(path: Path, shards: dict[str, list[Path]]) -> list[str]:
    """A sentence when ``data/`` holds parquet files the manifest does not list (not read, not pushed)."""
    listed = {p.resolve() for files in shards.values() for p in files}
    others = sorted(p.name for p in (path / DATA_DIR).glob("*.parquet") if p.resolve() not in listed)
    if not others:
        return []
    return [
        f"{len(others)} data file(s) in {path / DATA_DIR} are not listed in {MANIFEST_NAME} and are not part of "
        "the set (left by an earlier build, or copied in?): "
        + ", ".join(others[:3])
        + (" …" if len(others) > 3 else "")
        + "; they are not read, merged or pushed (delete them, or rebuild)"
    ]


def check_counts(folder: OutputFolder) -> None:
    """The data files hold the rows the manifest says (``kept``, or the export's ``rows``), and the counts add up
    (``read`` + added = ``kept`` + dropped + invalid per split, docs/reasons.md; ``totals`` = the sum of the splits). Raises
    :class:`OutputError` when not: a data file or the manifest was changed after the build."""
    manifest = folder.typed_manifest
    export = (manifest.export.splits if manifest.export else None) or {}
    rebuild = (
        "the data files or prefkit.json were changed after prefkit wrote them; rebuild the set with "
        f"`prefkit build --recipe {folder.path / MANIFEST_NAME} -o {folder.path} --overwrite`"
    )
    for split, counts in manifest.split_entries.items():
        if counts.kept is None:
            continue
        rows = sum(pq.read_metadata(p).num_rows for p in folder.shards.get(split, []))
        expected = (export.get(split) or {}).get("rows", counts.kept)
        if rows != expected:
            raise OutputError(
                f"split {split!r} of {str(folder.path)!r} has {rows:,} rows in its data files, but "
                f"{MANIFEST_NAME} says {expected:,}",
                rebuild,
            )
        if counts.read is not None:
            ended = counts.kept + sum((counts.dropped or {}).values()) + sum((counts.invalid or {}).values())
            started = counts.read + sum((counts.added or {}).values())
            if ended != started:
                raise OutputError(
                    f"the counts of split {split!r} in {MANIFEST_NAME} do not add up (read + added {started:,}, "
                    f"kept + dropped + invalid {ended:,})",
                    rebuild,
                )
    totals = manifest.totals.to_dict() if manifest.totals else {}
    splits = [c.to_dict() for c in manifest.split_entries.values()]
    for key in ("read", "kept"):
        known = totals.get(key) is not None and all(c.get(key) is not None for c in splits)
        if known and totals[key] != sum(c[key] for c in splits):
            raise OutputError(
                f"the totals in {MANIFEST_NAME} do not add up ({key} {totals[key]:,}, the splits' sum "
                f"{sum(c[key] for c in splits):,})",
                rebuild,
            )


def stderr_warning(text: str) -> None:
    """Print ``Warning: <text>`` on stderr (what a command says about the folder it reads)."""

    print(f"Warning: {text}", file=sys.stderr, flush=True)


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


#: the first ``datasets`` release that decodes ``Json`` inside message lists (a message's ``tool_calls``)
NESTED_JSON_DATASETS = (5, 0)


def nested_json_warnings(splits: dict[str, pa.Table]) -> list[str]:
    """A sentence when the set has messages with ``tool_calls`` and the installed ``datasets`` would load them as
    JSON text rather than objects (TRL's chat templates then cannot read them). Reads the installed version from
    the package metadata: importing ``datasets`` (and pandas) costs a build 0.4 s."""

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
