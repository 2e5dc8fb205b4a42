"""What a build reads, planned before any row is: the sources and options resolved from the arguments and a
recipe (:func:`resolve`), every source opened (:func:`load_sources`) and its local files checked against the
recipe (:func:`check_local_inputs`), every source split given its family, column mapping and columns to read
(:func:`plan_parts`), the output format made definite (:func:`resolve_output_format`), and pass 1 run over the
planned parts (:func:`read_parts`). :func:`prefkit.pipeline.build` calls these in order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from prefkit.errors import OptionError, SourceError, option
from prefkit.formats import FAMILIES, family_options, used_columns, with_options
from prefkit.formats import detect as detect_shape
from prefkit.formats.presets import find_preset, get_preset
from prefkit.options import BuildOptions, load_recipe
from prefkit.progress import track
from prefkit.record import RECORD_COLUMNS
from prefkit.sources import Source, StreamChanged, load_source
from prefkit.sources.digest import differences, local_digests, relative_to_output, resolve_recipe_path
from prefkit.sources.spec import SourceSpec, parse_source
from prefkit.stream import Part, read_part

__all__ = [
    "Inputs",
    "check_local_inputs",
    "load_sources",
    "plan_part",
    "plan_parts",
    "read_parts",
    "resolve",
    "resolve_output_format",
]


@dataclass(frozen=True)
class Inputs:
    """What a build reads: the sources as opened (``loaded``), each one's spec and preset (None: none), and the
    options they are read with."""

    loaded: list[Source]
    specs: list[SourceSpec]
    presets: list
    options: BuildOptions

    def with_options(self, options: BuildOptions) -> Inputs:
        return replace(self, options=options)


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


def check_local_inputs(
    specs: list[SourceSpec], loaded: list[Source], allow_changed: bool, output: str | Path | None
) -> tuple[list[SourceSpec], list[str]]:
    """Each local source's files (size, SHA-256: :func:`prefkit.sources.digest.local_digests`) put into its spec
    for the recipe, with its path relative to OUT; when the spec came from a recipe that recorded them and they
    differ, a :class:`~prefkit.errors.SourceError` naming what differs, or with ``allow_changed`` a warning.
    Returns (specs, warnings)."""


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


def plan_parts(inputs: Inputs) -> list[Part]:
    """Every split of every source, with its family and column mapping (read from its columns and first rows)."""
    explicit = _explicit(inputs.options)
    used: set[str] = set()
    parts: list[Part] = []
    for i, src in enumerate(inputs.loaded):
        for name, table in src.splits.items():
            parts.append(plan_part(inputs, i, name, table, explicit, used))
    _check_family_options(explicit, used)
    return parts


def _explicit(options: BuildOptions) -> dict[str, Any]:
    """Every family option by name, as the build was told it (None: not given)."""
    return {name: getattr(options.formats, name) for name in family_options()}


def plan_part(
    inputs: Inputs, i: int, name: str, table: Any, explicit: dict[str, Any], used: set[str]
) -> Part:
    """One split of source ``i``: detect its shape, apply the family's options, choose the columns to read
    (``explicit``: the family options given, :func:`_explicit`; ``used`` collects those a family took)."""
    options = inputs.options
    fmt = options.formats
    columns = {
        "prompt": fmt.prompt_col,
        "chosen": fmt.chosen_col,
        "rejected": fmt.rejected_col,
        "system": fmt.system_col,
    }
    pre = inputs.presets[i]
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
    mapping = _carry(mapping, inputs.loaded[i], table.schema)
    out = pre.split_names.get(name, name) if len(inputs.specs) > 1 and use_preset else name
    read = list(table.column_names) if options.output.full_rejects else used_columns(mapping)
    return Part(inputs.loaded[i], inputs.specs[i], pre if use_preset else None, name, out, table, mapping, read)


def read_parts(
    parts: list[Part], inputs: Inputs, target_check: Any, work: Path, needs: Any, progress: bool
) -> None:
    """Pass 1 over every part, in batches (:func:`prefkit.stream.read_part`). A streamed text file whose later
    blocks do not fit its first block's types is read whole and its part read again, as before streaming."""

    options = inputs.options
    for index, part in enumerate(track(parts, desc="normalising", show=progress and len(parts) > 1)):
        try:
            read_part(part, index, options, target_check, work, needs, progress)
        except StreamChanged as changed:
            table = changed.split.fallback()
            part.src.splits[part.split] = table
            source = next(i for i, s in enumerate(inputs.specs) if s is part.spec)
            again = plan_part(inputs, source, part.split, table, _explicit(options), set())
            parts[index] = again
            read_part(again, index, options, target_check, work, needs, progress)


def _carry(mapping: Any, src: Source, schema: pa.Schema) -> Any:
    """A prefkit set read as a source keeps its extra columns (reference log-probs, reward scores …)."""


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
