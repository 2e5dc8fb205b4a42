"""``pairwise``: two answers and a label saying which one wins. The label orients the pair; ties are possible.

One source row gives one candidate pair (row for row, like the families that are not ``full_frame``). Four
shapes, told apart by their columns:

==========  ==========================================  ====================================================
variant     columns                                     orientation
==========  ==========================================  ====================================================
``shp``     history, human_ref_A/B, labels              ``labels == 1`` => A is chosen; margin = score_ratio
``pku``     prompt, response_0/1, better/safer_         ``<axis>_response_id`` names the chosen response
            response_id
``helpsteer2``  prompt, response_1/2,                   strength < 0 => response_1, > 0 => response_2, 0 = tie;
            preference_strength                         margin = abs(strength)
``arena``   conversation_a/b, winner                    ``model_a`` / ``model_b``; ``tie``, ``tie (bothbad)``
==========  ==========================================  ====================================================

Label options travel in ``ColumnMapping.extra``: ``axis`` (pku: better | safer | both), ``shp_min_ratio`` and
``max_pairs_per_post`` (shp). Decisions made from labels go to the ``normaliser_drop`` column (a drop reason the
filters honour), ties to the boolean ``tie`` column (the ``tie`` reason, kept with ``--keep-ties``), counts to
``flag_*`` columns (summed into the manifest's ``flags``).
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa

from prefkit.accounting import Reason, declare
from prefkit.errors import FormatError
from prefkit.formats.base import (
    MESSAGES_DTYPE,
    NULL_VALUE,
    ColumnMapping,
    Family,
    FamilyOption,
    first_reason,
    is_messages,
    is_number,
    is_string,
    message,
    messages_expr,
    single_assistant,
)
from prefkit.formats.implicit_messages import split_conversations
from prefkit.frame import NORMALISER_DROP, TIE_COLUMN

NAME = "pairwise"
LETTER = "E"
DESCRIPTION = (
    "two answers + a label (SHP human_ref_A/B + labels, PKU-SafeRLHF response_0/1 + *_response_id, "
    "HelpSteer2 response_1/2 + preference_strength, chatbot-arena conversation_a/b + winner)"
)

AXES = ("better", "safer", "both")

OPTIONS = (
    FamilyOption(
        "axis",
        Literal["better", "safer", "both"],
        "PKU-SafeRLHF: orient by better_response_id (default) or safer_response_id; `both` keeps only rows "
        "where they agree. Disagreeing rows are counted either way.",
        applies_to=("pku",),
    ),
    FamilyOption(
        "shp_min_ratio",
        float,
        "SHP: drop pairs whose score_ratio is below this (e.g. 2).",
        applies_to=("shp",),
    ),
    FamilyOption(
        "max_pairs_per_post",
        int,
        "SHP: keep at most N pairs per post (largest score_ratio first).",
        ge=1,
        applies_to=("shp",),
    ),
)

BAD_LABEL, BELOW_MIN_RATIO, OVER_MAX_PAIRS_PER_POST, AXES_DISAGREE, AXES_DISAGREE_FLAG = declare(
    Reason("bad_label", "invalid", "the label naming the preferred answer has an unknown value"),
    Reason("below_min_ratio", "dropped", "SHP score_ratio below --shp-min-ratio"),
    Reason(
        "over_max_pairs_per_post",
        "dropped",
        "beyond --max-pairs-per-post pairs of one post (largest score_ratio kept)",
    ),
    Reason(
        "axes_disagree",
        "dropped",
        "PKU-SafeRLHF better and safer labels disagree (--axis both keeps only agreeing rows)",
    ),
    Reason("axes_disagree", "flags", "PKU-SafeRLHF rows whose better and safer labels disagree"),
)
REASONS = (NULL_VALUE, BAD_LABEL, BELOW_MIN_RATIO, OVER_MAX_PAIRS_PER_POST, AXES_DISAGREE, AXES_DISAGREE_FLAG)
#: the winner labels of a tie (Chatbot Arena)
ARENA_TIES = ("tie", "tie (bothbad)")
#: HelpSteer2 inlines earlier turns of multi-turn prompts with these markers
EXTRA_ID_TURN = re.compile(r"<extra_id_1>(User|Assistant)[ \t]*\n?")
EXTRA_ID_SYSTEM = re.compile(r"^\s*<extra_id_0>System[ \t]*\n?")

#: variant -> (required columns with their type test)
_REQUIRED = {
    "shp": {"history": is_string, "human_ref_A": is_string, "human_ref_B": is_string, "labels": is_number},
    "pku": {
        "prompt": is_string,
        "response_0": is_string,
        "response_1": is_string,
        "better_response_id": is_number,
        "safer_response_id": is_number,
    },
    "helpsteer2": {
        "prompt": is_string,
        "response_1": is_string,
        "response_2": is_string,
        "preference_strength": is_number,
    },
    "arena": {"conversation_a": is_messages, "conversation_b": is_messages, "winner": is_string},
}


def _has(schema: pa.Schema, required: dict) -> bool:
    return all(name in schema.names and ok(schema.field(name).type) for name, ok in required.items())


def match(schema: pa.Schema, columns: dict[str, str | None], sample=None) -> ColumnMapping | str:
    """Which E variant the columns are (column overrides do not apply: the label columns are fixed names)."""
    for variant, required in _REQUIRED.items():
        if _has(schema, required):
            return _mapping(variant, schema)
    return (
        "needs two answers and a label: human_ref_A/B + labels (SHP), response_0/1 + better_response_id + "
        "safer_response_id (PKU-SafeRLHF), response_1/2 + preference_strength (HelpSteer2), or "
        "conversation_a/b + winner (chatbot arena)"
    )


def _mapping(variant: str, schema: pa.Schema) -> ColumnMapping:
    names = set(schema.names)
    if variant == "shp":
        cols = {"label": "labels"}
        cols |= {k: k for k in ("score_A", "score_B", "score_ratio", "post_id") if k in names}
        return ColumnMapping(
            NAME,
            chosen="human_ref_A",
            rejected="human_ref_B",
            prompt="history",
            margin="score_ratio" if "score_ratio" in names else None,
            extra={
                "variant": variant,
                "columns": cols,
                **({"group": "post_id"} if "post_id" in names else {}),
            },
        )
    if variant == "pku":
        cols = {"better": "better_response_id", "safer": "safer_response_id"}
        return ColumnMapping(
            NAME,
            chosen="response_0",
            rejected="response_1",
            prompt="prompt",
            extra={"variant": variant, "columns": cols, "axis": "better"},
        )
    if variant == "helpsteer2":
        return ColumnMapping(
            NAME,
            chosen="response_1",
            rejected="response_2",
            prompt="prompt",
            margin="preference_strength",
            extra={"variant": variant, "columns": {"strength": "preference_strength"}},
        )
    group = {"group": "question_id"} if "question_id" in names else {}
    return ColumnMapping(
        NAME,
        chosen="conversation_a",
        rejected="conversation_b",
        extra={"variant": variant, "columns": {"winner": "winner"}, **group},
    )


def normalise(df: pl.DataFrame, mapping: ColumnMapping, schema: pa.Schema) -> pl.DataFrame:
    """One candidate pair per row, with its own score/margin columns (see the module docstring)."""
    variant = mapping.extra["variant"]
    return {"shp": _shp, "pku": _pku, "helpsteer2": _helpsteer2, "arena": _arena}[variant](
        df, mapping, schema
    )


def _user(content: pl.Expr) -> pl.Expr:
    return pl.concat_list([message("user", content)])


def _finish(out: pl.DataFrame) -> pl.DataFrame:
    """Guarantee the full normaliser contract (scores as Float64)."""
    for name in ("score_chosen", "score_rejected", "margin"):
        if name not in out.columns:
            out = out.with_columns(pl.lit(None, dtype=pl.Float64).alias(name))
        else:
            out = out.with_columns(pl.col(name).cast(pl.Float64))
    return out


def _shp_nulls(cols: dict) -> pl.Expr:
    a, b = pl.col("human_ref_A"), pl.col("human_ref_B")
    return pl.col("history").is_null() | a.is_null() | b.is_null() | pl.col(cols["label"]).is_null()


def _shp_below(mapping: ColumnMapping) -> pl.Expr:
    min_ratio = mapping.extra.get("shp_min_ratio")
    return (pl.col("margin") < min_ratio).fill_null(False) if min_ratio is not None else pl.lit(False)


def _shp_check(mapping: ColumnMapping) -> None:
    cols = mapping.extra["columns"]
    wants = (
        mapping.extra.get("shp_min_ratio") is not None or mapping.extra.get("max_pairs_per_post") is not None
    )
    if wants and "score_ratio" not in cols:
        raise FormatError(
            "--shp-min-ratio / --max-pairs-per-post need the score_ratio column, which this source lacks",
            "drop those options, or add score_ratio (score of the preferred comment / the other's)",
        )


def shp_over_cap(rows: pl.DataFrame, mapping: ColumnMapping) -> pl.Series:
    """Which rows are beyond ``--max-pairs-per-post`` among the eligible rows (no null value, not below
    ``--shp-min-ratio``) of their post: the largest score_ratio first, source order among equals ("ordinal").
    ``rows``: the split's ``history``, ``human_ref_A/B``, label, ``score_ratio`` (and ``post_id``) columns."""
    cols = mapping.extra["columns"]
    cap = mapping.extra["max_pairs_per_post"]
    frame = rows.with_columns(pl.col("score_ratio").cast(pl.Float64).alias("margin"))
    eligible = ~_shp_nulls(cols) & ~_shp_below(mapping)
    keys = [pl.col("post_id"), eligible] if "post_id" in cols else [eligible]
    rank = (-pl.col("margin")).rank("ordinal").over(keys)
    return frame.select((eligible & (rank > cap).fill_null(False)).alias("over")).to_series()


def _shp_columns(mapping: ColumnMapping) -> list[str]:
    cols = mapping.extra["columns"]
    return ["history", "human_ref_A", "human_ref_B", cols["label"], "score_ratio"] + (
        ["post_id"] if "post_id" in cols else []
    )


def prepare(mapping: ColumnMapping, schema: pa.Schema, read) -> dict:
    """SHP with ``--max-pairs-per-post``: the split's rows beyond the cap (``over_cap``: their row numbers), read
    over the whole split, since a post's pairs may lie in different batches."""
    if mapping.extra.get("variant") != "shp" or mapping.extra.get("max_pairs_per_post") is None:
        return {}
    _shp_check(mapping)
    columns = list(dict.fromkeys(_shp_columns(mapping)))
    frames = []
    for batch in read(columns):
        frame = pl.from_arrow(batch.select(columns), rechunk=False)
        frames.append(frame.to_frame() if isinstance(frame, pl.Series) else frame)
    if not frames:
        return {"over_cap": np.empty(0, dtype=np.int64)}
    over = shp_over_cap(pl.concat(frames, how="vertical_relaxed"), mapping)
    return {"over_cap": np.flatnonzero(over.to_numpy())}


def _shp(df: pl.DataFrame, mapping: ColumnMapping, schema: pa.Schema) -> pl.DataFrame:
    cols = mapping.extra["columns"]
    a_wins = pl.col(cols["label"]) == 1
    a, b = pl.col("human_ref_A"), pl.col("human_ref_B")
    exprs = [
        _user(pl.col("history")).alias("prompt"),
        single_assistant(pl.when(a_wins).then(a).otherwise(b)).alias("chosen"),
        single_assistant(pl.when(a_wins).then(b).otherwise(a)).alias("rejected"),
    ]
    if "score_A" in cols and "score_B" in cols:
        sa, sb = pl.col("score_A").cast(pl.Float64), pl.col("score_B").cast(pl.Float64)
        exprs += [
            pl.when(a_wins).then(sa).otherwise(sb).alias("score_chosen"),
            pl.when(a_wins).then(sb).otherwise(sa).alias("score_rejected"),
        ]
    if "score_ratio" in cols:
        exprs.append(pl.col("score_ratio").cast(pl.Float64).alias("margin"))
    exprs.append(first_reason((_shp_nulls(cols), NULL_VALUE)).alias("invalid"))
    out = df.with_columns(exprs)
    _shp_check(mapping)
    below = _shp_below(mapping)
    if mapping.extra.get("max_pairs_per_post") is not None:
        facts = mapping.facts or {}
        if "over_cap" in facts:  # decided over the whole split (:func:`prepare`)
            start = facts.get("start", 0)
            rows = pl.int_range(start, start + df.height, dtype=pl.Int64, eager=True)
            over = pl.lit(rows.is_in(pl.Series(facts["over_cap"], dtype=pl.Int64).implode()))
        else:
            over = pl.lit(shp_over_cap(df.select(_shp_columns(mapping)), mapping))
    else:
        over = pl.lit(False)
    drop = first_reason((below, BELOW_MIN_RATIO), (over, OVER_MAX_PAIRS_PER_POST))
    return _finish(out.with_columns(drop.alias(NORMALISER_DROP)).drop(*df.columns))


def _pku(df: pl.DataFrame, mapping: ColumnMapping, schema: pa.Schema) -> pl.DataFrame:
    cols = mapping.extra["columns"]
    axis = mapping.extra.get("axis", "better")
    if axis not in AXES:
        raise FormatError(f"unknown --axis {axis!r}", f"use one of: {', '.join(AXES)}")
    better, safer = pl.col(cols["better"]), pl.col(cols["safer"])
    label = safer if axis == "safer" else better
    zero_wins = label == 0
    r0, r1 = pl.col("response_0"), pl.col("response_1")
    disagree = (better != safer).fill_null(False)
    nulls = pl.col("prompt").is_null() | r0.is_null() | r1.is_null() | label.is_null()
    bad_label = ~label.is_in([0, 1])
    drop = first_reason((disagree, AXES_DISAGREE)) if axis == "both" else pl.lit(None, dtype=pl.String)
    return _finish(
        df.select(
            _user(pl.col("prompt")).alias("prompt"),
            single_assistant(pl.when(zero_wins).then(r0).otherwise(r1)).alias("chosen"),
            single_assistant(pl.when(zero_wins).then(r1).otherwise(r0)).alias("rejected"),
            first_reason((nulls, NULL_VALUE), (bad_label, BAD_LABEL)).alias("invalid"),
            drop.alias(NORMALISER_DROP),
            disagree.alias(AXES_DISAGREE_FLAG.flag),
        )
    )


def split_extra_id_prompt(text: str | None) -> list[dict] | None:
    """A HelpSteer2 prompt (``u1<extra_id_1>Assistant\\na1<extra_id_1>User\\nu2``) as messages, or None if malformed."""
    if text is None:
        return None
    system = None
    m = EXTRA_ID_SYSTEM.match(text)
    if m:
        rest = text[m.end() :]
        cut = rest.find("<extra_id_1>")
        system, text = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
        system = system.strip()
        if text.startswith("<extra_id_1>User"):
            text = EXTRA_ID_TURN.sub("", text, count=1)
    parts = EXTRA_ID_TURN.split(text)
    turns = [{"role": "user", "content": parts[0].strip()}]
    for i in range(1, len(parts), 2):
        turns.append({"role": parts[i].lower(), "content": parts[i + 1].strip()})
    if system:
        turns.insert(0, {"role": "system", "content": system})
    return turns


def _helpsteer2(df: pl.DataFrame, mapping: ColumnMapping, schema: pa.Schema) -> pl.DataFrame:
    strength = pl.col(mapping.extra["columns"]["strength"]).cast(pl.Float64)
    prompt = pl.Series(
        "prompt", [split_extra_id_prompt(t) for t in df["prompt"].to_list()], dtype=MESSAGES_DTYPE
    )
    one_wins = (strength <= 0).fill_null(True)  # 0 is a tie: orientation irrelevant (dropped unless kept)
    r1, r2 = pl.col("response_1"), pl.col("response_2")
    nulls = pl.col("prompt").is_null() | r1.is_null() | r2.is_null() | strength.is_null()
    return _finish(
        df.with_columns(prompt).select(
            pl.col("prompt"),
            single_assistant(pl.when(one_wins).then(r1).otherwise(r2)).alias("chosen"),
            single_assistant(pl.when(one_wins).then(r2).otherwise(r1)).alias("rejected"),
            strength.abs().alias("margin"),
            (strength == 0).fill_null(False).alias(TIE_COLUMN),
            first_reason((nulls, NULL_VALUE)).alias("invalid"),
        )
    )


def _arena(df: pl.DataFrame, mapping: ColumnMapping, schema: pa.Schema) -> pl.DataFrame:
    winner = pl.col(mapping.extra["columns"]["winner"]).str.strip_chars()
    tie = winner.is_in(list(ARENA_TIES))
    b_wins = winner == "model_b"
    a, b = messages_expr("conversation_a", schema), messages_expr("conversation_b", schema)
    out = df.select(
        pl.when(b_wins).then(b).otherwise(a).alias("_c"),
        pl.when(b_wins).then(a).otherwise(b).alias("_r"),
        tie.fill_null(False).alias(TIE_COLUMN),
        (winner.is_null() | ~(tie | winner.is_in(["model_a", "model_b"]))).alias("_bad"),
        (pl.col("conversation_a").is_null() | pl.col("conversation_b").is_null()).alias("_null"),
    )
    labels = first_reason((pl.col("_null"), NULL_VALUE), (pl.col("_bad"), BAD_LABEL))
    return _finish(
        split_conversations(out).select(
            "prompt", "chosen", "rejected", TIE_COLUMN, pl.coalesce(labels, pl.col("invalid")).alias("invalid")
        )
    )


FAMILY = Family(
    NAME,
    LETTER,
    DESCRIPTION,
    order=50,
    match=match,
    normalise=normalise,
    options=OPTIONS,
    reasons=REASONS,
    full_frame=True,
    prepare=prepare,
)
