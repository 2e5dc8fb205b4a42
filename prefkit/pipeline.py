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

from prefkit.accounting import check_not_empty, empty_sentences
from prefkit.errors import OptionError, option
from prefkit.formats import FAMILIES, family_options, used_columns, with_options
from prefkit.formats import detect as detect_shape
from prefkit.options import BuildOptions, load_recipe
from prefkit.output.manifest import carry_sections, describe_target, finish_manifest, make_manifest
from prefkit.progress import track
from prefkit.record import arrow_schema
from prefkit.results import DetectResult, Result
from prefkit.select import assign_test_split, select_across
from prefkit.select.quality import kept_row_details
from prefkit.sources import Source, StreamChanged, load_source
from prefkit.sources.spec import SourceSpec, parse_source
from prefkit.store.folder import REJECTS_DIR, nested_json_warnings
from prefkit.stream import Part

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
                import pyarrow.parquet as pq

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
        from prefkit.results import counts_table

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
    progress: bool = False,
    command: str | None = None,
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
    nothing (as ``output=None``: the result reads the rows from a temporary folder).
    ``recipe_file`` (the keyword of 0.2) is still read as ``recipe``.

    Returns a :class:`BuildResult`: ``summary()`` is the counts table `prefkit build` prints, ``to_dict()`` what
    ``--json`` prints, ``dataset`` the kept rows, ``manifest`` what ``prefkit.json`` records.

    Raises :class:`~prefkit.errors.PrefkitError` subclasses with a hint: ``SourceError`` (cannot read a source),
    ``FormatError`` (no known shape), ``OptionError``/``SelectionError`` (an option cannot apply), ``OutputError``.

    >>> result = build("HuggingFaceH4/ultrafeedback_binarized", "uf", split="train_prefs", min_margin=1)  # doctest: +SKIP
    >>> result.dataset["train_prefs"][0]["prompt"]  # doctest: +SKIP
    [{'role': 'user', 'content': '...'}]
    """
    from prefkit.filters.tokens import refusal_warnings, token_stage
    from prefkit.stream import Needs, count_parts, refused_rows, used_fields, write_set

    start = time.perf_counter()
    recipe = flat.pop("recipe_file", recipe)
    output = None if dry_run else output
    specs, options = resolve(sources, options, recipe, flat)
    target, target_check = token_stage(options, progress)

    loaded, presets = load_sources(specs, options, token, progress)
    specs, changed = check_local_inputs(specs, loaded, options.sources.allow_changed_sources, output)
    parts = plan_parts(loaded, specs, presets, options)
    options = resolve_output_format(options, parts, target)
    local = tuple(Path(src.spec) for src in loaded if src.kind == "local")
    carried: list[str] = []
    with build_folder(output, overwrite, local, carried) as (folder, keep):
        work = folder / WORK_DIR
        read_parts(parts, loaded, specs, presets, options, target_check, work, Needs.of(options), progress)
        scales, quality = select_across(parts, specs, options.select, target, token)
        split_info = assign_test_split(parts, options.select)
        split_by_out = split_info is not None
        counts, described = count_parts(parts, split_by_out)
        manifest = make_manifest(loaded, specs, presets, described, counts, options, command, scales)
        if output is not None:
            check_not_empty(manifest)  # before anything is written: OUT stays as it was
        warnings = [w for src in loaded for w in src.warnings] + changed + carry_sections(parts, manifest)
        warnings += unused_warnings(parts) + options.inert()
        warnings += refusal_warnings(refused_rows(parts, split_by_out))
        manifest.update(quality)
        pin_evalsets(manifest, options)
        if split_info is not None:
            manifest["test_split"] = split_info
        describe_target(manifest, target, options, target_check is not None and target_check.options.active)
        fields = used_fields(parts)  # one schema for the set
        kept_row_details(parts, fields)
        written = write_set(parts, folder, work, options, target, fields, split_by_out, progress)
        shutil.rmtree(work, ignore_errors=True)
        records = arrow_schema(*fields).empty_table()  # the records' shape, before any export
        warnings += nested_json_warnings(dict.fromkeys(written, records))
        files = {name: [p.relative_to(folder).as_posix() for p in w["files"]] for name, w in written.items()}
        finish_manifest(manifest, written, files if output is not None else None, options)
        if output is not None:
            schemas = {name: w["schema"] for name, w in written.items() if w["schema"] is not None}
            write_extra(folder, manifest, schemas, Path(output), options)
    if carried:
        warnings.append(
            f"kept {len(carried)} file(s) in {output} that prefkit did not write: "
            + ", ".join(carried[:5])
            + (" …" if len(carried) > 5 else "")
        )
    where = Path(output) if output is not None else folder
    data = {name: [where / f for f in paths] for name, paths in files.items()}
    rejects = {name: [where / REJECTS_DIR / f"{name}.parquet"] for name in written}
    empty = {name: w["empty"] for name, w in written.items() if w["empty"] is not None}
    result = BuildResult(
        Tables(data, empty, keep),
        Tables(rejects, keep=keep),
        manifest,
        warnings=warnings + empty_sentences(manifest),
    )
    result.output = Path(output) if output is not None else None
    result.seconds = time.perf_counter() - start
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
    from prefkit.output import staged_folder

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


def resolve_output_format(options: BuildOptions, parts: list[Part], target: Any) -> BuildOptions:
    """``--output-format auto`` made definite: ``plain`` (TRL's standard text format: prompt/chosen/rejected
    strings) when every source split is implicit text (family H, e.g. a base-model set) and no chat template
    renders the rows, else ``messages``. An explicit ``plain`` is refused (OptionError) for other sources, with a
    chat template, or with another --export."""
    chat = options.chat
    text_only = bool(parts) and all(FAMILIES[p.mapping.family].plain_text for p in parts)
    plain_ok = text_only and target is None and options.output.trl_shaped
    if chat.output_format == "auto":  # stays "auto" (messages) unless plain: recipes record only plain
        return options.replace(output_format="plain") if plain_ok else options
    if chat.output_format == "plain" and not plain_ok:
        raise OptionError(
            "--output-format plain writes TRL's standard text format, which only implicit-text sources (chosen/"
            "rejected strings sharing their start) hold, without --tokenizer/--chat-template and --export",
            "leave --output-format out (auto) or pass --output-format messages",
        )
    return options


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
    prints). Raises ``SourceError`` (cannot read the source) and ``FormatError`` (no known shape, a missing column).

    >>> detect("HuggingFaceH4/ultrafeedback_binarized", split="train_prefs").splits["train_prefs"]["format"]  # doctest: +SKIP
    'explicit_messages'
    """
    given = {k: v for k, v in flat.items() if v not in (None, ())}
    return DetectResult.from_dict(detect_source(source, options, token=token, sample=sample, **given))


def resolve(
    sources: Any, options: BuildOptions | None, recipe_file: str | Path | None, flat: dict
) -> tuple[list[SourceSpec], BuildOptions]:
    """Source specs and options from the arguments, a recipe file, or both (explicit arguments win)."""
    recipe_sources: list = []
    base = options
    if recipe_file is not None:
        recipe_sources, from_file = load_recipe(recipe_file)
        base = base or from_file
    options = (base or BuildOptions()).replace(**flat) if flat else (base or BuildOptions())
    given = [sources] if isinstance(sources, (str, Path, dict, SourceSpec)) else list(sources or [])
    specs = [parse_source(s) for s in given]
    if not given and recipe_file is not None:
        from dataclasses import replace

        from prefkit.sources.digest import resolve_recipe_path

        specs = [parse_source(s) for s in recipe_sources]
        specs = [
            replace(s, source=resolve_recipe_path(s.source, Path(recipe_file)))
            if isinstance(s.source, str)
            else s
            for s in specs
        ]
    if not specs:
        raise OptionError("no source to build from", "pass SOURCES, or a --recipe that lists `sources`")
    return specs, options


def pin_evalsets(manifest: dict, options: BuildOptions) -> None:
    """Record the built-in eval sets of ``--decontaminate`` in the manifest's recipe as ``NAME@COMMIT`` (the commit
    they were read at), so a rebuild from the recipe reads the same items."""
    from prefkit.select.evalsets import pinned_evalsets

    specs = options.select.decontaminate
    sets = (manifest.get("decontamination") or {}).get("sets") or []
    if specs and sets:
        manifest["recipe"].setdefault("select", {})["decontaminate"] = pinned_evalsets(tuple(specs), sets)


def check_local_inputs(
    specs: list[SourceSpec], loaded: list[Source], allow_changed: bool, output: str | Path | None
) -> tuple[list[SourceSpec], list[str]]:
    """Each local source's files (size, SHA-256: :func:`prefkit.sources.digest.local_digests`) put into its spec
    for the recipe, with its path relative to OUT; when the spec came from a recipe that recorded them and they
    differ, a :class:`~prefkit.errors.SourceError` naming what differs, or with ``allow_changed`` a warning.
    Returns (specs, warnings)."""
    from dataclasses import replace

    from prefkit.errors import SourceError
    from prefkit.sources.digest import differences, local_digests, relative_to_output

    out_specs, said = [], []
    for spec, src in zip(specs, loaded, strict=True):
        if src.kind != "local":
            out_specs.append(spec)
            continue
        now = local_digests(spec.source)
        diffs = differences(spec.files, now) if spec.files is not None else []
        if diffs and not allow_changed:
            raise SourceError(
                f"{spec.source} is not the input the recipe recorded: "
                + "; ".join(diffs[:5])
                + (" …" if len(diffs) > 5 else ""),
                "the rebuild would give another set; restore the files, or pass --allow-changed-sources "
                "(allow_changed_sources=True) to build from them as they are now",
            )
        if diffs:
            said.append(f"{spec.source} differs from the recipe (built anyway): " + "; ".join(diffs))
        where = relative_to_output(str(spec.source), Path(output)) if output is not None else spec.source
        out_specs.append(replace(spec, source=where, files=now))
    return out_specs, said


def load_sources(
    specs: list[SourceSpec], options: BuildOptions, token: str | bool | None, progress: bool
) -> tuple[list[Source], list]:
    """Open every source (a source's own settings, then the build's, then its preset's defaults)."""
    from prefkit.formats.presets import find_preset, get_preset

    opts = options.sources
    forced = get_preset(opts.preset) if opts.preset else None
    presets = [forced or (find_preset(str(s.source)) if isinstance(s.source, str) else None) for s in specs]
    loaded = []
    for spec, pre in track(
        list(zip(specs, presets, strict=True)), desc="loading", show=progress and len(specs) > 1
    ):
        split = spec.split or opts.split or (pre.default_split if pre and pre.default_split else None)
        loaded.append(
            load_source(
                spec.source,
                split=list(split) if split else None,
                revision=spec.revision or opts.revision,
                config=_first(spec.config, opts.config, pre.config if pre else None),
                data_dir=_first(spec.data_dir, opts.data_dir, pre.data_dir if pre else None),
                token=token,
            )
        )
    return loaded, presets


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def plan_parts(loaded: list[Source], specs: list, presets: list, options: BuildOptions) -> list[Part]:
    """Every split of every source, with its family and column mapping (read from its columns and first rows)."""
    explicit = {name: getattr(options.formats, name) for name in family_options()}
    used: set[str] = set()
    parts: list[Part] = []
    for i, src in enumerate(loaded):
        for name, table in src.splits.items():
            parts.append(plan_part(i, name, table, loaded, specs, presets, options, explicit, used))
    _check_family_options(explicit, used)
    return parts


def plan_part(
    i: int,
    name: str,
    table: Any,
    loaded: list[Source],
    specs: list,
    presets: list,
    options: BuildOptions,
    explicit: dict[str, Any],
    used: set[str],
) -> Part:
    """One split of source ``i``: detect its shape, apply the family's options, choose the columns to read."""
    fmt = options.formats
    columns = {
        "prompt": fmt.prompt_col,
        "chosen": fmt.chosen_col,
        "rejected": fmt.rejected_col,
        "system": fmt.system_col,
    }
    pre = presets[i]
    use_preset = pre is not None and (fmt.format is None or fmt.format == pre.family)
    cols = (
        {k: v if v is not None else pre.columns.get(k) for k, v in columns.items()} if use_preset else columns
    )
    mapping = detect_shape(
        table,
        format=fmt.format or (pre.family if pre else None),
        columns=cols,
        margin_col=fmt.margin_col or (pre.margin_col if use_preset else None),
    )
    mapping = with_options(
        mapping, pre if use_preset else None, explicit, options.select.seed, used, table.schema
    )
    mapping = _carry(mapping, loaded[i], table.schema)
    out = pre.split_names.get(name, name) if len(specs) > 1 and use_preset else name
    read = list(table.column_names) if options.output.full_rejects else used_columns(mapping)
    return Part(loaded[i], specs[i], pre if use_preset else None, name, out, table, mapping, read)


def read_parts(
    parts: list[Part],
    loaded: list[Source],
    specs: list,
    presets: list,
    options: BuildOptions,
    target_check: Any,
    work: Path,
    needs: Any,
    progress: bool,
) -> None:
    """Pass 1 over every part, in batches (:func:`prefkit.stream.read_part`). A streamed text file whose later
    blocks do not fit its first block's types is read whole and its part read again, as before streaming."""
    from prefkit.stream import read_part

    for index, part in enumerate(track(parts, desc="normalising", show=progress and len(parts) > 1)):
        try:
            read_part(part, index, options, target_check, work, needs, progress)
        except StreamChanged as changed:
            table = changed.split.fallback()
            part.src.splits[part.split] = table
            source = next(i for i, s in enumerate(specs) if s is part.spec)
            explicit = {name: getattr(options.formats, name) for name in family_options()}
            again = plan_part(source, part.split, table, loaded, specs, presets, options, explicit, set())
            parts[index] = again
            read_part(again, index, options, target_check, work, needs, progress)


def _carry(mapping: Any, src: Source, schema: pa.Schema) -> Any:
    """A prefkit set read as a source keeps its extra columns (reference log-probs, reward scores …)."""
    from dataclasses import replace

    from prefkit.record import RECORD_COLUMNS

    if not src.info.get("prefkit_set") or FAMILIES[mapping.family].full_frame:
        return mapping
    # every extra column, also one read as the margin (`--margin-col rm_margin` keeps rm_margin itself)
    carry = [c for c in schema.names if c not in RECORD_COLUMNS]
    return replace(mapping, extra={**mapping.extra, "carry": carry}) if carry else mapping


def _check_family_options(explicit: dict[str, Any], used: set[str]) -> None:
    unused = [name for name, value in explicit.items() if value is not None and name not in used]
    if not unused:
        return
    options = family_options()
    where = "; ".join(
        f"{option(name)} is for {', '.join(options[name][0].applies_to or options[name][1])}"
        for name in unused
    )
    raise OptionError(
        f"{', '.join(option(n) for n in unused)} {'applies' if len(unused) == 1 else 'apply'} to none of the "
        "sources",
        f"{where}; `prefkit detect SOURCE` shows a source's shape (families: {', '.join(FAMILIES)})",
    )


def write_extra(
    folder: Path, manifest: dict, schemas: dict[str, pa.Schema], output: Path, options: BuildOptions
) -> None:
    """The export's own files, the manifest and the dataset card, in the staged output folder."""
    from prefkit.output import finish_folder
    from prefkit.output.exports import check_export

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
    from prefkit.formats.scores import MARGIN_ALIASES

    if margin and column in MARGIN_ALIASES and column != margin:  # the source's own margin, replaced
        return f"{column} ({n:,} non-null; the source's own margin, not used: the margin is {margin})"
    return f"{column} ({n:,} non-null)"
