"""The build pipeline (`prefkit build`): sources → canonical records → validation and filters → output folder.

Every row read ends in exactly one place: kept, dropped by a filter (with its reason) or invalid (with the
validation error); the manifest's counts add up (``read = kept + dropped + invalid`` per split and reason).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from prefkit import __version__
from prefkit.errors import SelectionError
from prefkit.filters import SELECTION_REASONS, FilterOptions, classify
from prefkit.formats import Mapping, detect, normalise, used_columns
from prefkit.progress import track
from prefkit.records import ARROW_SCHEMA, RECORD_COLUMNS
from prefkit.sources import Source, load_source


@dataclass
class SplitResult:
    """One split of one source after classification."""

    kept: pa.Table
    rejects: pa.Table
    counts: dict[str, Any]


@dataclass
class BuildResult:
    """What `build` produced: the kept rows, every rejected row, and the manifest."""

    splits: dict[str, pa.Table]
    rejects: dict[str, pa.Table]
    manifest: dict
    output: Path | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def dataset(self):
        """The kept rows as a ``datasets.DatasetDict``."""
        import datasets

        return datasets.DatasetDict({name: datasets.Dataset(table) for name, table in self.splits.items()})

    def summary(self) -> dict:
        """The JSON summary the CLI prints with --json."""
        return {
            "output": str(self.output) if self.output else None,
            "seconds": round(self.seconds, 3),
            "splits": self.manifest["splits"],
            "totals": self.manifest["totals"],
        }


def stable_ids(df: pl.DataFrame) -> pl.Series:
    """A stable 16-hex-digit hash (xxh3-64) of each row's normalised prompt/chosen/rejected as compact JSON."""
    import xxhash

    digest = xxhash.xxh3_64_hexdigest
    encoded = df.select(pl.struct("prompt", "chosen", "rejected").struct.json_encode()).to_series()
    return pl.Series("id", [digest(s.encode()) for s in encoded], dtype=pl.String)


def to_records(df: pl.DataFrame, source_label: str) -> pa.Table:
    """Kept rows as an Arrow table with exactly the canonical schema (plain, not large_, types)."""
    out = df.with_columns(pl.lit(source_label).alias("source"), stable_ids(df)).select(RECORD_COLUMNS)
    return out.to_arrow().cast(ARROW_SCHEMA)


REJECT_META = pa.schema(
    [
        ("source", pa.string()),
        ("source_index", pa.int64()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("margin", pa.float64()),
    ]
)


def reject_table(df: pl.DataFrame, raw: pa.Table, source_label: str, full: bool = False) -> pa.Table:
    """Rows not kept: source, source_index, stage, reason, margin, then the row's original fields.

    The original fields are the source columns the build read (its mapping), or all columns with ``full``.
    Rows dropped by a selection (``--top``, ``--max-rows``) carry null original fields unless ``full``: they are
    good rows not chosen, often most of the source, and ``source_index`` at the pinned revision finds them.
    """
    meta = df.select(pl.lit(source_label).alias("source"), "source_index", "stage", "reason", "margin")
    meta_table = meta.to_arrow().cast(REJECT_META)
    index = meta["source_index"]
    if not full:
        index = pl.select(
            pl.when(~pl.lit(meta["reason"]).is_in(list(SELECTION_REASONS))).then(pl.lit(index))
        ).to_series()
    original = raw.take(index.to_arrow())
    for name in original.column_names:
        column = original.column(name)
        meta_table = meta_table.append_column(
            f"original.{name}" if name in REJECT_META.names else name, column
        )
    return meta_table


SYSTEM_MODES = ("keep", "drop", "override", "default")


def parse_system(value: str | None, text: str | None = None) -> tuple[str, str | None]:
    """``keep`` | ``drop`` | ``override TEXT`` | ``default TEXT`` (also ``override:TEXT`` / ``override=TEXT``)."""
    if value is None:
        return "keep", None
    import re

    found = re.match(r"\s*([A-Za-z]+)\s*(?:[:=\s]\s*(.*))?\Z", value, flags=re.S)
    mode, rest = (found.group(1), found.group(2) or "") if found else (value.strip(), "")
    mode = mode.strip().lower()
    if mode not in SYSTEM_MODES:
        raise SelectionError(
            f"unknown --system mode {mode!r}", "use keep, drop, override TEXT or default TEXT"
        )
    body = text if text is not None else (rest.strip() or None)
    if mode in ("override", "default") and not body:
        raise SelectionError(
            f"--system {mode} needs the system prompt text",
            f'e.g. --system {mode} "You are a helpful assistant."',
        )
    if mode in ("keep", "drop") and body:
        raise SelectionError(f"--system {mode} takes no text", "use --system override TEXT to set a prompt")
    return mode, body


def apply_system(df: pl.DataFrame, mode: str, text: str | None) -> pl.DataFrame:
    """Drop / override / default the leading system message of every prompt (``keep`` leaves them)."""
    if mode == "keep":
        return df
    first_is_system = (pl.col("prompt").list.first().struct.field("role") == "system").fill_null(False)
    without = pl.when(first_is_system).then(pl.col("prompt").list.slice(1)).otherwise(pl.col("prompt"))
    if mode == "drop":
        new = without
    else:
        msg = pl.concat_list([pl.struct(role=pl.lit("system"), content=pl.lit(text, dtype=pl.String))])
        base = without if mode == "override" else pl.col("prompt")
        prepend = pl.lit(True) if mode == "override" else ~first_is_system
        new = pl.when(prepend).then(pl.concat_list([msg, base])).otherwise(base)
    return df.with_columns(pl.when(pl.col("prompt").is_not_null()).then(new).otherwise(None).alias("prompt"))


def classify_frame(
    raw: pa.Table,
    mapping: Mapping,
    options: FilterOptions,
    system: tuple[str, str | None] = ("keep", None),
    extra_drop=None,
) -> pl.DataFrame:
    """Normalise, apply the system option, validate and filter one split of one source.

    One row per candidate pair with ``stage``/``reason`` and ``source_index`` (the source row it came from).
    """
    df = normalise(raw, mapping)
    if "source_index" not in df.columns:
        df = df.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("source_index"))
    df = apply_system(df, *system)
    return classify(df, options, extra_drop)


def classify_split(
    raw: pa.Table, mapping: Mapping, options: FilterOptions, source_label: str, full_rejects: bool = False
) -> SplitResult:
    """Normalise, validate and filter one split of one source."""
    df = classify_frame(raw, mapping, options)
    return finish_part(df, raw, source_label, options, full_rejects, raw.num_rows)


def finish_part(
    df: pl.DataFrame,
    raw: pa.Table,
    source_label: str,
    options: FilterOptions,
    full_rejects: bool = False,
    read: int | None = None,
    copies: pl.DataFrame | None = None,
    where: pl.Expr | None = None,
) -> SplitResult:
    """Records, rejects and counts of classified rows (``copies``: extra kept rows from upsampling; ``where``:
    only the rows it selects, e.g. one side of a test split, filtered once)."""
    mask = df["stage"] == "kept"
    inside = pl.Series([True] * df.height) if where is None else df.select(where).to_series()
    kept = df.filter(mask & inside)
    if options.top is not None and "_rank" in kept.columns:
        kept = kept.sort("_rank")
    records = to_records(kept, source_label)
    upsampled = 0
    if copies is not None and copies.height and "_prow" in kept.columns:
        # a copy is its original's record again (same id): taken from the records, not recomputed
        where = kept.select(pl.col("_prow").cast(pl.Int64)).with_row_index("_at")
        take = copies.select(pl.col("_prow").cast(pl.Int64)).join(
            where, on="_prow", how="left", maintain_order="left"
        )
        records = pa.concat_tables([records, records.take(take["_at"].to_arrow())])
        upsampled = copies.height
    rejected = df.filter(~mask & inside)
    small = df.select("stage", "reason", *[c for c in df.columns if c.startswith("flag_")]).filter(inside)
    return SplitResult(
        kept=records,
        rejects=reject_table(rejected, raw, source_label, full_rejects),
        counts=count(small, read=read, upsampled=upsampled),
    )


def count(df: pl.DataFrame, read: int | None = None, upsampled: int = 0) -> dict[str, Any]:
    """Counts of one part. ``read`` is the number of source rows (default: one per row of ``df``); rows beyond one
    per source row (binarisation) are ``added.extra_pairs``, upsampled copies ``added.upsampled``, so that
    ``read + sum(added) == kept + sum(dropped) + sum(invalid)``."""
    by = Counter()
    for stage, reason, n in df.group_by("stage", "reason").len().iter_rows():
        by[(stage, reason)] += n
    read = df.height if read is None else read
    out: dict[str, Any] = {
        "read": read,
        "kept": by[("kept", None)] + upsampled,
        "dropped": dict(sorted((r, n) for (s, r), n in by.items() if s == "dropped")),
        "invalid": dict(sorted((r, n) for (s, r), n in by.items() if s == "invalid")),
    }
    added = {k: v for k, v in (("extra_pairs", df.height - read), ("upsampled", upsampled)) if v}
    if added:
        out["added"] = added
    flags = {c.removeprefix("flag_"): int(df[c].sum()) for c in df.columns if c.startswith("flag_")}
    if flags:
        out["flags"] = flags
    return out


def merge_counts(a: dict, b: dict) -> dict:
    out = {"read": a["read"] + b["read"], "kept": a["kept"] + b["kept"]}
    for key in ("dropped", "invalid"):
        merged = Counter(a[key]) + Counter(b[key])
        out[key] = dict(sorted(merged.items()))
    for key in ("added", "flags"):
        if key in a or key in b:
            merged = Counter(a.get(key, {}))
            merged.update(b.get(key, {}))
            out[key] = dict(sorted(merged.items()))
    return out


EMPTY_COUNTS = {"read": 0, "kept": 0, "dropped": {}, "invalid": {}}

#: family options (``Mapping.extra`` keys) -> the families and E variants they apply to
FAMILY_OPTIONS = {
    "pairs": ("ranked", "rated"),
    "min_gap": ("ranked", "rated"),
    "max_pairs_per_prompt": ("ranked", "rated"),
    "rating": ("rated",),
    "axis": ("pku",),
    "shp_min_ratio": ("shp",),
    "max_pairs_per_post": ("shp",),
}
OPTION_FLAGS = {
    "pairs": "--pairs",
    "min_gap": "--min-gap",
    "max_pairs_per_prompt": "--max-pairs-per-prompt",
    "rating": "--rating",
    "axis": "--axis",
    "shp_min_ratio": "--shp-min-ratio",
    "max_pairs_per_post": "--max-pairs-per-post",
}


@dataclass
class Part:
    """One split of one source on its way through a build."""

    src: Source
    spec: Any  # prefkit.mix.SourceSpec
    preset: Any  # prefkit.presets.Preset | None
    split: str
    out: str
    raw: pa.Table
    mapping: Mapping
    df: pl.DataFrame
    copies: pl.DataFrame | None = None


def _family_extra(
    mapping: Mapping, preset, explicit: dict, seed: int | None, used: set[str], schema: pa.Schema
) -> Mapping:
    """Family options into ``mapping.extra``: preset defaults, then the explicit ones (which win). A preset's
    group / tie column is used only where the source has it (older revisions may not)."""
    from dataclasses import replace

    kind = mapping.extra.get("variant", mapping.family)
    extra = dict(mapping.extra)
    if preset is not None and preset.family == mapping.family:
        if preset.group and preset.group in schema.names:
            extra["group"] = preset.group
        if preset.tie_when and preset.tie_when.get("column") in schema.names:
            extra["tie_when"] = preset.tie_when
    defaults = preset.options if preset is not None and preset.family == mapping.family else {}
    for key, families in FAMILY_OPTIONS.items():
        if kind not in families and mapping.family not in families:
            continue
        value = explicit.get(key)
        if value is not None:
            used.add(key)
        elif key in defaults:
            value = defaults[key]
        if value is not None:
            extra[key] = value
    if extra.get("pairs") == "best-vs-random":
        extra["seed"] = 0 if seed is None else seed
    return replace(mapping, extra=extra)


def _margin_scales(parts: list[Part], specs: list) -> dict[int, dict]:
    """Per source (by position): the margin scale, and whether margins are divided by it (several sources with
    different scales)."""
    scales: dict[int, dict] = {}
    for i, _ in enumerate(specs):
        mine = [p for p in parts if p.spec is specs[i]]
        preset = mine[0].preset if mine else None
        span = preset.scale_span if preset is not None else None
        origin = "preset" if span else None
        if not span:
            margins = [
                p.df.select(pl.col("margin").filter(pl.col("stage") != "invalid").abs().max()).item()
                for p in mine
            ]
            margins = [m for m in margins if m is not None and m == m]
            span = max(margins) if margins else None
            origin = "observed max |margin|" if span else None
        scales[i] = {"span": span, "from": origin}
    spans = {v["span"] for v in scales.values() if v["span"]}
    normalise_them = len(specs) > 1 and len(spans) > 1
    for v in scales.values():
        v["normalised"] = bool(normalise_them and v["span"])
    return scales


def build(
    sources: str | Path | list[str | Path],
    output: str | Path | None = None,
    *,
    split: str | list[str] | None = None,
    revision: str | None = None,
    config: str | None = None,
    data_dir: str | None = None,
    format: str | None = None,
    prompt_col: str | None = None,
    chosen_col: str | None = None,
    rejected_col: str | None = None,
    system_col: str | None = None,
    margin_col: str | None = None,
    keep_ties: bool = False,
    keep_residue: bool = False,
    min_margin: float | None = None,
    top: int | None = None,
    max_rows: int | None = None,
    seed: int | None = None,
    full_rejects: bool = False,
    overwrite: bool = False,
    token: str | bool | None = None,
    progress: bool = False,
    command: str | None = None,
    preset: str | None = None,
    pairs: str | None = None,
    min_gap: float | None = None,
    max_pairs_per_prompt: int | None = None,
    rating: str | None = None,
    axis: str | None = None,
    shp_min_ratio: float | None = None,
    max_pairs_per_post: int | None = None,
    dedup: bool = False,
    one_pair_per_prompt: bool = False,
    test_size: float | None = None,
    test_rows: int | None = None,
    system: str | None = None,
    system_text: str | None = None,
    export: str = "trl",
    tokenizer: str | None = None,
    chat_template: str | None = None,
    tokenizer_revision: str | None = None,
    trust_remote_code: bool = False,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
    min_answer_tokens: int | None = None,
    output_format: str = "messages",
) -> BuildResult:
    """Build a clean preference set from one or more sources and (when ``output`` is given) write it.

    A source is a Hub id or a local path, optionally with a mixing weight: ``"argilla/dpo-mix-7k:0.5"`` (a
    fraction), ``"Intel/orca_dpo_pairs:2000"`` (rows), ``"./ours.jsonl:2.0"`` (upsampling); see
    :mod:`prefkit.mix`. Known datasets are read by their preset (:mod:`prefkit.presets`); explicit options win.
    Families E-G take ``pairs``/``min_gap``/``max_pairs_per_prompt``/``rating`` (binarisation), ``axis``
    (PKU-SafeRLHF), ``shp_min_ratio``/``max_pairs_per_post`` (SHP). ``dedup``/``one_pair_per_prompt`` remove
    duplicates across sources (:mod:`prefkit.dedup`); ``test_size``/``test_rows`` write leak-free ``train``/``test``
    splits (:mod:`prefkit.splits`); ``system`` is ``keep`` | ``drop`` | ``override TEXT`` | ``default TEXT``;
    ``export`` is ``trl`` | ``openrlhf`` | ``llamafactory`` | ``kto`` (:mod:`prefkit.export`).
    ``tokenizer`` / ``chat_template`` name the target model's tokenizer and template; ``max_length`` /
    ``max_prompt_length`` / ``min_answer_tokens`` drop rows by TRL's token counts, and ``output_format="text"``
    writes rendered strings instead of messages (:mod:`prefkit.token_filters`, :mod:`prefkit.target`).

    >>> result = build("HuggingFaceH4/ultrafeedback_binarized", "uf", split="train_prefs", min_margin=1)  # doctest: +SKIP
    >>> result.dataset["train_prefs"][0]["prompt"]  # doctest: +SKIP
    [{'role': 'user', 'content': '...'}]
    """
    from prefkit.export import check_export
    from prefkit.mix import parse_source
    from prefkit.presets import find_preset, get_preset

    start = time.perf_counter()
    options = FilterOptions(
        keep_ties=keep_ties,
        keep_residue=keep_residue,
        min_margin=min_margin,
        top=top,
        max_rows=max_rows,
        seed=seed,
    )
    check_export(export)
    target, token_drop = _load_target(
        tokenizer,
        chat_template,
        tokenizer_revision,
        trust_remote_code,
        max_length,
        max_prompt_length,
        min_answer_tokens,
        output_format,
        export,
    )
    system_mode = parse_system(system, system_text)
    if test_size is not None or test_rows is not None:
        from prefkit.splits import test_target

        test_target(10**12, test_size, test_rows)  # checks the values before any loading
    columns = {"prompt": prompt_col, "chosen": chosen_col, "rejected": rejected_col, "system": system_col}
    explicit = {
        "pairs": pairs,
        "min_gap": min_gap,
        "max_pairs_per_prompt": max_pairs_per_prompt,
        "rating": rating,
        "axis": axis,
        "shp_min_ratio": shp_min_ratio,
        "max_pairs_per_post": max_pairs_per_post,
    }
    raw_specs = [sources] if isinstance(sources, (str, Path)) else list(sources)
    specs = [parse_source(s) for s in raw_specs]
    forced = get_preset(preset) if preset else None
    presets = [forced or (find_preset(str(s.source)) if isinstance(s.source, str) else None) for s in specs]
    loaded: list[Source] = []
    for spec, pre in track(
        list(zip(specs, presets, strict=True)), desc="loading", show=progress and len(specs) > 1
    ):
        loaded.append(
            load_source(
                spec.source,
                split=split or (list(pre.default_split) if pre and pre.default_split else None),
                revision=revision,
                config=config if config is not None else (pre.config if pre else None),
                data_dir=data_dir if data_dir is not None else (pre.data_dir if pre else None),
                token=token,
            )
        )
    mixing = len(specs) > 1
    used: set[str] = set()
    parts: list[Part] = []
    work = [(i, name, table) for i, src in enumerate(loaded) for name, table in src.splits.items()]
    for i, name, table in track(work, desc="normalising", show=progress):
        src, spec, pre = loaded[i], specs[i], presets[i]
        use_preset = pre is not None and (format is None or format == pre.family)
        cols = dict(columns)
        if use_preset:
            cols = {k: v if v is not None else pre.columns.get(k) for k, v in columns.items()}
        mapping = detect(
            table,
            format=format or (pre.family if pre else None),
            columns=cols,
            margin_col=margin_col or (pre.margin_col if use_preset else None),
        )
        mapping = _family_extra(mapping, pre if use_preset else None, explicit, seed, used, table.schema)
        raw = table if full_rejects else table.select(used_columns(mapping))
        df = classify_frame(raw, mapping, options, system_mode, token_drop)
        out = pre.split_names.get(name, name) if mixing and use_preset else name
        parts.append(Part(src, spec, pre if use_preset else None, name, out, raw, mapping, df))
    unused = [OPTION_FLAGS[k] for k, v in explicit.items() if v is not None and k not in used]
    if unused:
        raise SelectionError(
            f"{', '.join(unused)} apply to none of the sources",
            "--pairs/--min-gap/--max-pairs-per-prompt/--rating are for ranked/rated sets (Nectar, UltraFeedback), "
            "--axis for PKU-SafeRLHF, --shp-min-ratio/--max-pairs-per-post for SHP; `prefkit detect` shows a "
            "source's shape",
        )
    scales = _mix_and_select(parts, specs, seed, dedup, one_pair_per_prompt)
    split_info = None
    if test_size is not None or test_rows is not None:
        split_info = _assign_splits(parts, test_size, test_rows, seed)
    kept: dict[str, list[pa.Table]] = {}
    rejects: dict[str, list[pa.Table]] = {}
    counts: dict[str, dict] = {}
    described = []
    for part in parts:
        part_counts = EMPTY_COUNTS
        df = part.df
        groups = [(part.out, None)] if split_info is None else _by_out_split(df)
        for out_name, where in groups:
            copies = part.copies
            if copies is not None and where is not None:
                copies = copies.join(df.select(pl.col("_prow").filter(where)), on="_prow", how="semi")
            small = df.select(
                pl.col("source_index") if where is None else pl.col("source_index").filter(where)
            )
            read = small["source_index"].n_unique()
            result = finish_part(df, part.raw, part.src.label, options, full_rejects, read, copies, where)
            kept.setdefault(out_name, []).append(result.kept)
            rejects.setdefault(out_name, []).append(result.rejects)
            counts[out_name] = merge_counts(counts.get(out_name, EMPTY_COUNTS), result.counts)
            part_counts = merge_counts(part_counts, result.counts)
        described.append(
            {
                **part.src.describe(),
                "split": part.split,
                "format": part.mapping.to_dict(),
                "counts": part_counts,
            }
        )
    splits = {name: pa.concat_tables(tables) for name, tables in kept.items()}
    reject_tables = {name: concat_rejects(tables) for name, tables in rejects.items()}
    source_extras = []
    for i, (spec, pre) in enumerate(zip(specs, presets, strict=True)):
        entry: dict[str, Any] = {}
        if spec.weight is not None:
            entry["weight"] = spec.weight.to_dict()
        if pre is not None:
            entry["preset"] = pre.id
            entry["license"] = pre.license
            if pre.gated:
                entry["gated"] = True
        if mixing:
            entry["margin_scale"] = scales[i]
        source_extras.append(entry)
    manifest = make_manifest(loaded, described, counts, options, command, source_extras)
    manifest["parameters"].update(
        {
            k: v
            for k, v in {
                **explicit,
                "preset": preset,
                "dedup": dedup or None,
                "one_pair_per_prompt": one_pair_per_prompt or None,
                "test_size": test_size,
                "test_rows": test_rows,
                "system": None if system_mode[0] == "keep" else system_mode[0],
                "system_text": system_mode[1],
                "export": None if export == "trl" else export,
            }.items()
            if v is not None
        }
    )
    if split_info is not None:
        manifest["test_split"] = split_info
    if target is not None:
        from prefkit.templates import TRL_TOKENIZATION_RULE
        from prefkit.token_filters import text_table

        manifest["tokenizer"] = target.manifest_entry(
            max_length=max_length,
            max_prompt_length=max_prompt_length,
            min_answer_tokens=min_answer_tokens,
            output_format=output_format,
            rule=TRL_TOKENIZATION_RULE if token_drop is not None else None,
        )
        manifest["parameters"]["output_format"] = output_format
        if output_format == "text":
            splits = {name: text_table(table, target) for name, table in splits.items()}
    if export != "trl":
        from prefkit.export import export_table

        stats = {}
        for name in list(splits):
            splits[name], stats[name] = export_table(splits[name], export)
        manifest["export"] = {"shape": export, "splits": stats}
    result = BuildResult(splits=splits, rejects=reject_tables, manifest=manifest)
    if output is not None:
        from prefkit.output import write_output

        extra = None
        if export == "llamafactory":
            from prefkit.export import dataset_info_text

            def extra(manifest: dict) -> dict[str, str]:
                files = {name: manifest["splits"][name].get("files", []) for name in splits}
                return {"dataset_info.json": dataset_info_text(Path(output).name, files)}

        result.output = write_output(
            output, splits, reject_tables, manifest, overwrite=overwrite, extra_files=extra
        )
    result.seconds = time.perf_counter() - start
    return result


def _load_target(
    tokenizer: str | None,
    chat_template: str | None,
    revision: str | None,
    trust_remote_code: bool,
    max_length: int | None,
    max_prompt_length: int | None,
    min_answer_tokens: int | None,
    output_format: str,
    export: str,
):
    """The target tokenizer/template and the token-filter hook for :func:`prefkit.filters.classify` (or Nones)."""
    from prefkit.token_filters import TokenFilterOptions, drop_function

    if output_format not in ("messages", "text"):
        raise SelectionError(f"unknown output format {output_format!r}", "use messages (default) or text")
    token_options = TokenFilterOptions(max_length, max_prompt_length, min_answer_tokens)
    for flag, value in (
        ("--max-length", max_length),
        ("--max-prompt-length", max_prompt_length),
        ("--min-answer-tokens", min_answer_tokens),
    ):
        if value is not None and value < (0 if flag == "--min-answer-tokens" else 1):
            raise SelectionError(f"{flag} must be positive, got {value}", f"pass {flag} N with N >= 1")
    if token_options.active and tokenizer is None:
        raise SelectionError(
            "--max-length / --max-prompt-length / --min-answer-tokens count tokens of the target model",
            "pass --tokenizer MODEL_OR_PATH (a local folder or a Hub id; only the tokenizer files are read)",
        )
    if output_format == "text" and tokenizer is None and chat_template is None:
        raise SelectionError(
            "--output-format text renders the rows with a chat template",
            "pass --tokenizer MODEL_OR_PATH (its template) or --chat-template NAME|FILE",
        )
    if output_format == "text" and export != "trl":
        raise SelectionError(
            f"--output-format text and --export {export} both choose the shape of the data files",
            "use one of them",
        )
    if tokenizer is None and chat_template is None:
        return None, None
    from prefkit.target import load_target

    target = load_target(tokenizer, chat_template, revision=revision, trust_remote_code=trust_remote_code)
    hook = drop_function(target, token_options, output_format) if token_options.active else None
    return target, hook


def concat_rejects(tables: list[pa.Table]) -> pa.Table:
    """Rejects of several sources in one table. An original field whose type differs between sources (``chosen``
    as a string in one, messages in another) becomes text in every source: strings stay as they are, messages and
    other values are written as JSON, so nothing is lost."""
    types: dict[str, set] = {}
    for t in tables:
        for f in t.schema:
            if not pa.types.is_null(f.type):
                types.setdefault(f.name, set()).add(f.type)
    clash = {name for name, ts in types.items() if len(ts) > 1}
    if clash:
        fixed = []
        for t in tables:
            for name in clash & set(t.column_names):
                t = t.set_column(t.column_names.index(name), name, _as_text(t.column(name)))
            fixed.append(t)
        tables = fixed
    return pa.concat_tables(tables, promote_options="permissive")


def _as_text(column: pa.ChunkedArray) -> pa.Array:
    """A column as strings: strings unchanged, message lists as JSON arrays, anything else as JSON."""
    t = column.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return column.cast(pa.string())
    series = pl.from_arrow(column)
    if (
        isinstance(series, pl.Series)
        and isinstance(series.dtype, pl.List)
        and isinstance(series.dtype.inner, pl.Struct)
    ):
        encoded = pl.select(
            pl.when(pl.lit(series).is_not_null()).then(
                "[" + pl.lit(series).list.eval(pl.element().struct.json_encode()).list.join(",") + "]"
            )
        ).to_series()
        return encoded.to_arrow().cast(pa.string())
    import json

    return pa.array(
        [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()], pa.string()
    )


def _mix_and_select(
    parts: list[Part], specs: list, seed: int | None, dedup: bool, one_pair_per_prompt: bool
) -> dict[int, dict]:
    """Across all parts, in mix order: normalise margins (several scales), draw each source's weight, dedup, then
    make the upsampled copies of the drawn rows dedup left kept.

    Dedup runs on the drawn rows, so it never removes a pair whose first copy was not drawn; a weight is what is
    drawn, and dedup may leave fewer rows. Updates ``part.df`` (stage/reason, margins) and ``part.copies``."""
    from prefkit.mix import draw, source_rng

    scales = _margin_scales(parts, specs)
    for part in parts:
        scale = scales[specs.index(part.spec)]
        if scale["normalised"]:
            part.df = part.df.with_columns(pl.col("margin") / scale["span"])
    again_rows: dict[int, pl.Series] = {}
    for i, part in enumerate(parts):
        weight = part.spec.weight
        if weight is None:
            continue
        kept_rows = part.df.select(
            pl.int_range(pl.len(), dtype=pl.UInt32).filter(pl.col("stage") == "kept").alias("_r")
        ).to_series()
        rng = source_rng(seed, f"{part.src.label}/{part.split}")
        once, again = draw(kept_rows.len(), weight, rng)
        not_drawn = kept_rows.filter(~kept_rows.is_in(kept_rows.gather(once).implode()))
        if not_drawn.len():
            part.df = _drop_rows(part.df, not_drawn, pl.Series(["not_sampled"] * not_drawn.len()))
        if len(again):
            again_rows[i] = kept_rows.gather(again)
    if dedup or one_pair_per_prompt:
        from prefkit.dedup import dedup_reasons, key_frame

        pool = pl.concat(
            [
                key_frame(p.df, exact=dedup, one_per_prompt=one_pair_per_prompt).with_columns(
                    pl.lit(i, dtype=pl.Int64).alias("_part")
                )
                for i, p in enumerate(parts)
            ]
        )
        drops = dedup_reasons(pool, exact=dedup, one_per_prompt=one_pair_per_prompt)
        for i, part in enumerate(parts):
            mine = drops.filter(pl.col("_part") == i)
            if mine.height:
                part.df = _drop_rows(part.df, mine["_row"], mine["reason"])
    for i, rows in again_rows.items():
        part = parts[i]
        part.df = part.df.with_row_index("_prow")
        still = part.df["stage"].gather(rows) == "kept"
        if still.any():
            part.copies = part.df[rows.filter(still).to_list()]
    return scales


def _drop_rows(df: pl.DataFrame, rows: pl.Series, reasons: pl.Series) -> pl.DataFrame:
    """Mark ``rows`` (positions) dropped with ``reasons``."""
    reason = pl.Series("_new", [None] * df.height, dtype=pl.String).scatter(rows.cast(pl.Int64), reasons)
    df = df.with_columns(reason)
    return df.with_columns(
        pl.when(pl.col("_new").is_not_null())
        .then(pl.lit("dropped"))
        .otherwise(pl.col("stage"))
        .alias("stage"),
        pl.coalesce("_new", "reason").alias("reason"),
    ).drop("_new")


def _assign_splits(
    parts: list[Part], test_size: float | None, test_rows: int | None, seed: int | None
) -> dict:
    """Leak-free train/test: sets each part's ``_out`` column (see :mod:`prefkit.splits`)."""
    from prefkit.dedup import prompt_keys
    from prefkit.splits import assign_test, test_target

    frames = []
    for i, part in enumerate(parts):
        df = part.df
        copies = part.copies
        per_row = pl.Series([0] * df.height, dtype=pl.Int64)
        if copies is not None and copies.height and "_prow" in copies.columns:
            n = copies.group_by("_prow").len()
            per_row = per_row.scatter(n["_prow"].cast(pl.Int64), n["len"].cast(pl.Int64))
        # group keys only link rows of the same source: hashed with the source's position as the seed
        group = (
            pl.col("group").cast(pl.String).hash(seed=i)
            if "group" in df.columns
            else pl.lit(None, dtype=pl.UInt64)
        )
        # prompt keys for the kept rows: rows not kept only need to follow their source row (or group), so each
        # side's counts add up; whether they share a prompt with the other side does not matter
        kept_at = df.select(
            pl.int_range(pl.len(), dtype=pl.Int64).filter(pl.col("stage") == "kept")
        ).to_series()
        pkey = pl.Series("_pkey", [None] * df.height, dtype=pl.UInt64).scatter(
            kept_at, prompt_keys(df.select(pl.col("prompt").filter(pl.col("stage") == "kept")))
        )
        frames.append(
            df.select(
                pl.lit(pkey).alias("_pkey"),
                group.alias("_gkey"),
                (pl.lit(i, dtype=pl.Int64) * (1 << 40) + pl.col("source_index")).alias("_skey"),
                ((pl.col("stage") == "kept").cast(pl.Int64) + pl.lit(per_row)).alias("_weight"),
            )
        )
    rows = pl.concat(frames)
    target = test_target(int(rows["_weight"].sum()), test_size, test_rows)
    is_test, info = assign_test(rows, target, seed)
    offset = 0
    for part in parts:
        n = part.df.height
        side = is_test.slice(offset, n)
        part.df = part.df.with_columns(
            pl.when(side).then(pl.lit("test")).otherwise(pl.lit("train")).alias("_out")
        )
        offset += n
    return {
        **info,
        "test_size": test_size,
        "test_rows": test_rows,
        "seed": seed,
        "grouped_by": "prompt (non-system turns, case and whitespace folded), source group key, source row",
    }


def _by_out_split(df: pl.DataFrame) -> list[tuple[str, pl.Expr]]:
    """(output split, row filter) for the sides this part has rows on."""
    present = set(df["_out"].unique().to_list())
    return [(name, pl.col("_out") == name) for name in ("train", "test") if name in present]


def make_manifest(
    loaded: list[Source],
    described: list[dict],
    counts: dict,
    options: FilterOptions,
    command: str | None,
    source_extras: list[dict] | None = None,
) -> dict:
    totals = EMPTY_COUNTS
    for c in counts.values():
        totals = merge_counts(totals, c)
    sources = []
    for i, src in enumerate(loaded):
        entry = {k: v for k, v in src.describe().items() if v is not None}
        entry["splits"] = {
            d["split"]: {"format": d["format"], **d["counts"]} for d in described if d["source"] == src.label
        }
        if source_extras:
            entry.update(source_extras[i])
        sources.append(entry)
    return {
        "prefkit_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "sources": sources,
        "parameters": options.to_dict(),
        "splits": counts,
        "totals": totals,
    }
