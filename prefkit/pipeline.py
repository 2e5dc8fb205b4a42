"""The build pipeline (`prefkit build`): one call per stage, in one direction.

```
sources ─load─▶ raw rows ─normalise─▶ records ─validate/filter─▶ select (within, across) ─▶ output folder
  prefkit.sources      prefkit.formats        prefkit.filters        prefkit.select           prefkit.output
```

Every row read ends in exactly one place: kept, dropped by a filter or selection (with its reason) or invalid
(with the validation error); the manifest's counts add up (:mod:`prefkit.accounting`). What the build is told
is a :class:`~prefkit.options.BuildOptions`; the manifest records it as a recipe that rebuilds the same set.

Rows go through in record batches (:mod:`prefkit.stream`): a first pass normalises, validates and filters each
batch and keeps compact per-row data; selections work on that; a second pass writes the chosen rows. Memory
follows the batch size (:func:`prefkit.spill.batch_rows`), not the size of the sources.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.accounting import check_not_empty, empty_sentences
from prefkit.errors import OptionError, option
from prefkit.filters.tokens import refusal_warnings, token_stage
from prefkit.formats import FAMILIES, used_columns
from prefkit.formats import detect as detect_shape
from prefkit.formats.scores import MARGIN_ALIASES
from prefkit.options import BuildOptions
from prefkit.output import finish_folder, staged_folder
from prefkit.output.exports import check_export
from prefkit.output.manifest import carry_sections, describe_target, finish_manifest, make_manifest
from prefkit.planning import (
    Inputs,
    check_local_inputs,
    load_sources,
    plan_parts,
    read_parts,
    resolve,
    resolve_output_format,
)
from prefkit.record import arrow_schema
from prefkit.results import DetectResult, Result, counts_table
from prefkit.select import assign_test_split, select_across
from prefkit.select.evalsets import pinned_evalsets
from prefkit.select.quality import kept_row_details
from prefkit.sources import load_source
from prefkit.store.folder import REJECTS_DIR, nested_json_warnings
from prefkit.stream import Needs, Part, count_parts, refused_rows, used_fields, write_set

__all__ = ["BuildResult", "build", "detect"]


class Tables(Mapping):
    """Split name → Arrow table, read from parquet files on first access (a split's data shards, its rejects
    file) and kept; ``empty``: tables of splits without a file. ``keep`` holds what must outlive the files' reader
    (the temporary folder of a build without an output folder)."""

    def __init__(
        self, files: dict[str, list[Path]], empty: dict[str, pa.Table] | None = None, keep: Any = None
    ):
        self._files = files
        self._empty = empty or {}
        self._keep = keep
        self._read: dict[str, pa.Table] = {}

    def __getitem__(self, name: str) -> pa.Table:
        if name not in self._read:
            if name in self._empty:
                self._read[name] = self._empty[name]
            else:
                tables = [
                    pq.ParquetFile(p).read() for p in self._files[name]
                ]  # KeyError for an unknown split
                self._read[name] = pa.concat_tables(tables).replace_schema_metadata(None)
        return self._read[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


class TempFolder:
    """A temporary folder removed when nothing refers to it any more (or at exit)."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="prefkit-build-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), True)

    def cleanup(self) -> None:
        self._finalizer()


@dataclass
class BuildResult(Result):
    """What `build` produced: the kept rows, every rejected row (read from the written files on first use), and
    the manifest."""

    splits: Mapping[str, pa.Table]
    rejects: Mapping[str, pa.Table]
    manifest: dict
    output: Path | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def dataset(self):
        """The kept rows as a ``datasets.DatasetDict``."""
        import datasets

        return datasets.DatasetDict({name: datasets.Dataset(table) for name, table in self.splits.items()})

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary the CLI prints with --json: counts per split and in total (``added`` rows included),
        what an export wrote, and warnings (empty splits, nothing kept)."""
        out = {
            "output": str(self.output) if self.output else None,
            "seconds": round(self.seconds, 3),
            "splits": self.manifest["splits"],
            "totals": self.manifest["totals"],
            "warnings": self.warnings,
        }
        if "export" in self.manifest:
            out["export"] = self.manifest["export"]
        return out

    def summary(self) -> str:
        """The counts table the CLI prints (:func:`prefkit.results.counts_table`): per split read / kept / dropped
        / invalid, the reasons, what an export wrote, where and how long. The warnings are in ``warnings``."""

        output = str(self.output) if self.output is not None else None
        return counts_table(self.manifest["splits"], self.seconds, output, self.manifest.get("export"))


def build(
    sources: str | Path | list | None = None,
    output: str | Path | None = None,
    options: BuildOptions | None = None,
    *,
    recipe: str | Path | None = None,
    token: str | bool | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    **flat: Any,
) -> BuildResult:
    """Build a clean preference set from one or more sources and (when ``output`` is given) write it.

    A source is a Hub id or a local path, optionally with a mixing weight: ``"argilla/dpo-mix-7k:0.5"`` (a
    fraction), ``"Intel/orca_dpo_pairs:2000"`` (rows), ``"./ours.jsonl:2.0"`` (upsampling), or a recipe entry
    ``{"source": ..., "weight": ..., "revision": ...}`` (:mod:`prefkit.sources.spec`). What the build does is
    ``options`` (:class:`~prefkit.options.BuildOptions`) and/or flat keywords with the flags' names
    (``min_margin=1``, ``top=2000``, ``pairs="all-pairs"`` …), which win; ``recipe`` is a YAML/JSON recipe
    or an earlier build's ``prefkit.json`` (its sources are used unless ``sources`` is given). ``token`` is a Hub
    token (never recorded); ``overwrite`` replaces an existing output folder prefkit wrote; ``dry_run`` writes
    nothing (as ``output=None``: the result reads the rows from a temporary folder). How it runs
    (:data:`RUN_KEYWORDS`): ``progress=True`` shows progress bars, ``command`` is the command line the manifest
    records. ``recipe_file`` (the keyword of 0.2) is still read as ``recipe``.

    Returns a :class:`BuildResult`: ``summary()`` is the counts table `prefkit build` prints, ``to_dict()`` what
    ``--json`` prints, ``dataset`` the kept rows, ``manifest`` what ``prefkit.json`` records.

    Raises :class:`~prefkit.errors.PrefkitError` subclasses with a hint: ``SourceError`` (cannot read a source),
    ``FormatError`` (no known shape), ``OptionError``/``SelectionError`` (an option cannot apply), ``OutputError``.

    >>> result = build("HuggingFaceH4/ultrafeedback_binarized", "uf", split="train_prefs", min_margin=1)  # doctest: +SKIP
    >>> result.dataset["train_prefs"][0]["prompt"]  # doctest: +SKIP
    [{'role': 'user', 'content': '...'}]
    """

    start = time.perf_counter()
    recipe = flat.pop("recipe_file", recipe)
    progress, command = bool(flat.pop("progress", False)), flat.pop("command", None)
    output = None if dry_run else output
    specs, options = resolve(sources, options, recipe, flat)
    target, target_check = token_stage(options, progress)
    loaded, presets = load_sources(specs, options, token, progress)
    specs, changed = check_local_inputs(specs, loaded, options.sources.allow_changed_sources, output)
    inputs = Inputs(loaded, specs, presets, options)
    parts = plan_parts(inputs)
    inputs = inputs.with_options(resolve_output_format(options, parts, target))
    said = [w for src in loaded for w in src.warnings] + changed
    run = Run(inputs, target, target_check, output, token, progress, command, said)
    local = tuple(Path(src.spec) for src in loaded if src.kind == "local")
    carried: list[str] = []
    with build_folder(output, overwrite, local, carried) as (folder, keep):
        work = folder / WORK_DIR
        read_parts(parts, inputs, target_check, work, run.needs(), progress)
        manifest, split_by_out = select_and_describe(run, parts)
        written = write_rows(run, parts, manifest, folder, split_by_out)
    if carried:
        run.warnings.append(_carried_warning(carried, output))
    result = build_result(run, manifest, written, folder, keep)
    result.seconds = time.perf_counter() - start
    return result


#: the keywords of :func:`build` that say how it runs, not what it builds (passed through ``**flat``)
RUN_KEYWORDS = ("progress", "command")


def _carried_warning(carried: list[str], output: Any) -> str:
    return (
        f"kept {len(carried)} file(s) in {output} that prefkit did not write: "
        + ", ".join(carried[:5])
        + (" …" if len(carried) > 5 else "")
    )


@dataclass
class Run:
    """One build as it goes: what it reads, the target it is prepared for (and the target's row checks), where
    it writes, how it runs, and the warnings it has collected."""

    inputs: Inputs
    target: Any
    target_check: Any
    output: str | Path | None
    token: str | bool | None
    progress: bool
    command: str | None
    warnings: list[str]

    @property
    def options(self) -> BuildOptions:
        return self.inputs.options

    def needs(self) -> Any:
        """What pass 1 keeps of each row for the selections asked for (:class:`prefkit.stream.Needs`)."""

        return Needs.of(self.options)


def select_and_describe(run: Run, parts: list[Part]) -> tuple[dict, bool]:
    """The selections across the parts (:func:`prefkit.select.select_across`, the test split) and the manifest
    that counts them; refuses an empty set before anything is written. Returns (manifest, whether rows are split
    by their output split)."""

    options, inputs = run.options, run.inputs
    scales, quality = select_across(parts, inputs.specs, options.select, run.target, run.token)
    split_info = assign_test_split(parts, options.select)
    split_by_out = split_info is not None
    counts, described = count_parts(parts, split_by_out)
    manifest = make_manifest(
        inputs.loaded, inputs.specs, inputs.presets, described, counts, options, run.command, scales
    )
    if run.output is not None:
        check_not_empty(manifest)  # before anything is written: OUT stays as it was
    run.warnings += carry_sections(parts, manifest)
    run.warnings += unused_warnings(parts) + options.inert()
    run.warnings += refusal_warnings(refused_rows(parts, split_by_out))
    manifest.update(quality)
    pin_evalsets(manifest, options)
    if split_info is not None:
        manifest["test_split"] = split_info
    checked = run.target_check is not None and run.target_check.options.active
    describe_target(manifest, run.target, options, checked)
    return manifest, split_by_out


def write_rows(run: Run, parts: list[Part], manifest: dict, folder: Path, split_by_out: bool) -> dict[str, dict]:
    """Pass 2 (:func:`prefkit.stream.write_set`) into ``folder``, then the manifest finished and, with an output
    folder, the export's files, the manifest and the card. Returns what pass 2 wrote per split."""

    options, work = run.options, folder / WORK_DIR
    fields = used_fields(parts)  # one schema for the set
    kept_row_details(parts, fields)
    written = write_set(parts, folder, work, options, run.target, fields, split_by_out, run.progress)
    shutil.rmtree(work, ignore_errors=True)
    records = arrow_schema(*fields).empty_table()  # the records' shape, before any export
    run.warnings += nested_json_warnings(dict.fromkeys(written, records))
    files = _files(written, folder)
    finish_manifest(manifest, written, files if run.output is not None else None, options)
    if run.output is not None:
        schemas = {name: w["schema"] for name, w in written.items() if w["schema"] is not None}
        write_extra(folder, manifest, schemas, Path(run.output), options)
    return written


def _files(written: dict[str, dict], folder: Path) -> dict[str, list[str]]:
    """The data files of each split, relative to the set folder."""
    return {name: [p.relative_to(folder).as_posix() for p in w["files"]] for name, w in written.items()}


def build_result(run: Run, manifest: dict, written: dict[str, dict], folder: Path, keep: Any) -> BuildResult:
    """The result of a build: its rows and rejects read from the written files on first use (from the temporary
    ``folder`` that ``keep`` holds, without an output folder), the manifest, the warnings."""
    where = Path(run.output) if run.output is not None else folder
    data = {name: [where / f for f in paths] for name, paths in _files(written, folder).items()}
    rejects = {name: [where / REJECTS_DIR / f"{name}.parquet"] for name in written}
    empty = {name: w["empty"] for name, w in written.items() if w["empty"] is not None}
    result = BuildResult(
        Tables(data, empty, keep),
        Tables(rejects, keep=keep),
        manifest,
        warnings=run.warnings + empty_sentences(manifest),
    )
    result.output = Path(run.output) if run.output is not None else None
    return result


#: the folder of a build's spill files, inside its staged output folder (removed before the folder is swapped in)
WORK_DIR = ".prefkit-work"


@contextmanager
def build_folder(
    output: str | Path | None, overwrite: bool, sources: tuple[Path, ...], carried: list[str] | None = None
) -> Iterator[tuple[Path, Any]]:
    """Where a build writes: the staged output folder (swapped in when the build succeeds, removed when it fails;
    :func:`prefkit.output.staged_folder`; files of the old folder prefkit did not write are carried over and
    named in ``carried``), or, without ``output``, a temporary folder the result reads from."""

    if output is None:
        temp = TempFolder()
        try:
            yield temp.path, temp
        except BaseException:
            temp.cleanup()
            raise
        return
    what = "build --overwrite" if overwrite else "build"
    with staged_folder(output, overwrite=overwrite, sources=sources, what=what, carried=carried) as stage:
        yield stage, None


def detect_source(
    source: str | Path,
    options: BuildOptions | None = None,
    *,
    token: str | bool | None = None,
    sample: int = 1000,
    **flat: Any,
) -> dict:
    """What `prefkit detect` reports: per split, the family and how the columns map (and which go unused), read
    from the first ``sample`` rows (streamed from the Hub: a split's other rows are not downloaded).

    ``options``/keywords: :class:`~prefkit.options.BuildOptions` (``split``, ``format``, ``prompt_col`` …).
    """
    options = (options or BuildOptions()).replace(**flat) if flat else (options or BuildOptions())
    o, fmt = options.sources, options.formats
    split = list(o.split) if o.split else None
    src = load_source(
        source,
        split=split,
        revision=o.revision,
        config=o.config,
        data_dir=o.data_dir,
        token=token,
        sample=sample,
    )
    columns = {
        "prompt": fmt.prompt_col,
        "chosen": fmt.chosen_col,
        "rejected": fmt.rejected_col,
        "system": fmt.system_col,
    }
    report: dict[str, Any] = {"source": src.label, "sampled_rows": sample, "splits": {}}
    for name, table in src.splits.items():
        mapping = detect_shape(table, format=fmt.format, columns=columns, margin_col=fmt.margin_col)
        family = FAMILIES[mapping.family]
        used = set(used_columns(mapping))
        report["splits"][name] = {
            "rows": table.num_rows,
            "format": mapping.family,
            "family": family.letter,
            "description": family.description,
            "mapping": mapping.to_dict(),
            "columns": table.column_names,
            "unused": [c for c in table.column_names if c not in used],
        }
    return report


#: the build options `detect` reads (where to read, which shape, which columns); its flags are these
DETECT_OPTIONS = (
    "split",
    "revision",
    "config",
    "data_dir",
    "format",
    "prompt_col",
    "chosen_col",
    "rejected_col",
    "system_col",
    "margin_col",
)


def detect(
    source: str | Path,
    options: BuildOptions | None = None,
    *,
    token: str | bool | None = None,
    sample: int = 1000,
    **flat: Any,
) -> DetectResult:
    """`prefkit detect`: which shape (family) each split of ``source`` has and how its columns map to
    prompt/chosen/rejected, read from the first ``sample`` rows (:func:`detect_source`).

    ``source`` is a Hub id or a local file or folder; ``options``/keywords are the build's
    (:class:`~prefkit.options.BuildOptions`: ``split``, ``revision``, ``config``, ``data_dir``, ``format``,
    ``prompt_col`` …). Returns a :class:`~prefkit.results.DetectResult` (``summary()``: the text `prefkit detect`
    prints). Raises ``SourceError`` (cannot read the source), ``FormatError`` (no known shape, a missing column) and
    ``OptionError`` (an option detect does not read, :data:`DETECT_OPTIONS`: it would change nothing).

    >>> detect("HuggingFaceH4/ultrafeedback_binarized", split="train_prefs").splits["train_prefs"]["format"]  # doctest: +SKIP
    'explicit_messages'
    """
    given = {k: v for k, v in flat.items() if v not in (None, ())}
    options = (options or BuildOptions()).replace(**given)  # an unknown name or a bad value: OptionError
    unread = sorted(set(options.flat()) - set(DETECT_OPTIONS))
    if unread:
        raise OptionError(
            f"detect does not read {', '.join(map(option, unread))}: it reads a source's shape, not which rows a "
            "build keeps",
            f"leave {'it' if len(unread) == 1 else 'them'} out (detect reads {', '.join(map(option, DETECT_OPTIONS))})",
        )
    return DetectResult.from_dict(detect_source(source, options, token=token, sample=sample))


def pin_evalsets(manifest: dict, options: BuildOptions) -> None:
    """Record the built-in eval sets of ``--decontaminate`` in the manifest's recipe as ``NAME@COMMIT`` (the commit
    they were read at), so a rebuild from the recipe reads the same items."""

    specs = options.select.decontaminate
    sets = (manifest.get("decontamination") or {}).get("sets") or []
    if specs and sets:
        manifest["recipe"].setdefault("select", {})["decontaminate"] = pinned_evalsets(tuple(specs), sets)


def write_extra(
    folder: Path, manifest: dict, schemas: dict[str, pa.Schema], output: Path, options: BuildOptions
) -> None:
    """The export's own files, the manifest and the dataset card, in the staged output folder."""

    export = check_export(options.output.export)
    make_files = export.extra_files

    def extra(manifest: dict) -> dict[str, str]:
        files = {name: entry.get("files", []) for name, entry in manifest["splits"].items()}
        return make_files(output.name, files, folder) if make_files is not None else {}

    finish_folder(folder, manifest, schemas, output.resolve().name, extra if make_files is not None else None)


def unused_warnings(parts: list[Part]) -> list[str]:
    """One warning per source split with columns no mapping reads, leaving out the metadata columns its preset
    declares (``metadata_columns``: expected, not a sign of a wrong mapping); the source's own margin column,
    when ``--margin-col`` read the margin from another, is named as such."""
    out = []
    for p in parts:
        expected = set(p.preset.metadata_columns) if p.preset is not None else set()
        unused = {c: n for c, n in (p.unused or {}).items() if c not in expected}
        margin = getattr(p.mapping, "margin", None)
        if unused:
            out.append(
                f"{p.src.label} ({p.split}): columns no mapping reads: "
                + ", ".join(_unused_column(c, n, margin) for c, n in unused.items())
            )
    return out


def _unused_column(column: str, n: int, margin: str | None) -> str:
    if margin and column in MARGIN_ALIASES and column != margin:  # the source's own margin, replaced
        return f"{column} ({n:,} non-null; the source's own margin, not used: the margin is {margin})"
    return f"{column} ({n:,} non-null)"
