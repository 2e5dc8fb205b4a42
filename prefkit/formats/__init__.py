"""Normalise: find a source's shape from its columns and turn its rows into canonical records.

Every shape is one module here that declares itself with a module-level ``FAMILY`` (a :class:`Family`: name,
letter, detection order, ``match``, ``normalise``, its options and reasons); the registry below collects them,
so a new shape is one new module (docs/architecture.md). Detection tries the families in ``order``.

A family's ``normalise`` returns either the three message columns + ``invalid`` (row for row; scores are then
read here from the alias table, :mod:`.scores`), or, for ``full_frame`` families, a frame that already holds
``score_chosen``/``score_rejected``/``margin`` and may hold ``source_index`` (when it emits more or fewer rows
than its input: binarisation), ``tie``, ``normaliser_drop`` (a drop reason decided from labels) and ``flag_*``
booleans (counted in the manifest).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import cache
from typing import Any

import polars as pl
import pyarrow as pa

from prefkit.errors import FormatError
from prefkit.formats.base import (
    NON_TEXT_CONTENT,
    ColumnMapping,
    Family,
    FamilyOption,
    non_text_parts,
    pick_column,
)
from prefkit.formats.jsontext import with_json_text
from prefkit.formats.scores import (
    UNPARSED_SCORE,
    fraction_denominators,
    fraction_scale,
    pick_score_columns,
    score_exprs,
)
from prefkit.formats.system import with_system_column
from prefkit.frame import TIE_COLUMN
from prefkit.record import ROW_FIELDS
from prefkit.sources import head

__all__ = [
    "FAMILIES",
    "ColumnMapping",
    "Family",
    "Mapping",
    "detect",
    "family_options",
    "normalise",
    "pick_column",
    "prepare",
]

#: the public name of 0.3 (``prefkit.formats.Mapping``, what ``prefkit.detect_source`` returns): the same class
Mapping = ColumnMapping

#: columns that group rows of one prompt (pairs of one Reddit post, of one UltraFeedback prompt, one arena
#: question): leak-free splits keep a group on one side
GROUP_KEYS = ("post_id", "prompt_id", "question_id")


def _discover() -> dict[str, Family]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        family = getattr(module, "FAMILY", None)
        if isinstance(family, Family):
            found.append(family)
    return {f.name: f for f in sorted(found, key=lambda f: f.order)}


#: every family, in detection order (the most specific shapes first)
FAMILIES: dict[str, Family] = _discover()


@cache
def family_options() -> dict[str, tuple[FamilyOption, list[str]]]:
    """Every family option by name → (its declaration, the families that read it)."""
    out: dict[str, tuple[FamilyOption, list[str]]] = {}
    for family in FAMILIES.values():
        for option in family.options:
            known = out.get(option.name)
            if known is not None and known[0] != option:
                raise ValueError(f"family option {option.name!r} declared twice differently")
            out.setdefault(option.name, (option, []))[1].append(family.name)
    return out


def _describe_columns(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} ({_short_type(f.type)})" for f in schema)


def _short_type(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = t.value_type
        if pa.types.is_struct(inner):
            return "list[{" + ",".join(inner.field(i).name for i in range(inner.num_fields)) + "}]"
        return f"list[{_short_type(inner)}]"
    return str(t)


def _match(table: pa.Table | pa.Schema, schema: pa.Schema, columns: dict, format: str | None) -> ColumnMapping:
    sample_cache: list = []

    def sample() -> pa.Table | None:  # the first rows, read once and only if a family asks
        if not sample_cache:
            sample_cache.append(None if isinstance(table, pa.Schema) else head(table, 64))
        return sample_cache[0]

    candidates = [FAMILIES[format]] if format else list(FAMILIES.values())
    for family in candidates:
        found = family.match(schema, columns, sample)
        if isinstance(found, ColumnMapping):
            return found
    what = (
        f"the columns do not fit format {format!r}"
        if format
        else "no known preference-data shape matches the columns"
    )
    if not schema.names:
        raise FormatError(
            "the source has no columns: it holds no rows (an empty file, or only blank lines)",
            "point at a file that holds rows",
        )
    raise FormatError(
        f"{what}; found {_describe_columns(schema)}",
        "name the columns with --prompt-col/--chosen-col/--rejected-col (and --system-col), or force a shape with "
        f"--format {{{','.join(FAMILIES)}}} (docs/formats.md lists the columns each shape needs)",
    )


def detect(
    table: pa.Table | pa.Schema,
    *,
    format: str | None = None,
    columns: dict[str, str | None] | None = None,
    margin_col: str | None = None,
) -> ColumnMapping:
    """Find the family and column mapping of a raw table (or schema).

    ``format`` forces a family; ``columns`` overrides column names (keys: prompt, chosen, rejected, system);
    ``margin_col`` names the native margin column. Raises :class:`FormatError` listing the columns found and the
    options that fix it when nothing matches.
    """
    schema = table if isinstance(table, pa.Schema) else table.schema
    columns = {k: v for k, v in (columns or {}).items() if v is not None}
    if format is not None and format not in FAMILIES:
        raise FormatError(f"unknown format {format!r}", f"use one of: {', '.join(FAMILIES)}")
    mapping = _match(table, schema, columns, format)
    if "system" in columns and mapping.system is None:
        if not pa.types.is_string(schema.field(columns["system"]).type):
            raise FormatError(
                f"--system-col {columns['system']!r} is not a string column", "pass a string column"
            )
        mapping = replace(mapping, system=columns["system"])
    if "group" not in mapping.extra:
        group = next((g for g in GROUP_KEYS if g in schema.names), None)
        if group:
            mapping = replace(mapping, extra={**mapping.extra, "group": group})
    row_fields = [f for f in ROW_FIELDS if f in schema.names]
    if row_fields:
        mapping = replace(mapping, extra={**mapping.extra, "row_fields": row_fields})
    if FAMILIES[mapping.family].full_frame:
        return mapping  # a full-frame family reads its own scores
    scores = pick_score_columns(schema, margin_col)
    return replace(
        mapping,
        score_chosen=scores.get("score_chosen", mapping.score_chosen),
        score_rejected=scores.get("score_rejected", mapping.score_rejected),
        margin=scores.get("margin", mapping.margin),
    )


def with_options(
    mapping: ColumnMapping,
    preset: Any,
    explicit: dict[str, Any],
    seed: int | None,
    used: set[str],
    schema: pa.Schema,
) -> ColumnMapping:
    """Family options into ``mapping.extra``: the preset's defaults, then the explicit ones (which win; their names
    are added to ``used``). A preset's group / tie column is used only where the source has it."""
    kind = mapping.extra.get("variant", mapping.family)
    extra = dict(mapping.extra)
    own = preset is not None and preset.family == mapping.family
    if own and preset.group and preset.group in schema.names:
        extra["group"] = preset.group
    if own and preset.tie_when and preset.tie_when.get("column") in schema.names:
        extra["tie_when"] = preset.tie_when
    defaults = preset.options if own else {}
    for name, (option, families) in family_options().items():
        if mapping.family not in families or (option.applies_to and kind not in option.applies_to):
            continue
        value = explicit.get(name)
        if value is not None:
            used.add(name)
        elif name in defaults:
            value = defaults[name]
        if value is not None:
            extra[name] = value
    if extra.get("pairs") == "best-vs-random":
        extra["seed"] = 0 if seed is None else seed
    return replace(mapping, extra=extra)


def prepare(
    mapping: ColumnMapping, schema: pa.Schema, read: Callable[[list[str]], Iterable[pa.Table]]
) -> ColumnMapping:
    """``mapping`` with the facts its normaliser needs of the whole split (``mapping.facts``), so that normalising
    the split batch by batch gives what normalising it at once gives: which text score columns write their scores
    as fractions of one scale (``fractions``, read over the whole split), the family's own facts
    (``Family.prepare``: SHP's pairs per post), and a ``state`` the batches share (``best-vs-random`` draws go on
    where the previous batch stopped, so its batches are normalised in order: ``sequential``). ``read(columns)``
    gives those columns of the split in batches."""
    facts: dict[str, Any] = {"state": {}}
    if mapping.extra.get("pairs") == "best-vs-random":
        facts["sequential"] = True  # its draws follow the batches in order
    family = FAMILIES[mapping.family]
    if not family.full_frame:
        text = [
            c
            for c in dict.fromkeys((mapping.score_chosen, mapping.score_rejected, mapping.margin))
            if c and is_text(schema.field(c).type)
        ]
        if text:
            seen: dict[str, set[float]] = {c: set() for c in text}
            for batch in read(text):
                df = pl.from_arrow(batch.select(text), rechunk=False)
                df = df.to_frame() if isinstance(df, pl.Series) else df
                for c in text:
                    seen[c] |= fraction_denominators(df, c) or set()
            facts["fractions"] = {c for c, scales in seen.items() if len(scales) == 1}
    if family.prepare is not None:
        facts.update(family.prepare(mapping, schema, read))
    return replace(mapping, facts=facts)


def normalise(table: pa.Table, mapping: ColumnMapping, start: int = 0) -> pl.DataFrame:
    """Canonical columns for every row of ``table`` (same order, same count; binarising families: see above).

    Returns a polars frame with ``prompt``, ``chosen``, ``rejected`` (``list[{role, content}]``), ``score_chosen``,
    ``score_rejected``, ``margin`` (Float64), ``invalid`` (reason string, null for rows that normalised) and
    ``source_index`` (the source row; ``table`` is the split's rows from ``start`` on). With ``mapping.facts``
    (:func:`prepare`) a batch normalises as it would within the whole split; without, ``table`` is the split.
    """
    family = FAMILIES[mapping.family]
    facts = mapping.facts
    if facts is not None:
        mapping = replace(mapping, facts={**facts, "start": start})
    table = with_json_text(
        table.select(used_columns(mapping)),
        [c for c in (mapping.prompt, mapping.chosen, mapping.rejected) if c],
    )
    df = pl.from_arrow(table, rechunk=False)
    if isinstance(df, pl.Series):  # a single column comes back as a Series
        df = df.to_frame()
    core = family.normalise(df, mapping, table.schema)
    system = None if family.system_in_prompt else mapping.system  # the system column the prompt still lacks
    if family.full_frame:
        out = core
        if system and "source_index" not in core.columns:
            out = out.with_columns(with_system_column(df[system]))
    else:
        if system:
            core = core.with_columns(with_system_column(df[system]))
        score_cols = [c for c in (mapping.score_chosen, mapping.score_rejected, mapping.margin) if c]
        if facts is not None and "fractions" in facts:
            fractions = {c for c in score_cols if c in facts["fractions"]}
        else:
            fractions = {c for c in score_cols if fraction_scale(df, c) is not None}
        scores = df.with_columns(
            score_exprs(table.schema, mapping.score_chosen, mapping.score_rejected, mapping.margin, fractions)
        ).select("score_chosen", "score_rejected", "margin", UNPARSED_SCORE.flag)
        out = pl.concat(
            [core.select("prompt", "chosen", "rejected"), scores, core.select("invalid")], how="horizontal"
        )
        carry = mapping.extra.get("carry") or []
        if carry:  # a prefkit set's extra columns, row for row
            out = out.with_columns(df.select(carry).get_columns())
        out = _row_fields(out, df, mapping, table.schema)
    out = _with_extras(out, df, mapping)
    if "source_index" in out.columns:
        return out.with_columns(pl.col("source_index").cast(pl.Int64) + start)
    return out.with_columns(pl.int_range(start, start + out.height, dtype=pl.Int64).alias("source_index"))


def is_text(dtype: pa.DataType) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype)


def _row_fields(out: pl.DataFrame, df: pl.DataFrame, mapping: ColumnMapping, schema: pa.Schema) -> pl.DataFrame:
    """Row-level ``tools`` / ``chat_template_kwargs`` carried as JSON text, and the ``non_text_content`` reason
    for rows whose messages hold a part that is not text (an image …; counted, until images are supported)."""
    fields = [f for f in mapping.extra.get("row_fields") or [] if f in df.columns]
    if fields:
        out = out.with_columns(df.select(fields).get_columns())
    flags = [
        e
        for c in (mapping.prompt, mapping.chosen, mapping.rejected)
        if c and (e := non_text_parts(c, schema)) is not None
    ]
    if flags:
        non_text = df.select(pl.any_horizontal(flags)).to_series()
        out = out.with_columns(
            pl.when(pl.col("invalid").is_null() & pl.lit(non_text))
            .then(NON_TEXT_CONTENT.lit())
            .otherwise(pl.col("invalid"))
            .alias("invalid")
        )
    return out


def _with_extras(out: pl.DataFrame, df: pl.DataFrame, mapping: ColumnMapping) -> pl.DataFrame:
    """Options any family honours, from ``mapping.extra`` (set by presets or detection): ``tie_when``
    ``{column, values}`` marks ties from a label column; ``group`` names the source's group key (SHP ``post_id``,
    UltraFeedback ``prompt_id``), kept as the ``group`` column for leak-free splits."""
    tie_when = mapping.extra.get("tie_when")
    group = mapping.extra.get("group")
    if not tie_when and not group:
        return out
    take: Callable = (
        (lambda s: s.gather(out["source_index"])) if "source_index" in out.columns else (lambda s: s)
    )
    if tie_when:
        values = (
            df[tie_when["column"]].cast(pl.String).is_in(list(map(str, tie_when["values"]))).fill_null(False)
        )
        tie = take(values)
        if TIE_COLUMN in out.columns:
            tie = out[TIE_COLUMN] | tie
        out = out.with_columns(tie.alias(TIE_COLUMN))
    if group and group in df.columns:
        out = out.with_columns(take(df[group].cast(pl.String)).alias("group"))
    return out


def used_columns(mapping: ColumnMapping) -> list[str]:
    """The source columns a mapping reads (what `build` decodes, and what rejects keep of each row)."""
    cols = [mapping.prompt, mapping.chosen, mapping.rejected, mapping.system]
    cols += [mapping.score_chosen, mapping.score_rejected, mapping.margin]
    cols += list(mapping.extra.get("columns", {}).values())
    cols += [mapping.extra.get("group"), (mapping.extra.get("tie_when") or {}).get("column")]
    cols += mapping.extra.get("carry") or []
    cols += mapping.extra.get("row_fields") or []

    return list(dict.fromkeys(c for c in cols if c))
