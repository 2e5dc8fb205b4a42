"""Normalisers: detect a source's shape from its columns and turn its rows into canonical records.

One module per family of shapes (see docs/formats.md and ../shared/docs/hub-datasets.md):

====  =====================  ================================================================
A     ``flat``               prompt/question/input/instruction + chosen/rejected strings
B     ``implicit-messages``  chosen/rejected are whole conversations; prompt = shared history
C     ``explicit-messages``  prompt = messages; chosen/rejected = [assistant] (or strings)
D     ``transcript``         "\\n\\nHuman: …\\n\\nAssistant: …" strings
E     ``pairwise``           two answers + a label (SHP, PKU-SafeRLHF, HelpSteer2, chatbot arena)
F     ``ranked``             k answers with ranks (Nectar); binarised
G     ``rated``              N completions with ratings (UltraFeedback raw); binarised
====  =====================  ================================================================

A family module's ``normalise`` returns either the three message columns + ``invalid`` (row for row; scores are
read here from the alias table), or a full frame that already holds ``score_chosen``/``score_rejected``/``margin``
and may hold ``source_index`` (when it emits more or fewer rows than its input: F/G binarisation), ``tie``,
``normaliser_drop`` (a drop reason decided from labels) and ``flag_*`` booleans (counted in the manifest).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import polars as pl
import pyarrow as pa

from prefkit.errors import FormatError
from prefkit.formats import flat, messages, pairwise, ranked, transcript
from prefkit.formats.base import Mapping
from prefkit.formats.scores import pick_score_columns, score_exprs

__all__ = ["FAMILIES", "Family", "Mapping", "detect", "normalise", "pick_column"]


@dataclass(frozen=True)
class Family:
    name: str
    letter: str
    description: str
    match: Callable[..., Mapping | str]
    normalise: Callable[[pl.DataFrame, Mapping, pa.Schema], pl.DataFrame]


#: in detection order: the most specific shapes first
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            messages.EXPLICIT,
            "C",
            messages.DESCRIPTIONS[messages.EXPLICIT],
            messages.match_explicit,
            messages.normalise_explicit,
        ),
        Family(
            messages.IMPLICIT,
            "B",
            messages.DESCRIPTIONS[messages.IMPLICIT],
            messages.match_implicit,
            messages.normalise_implicit,
        ),
        Family(flat.NAME, flat.LETTER, flat.DESCRIPTION, flat.match, flat.normalise),
        Family(
            transcript.NAME, transcript.LETTER, transcript.DESCRIPTION, transcript.match, transcript.normalise
        ),
        Family(pairwise.NAME, pairwise.LETTER, pairwise.DESCRIPTION, pairwise.match, pairwise.normalise),
        Family(ranked.RANKED, "F", ranked.DESCRIPTIONS[ranked.RANKED], ranked.match_ranked, ranked.normalise),
        Family(ranked.RATED, "G", ranked.DESCRIPTIONS[ranked.RATED], ranked.match_rated, ranked.normalise),
    )
}

COLUMN_OPTIONS = ("prompt", "chosen", "rejected", "system")
#: columns that group rows of one prompt (pairs of one Reddit post, of one UltraFeedback prompt, one arena
#: question): leak-free splits keep a group on one side
GROUP_KEYS = ("post_id", "prompt_id", "question_id")
#: families whose normaliser reads its own score columns
FULL_FRAME_FAMILIES = frozenset({pairwise.NAME, ranked.RANKED, ranked.RATED})


def pick_column(
    schema: pa.Schema, override: str | None, aliases: tuple[str, ...], type_ok: Callable[[pa.DataType], bool]
) -> str | None:
    """The column to use: the user's override (checked), else the first alias present with a fitting type."""
    if override is not None:
        if override not in schema.names:
            raise FormatError(
                f"column {override!r} not found; columns are {schema.names}",
                "pass one of the listed columns to the --*-col option",
            )
        return override if type_ok(schema.field(override).type) else None
    return next((a for a in aliases if a in schema.names and type_ok(schema.field(a).type)), None)


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


def detect(
    table: pa.Table | pa.Schema,
    *,
    format: str | None = None,
    columns: dict[str, str | None] | None = None,
    margin_col: str | None = None,
) -> Mapping:
    """Find the family and column mapping of a raw table (or schema).

    ``format`` forces a family; ``columns`` overrides column names (keys: prompt, chosen, rejected, system);
    ``margin_col`` names the native margin column. Raises :class:`FormatError` listing the columns found and the
    options that fix it when nothing matches.
    """
    from prefkit.sources import head

    schema = table if isinstance(table, pa.Schema) else table.schema
    # the sample (only the transcript family reads it) is taken when that family is tried: reading the head of
    # a parquet file decodes its first row group, often the whole file
    columns = {k: v for k, v in (columns or {}).items() if v is not None}
    if format is not None and format not in FAMILIES:
        raise FormatError(f"unknown format {format!r}", f"use one of: {', '.join(FAMILIES)}")
    candidates = [FAMILIES[format]] if format else list(FAMILIES.values())
    reasons = []
    for family in candidates:
        kwargs = {}
        if family.name == transcript.NAME:
            kwargs["sample"] = None if isinstance(table, pa.Schema) else head(table, 64)
        found = family.match(schema, columns, **kwargs)
        if isinstance(found, Mapping):
            mapping = found
            break
        reasons.append(f"{family.name}: {found}")
    else:
        what = (
            f"the columns do not fit format {format!r}"
            if format
            else "no known preference-data shape matches the columns"
        )
        raise FormatError(
            f"{what}; found {_describe_columns(schema)}",
            "name the columns with --prompt-col/--chosen-col/--rejected-col (and --system-col), or force a shape with "
            f"--format {{{','.join(FAMILIES)}}}; `prefkit detect SOURCE` shows what was tried",
        )
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
    if mapping.family in FULL_FRAME_FAMILIES:
        return mapping  # families E-G read their own scores
    return replace(mapping, **pick_score_columns(schema, margin_col))


def normalise(table: pa.Table, mapping: Mapping) -> pl.DataFrame:
    """Canonical columns for every row of ``table`` (same order, same count).

    Returns a polars frame with ``prompt``, ``chosen``, ``rejected`` (``list[{role, content}]``), ``score_chosen``,
    ``score_rejected``, ``margin`` (Float64) and ``invalid`` (reason string, null for rows that normalised).
    """
    family = FAMILIES[mapping.family]
    df = pl.from_arrow(table.select(used_columns(mapping)), rechunk=False)
    if isinstance(df, pl.Series):  # a single column comes back as a Series
        df = df.to_frame()
    core = family.normalise(df, mapping, table.schema)
    if "score_chosen" in core.columns:  # a full frame (families E-G): scores, maybe source_index/tie/…
        out = core
        if mapping.system and mapping.family != flat.NAME and "source_index" not in core.columns:
            out = out.with_columns(_with_system(df[mapping.system]))
    else:
        if mapping.system and mapping.family != flat.NAME:
            core = core.with_columns(_with_system(df[mapping.system]))
        scores = df.with_columns(
            score_exprs(table.schema, mapping.score_chosen, mapping.score_rejected, mapping.margin)
        )
        scores = scores.select("score_chosen", "score_rejected", "margin")
        out = pl.concat(
            [core.select("prompt", "chosen", "rejected"), scores, core.select("invalid")], how="horizontal"
        )
    return _with_extras(out, df, mapping)


def _with_extras(out: pl.DataFrame, df: pl.DataFrame, mapping: Mapping) -> pl.DataFrame:
    """Options any family honours, from ``mapping.extra`` (set by presets or detection): ``tie_when``
    ``{column, values}`` marks ties from a label column; ``group`` names the source's group key (SHP ``post_id``,
    UltraFeedback ``prompt_id``), kept as the ``group`` column for leak-free splits."""
    tie_when = mapping.extra.get("tie_when")
    group = mapping.extra.get("group")
    if not tie_when and not group:
        return out
    take = (lambda s: s.gather(out["source_index"])) if "source_index" in out.columns else (lambda s: s)
    if tie_when:
        values = (
            df[tie_when["column"]].cast(pl.String).is_in(list(map(str, tie_when["values"]))).fill_null(False)
        )
        tie = take(values)
        if "tie" in out.columns:
            tie = out["tie"] | tie
        out = out.with_columns(tie.alias("tie"))
    if group and group in df.columns:
        out = out.with_columns(take(df[group].cast(pl.String)).alias("group"))
    return out


def used_columns(mapping: Mapping) -> list[str]:
    """The source columns a mapping reads (what `build` decodes, and what rejects keep of each row)."""
    cols = [mapping.prompt, mapping.chosen, mapping.rejected, mapping.system]
    cols += [mapping.score_chosen, mapping.score_rejected, mapping.margin]
    cols += list(mapping.extra.get("columns", {}).values())
    cols += [mapping.extra.get("group"), (mapping.extra.get("tie_when") or {}).get("column")]
    return list(dict.fromkeys(c for c in cols if c))


def _with_system(system: pl.Series) -> pl.Expr:
    """Prepend a separate system column to message prompts that do not already start with a system turn."""
    sys = pl.lit(system)
    has = sys.is_not_null() & (sys.str.strip_chars() != "")
    starts_with_system = pl.col("prompt").list.first().struct.field("role") == "system"
    sys_msg = pl.concat_list([pl.struct(role=pl.lit("system"), content=sys)])
    return (
        pl.when(has & ~starts_with_system.fill_null(False))
        .then(pl.concat_list([sys_msg, pl.col("prompt")]))
        .otherwise(pl.col("prompt"))
        .alias("prompt")
    )
