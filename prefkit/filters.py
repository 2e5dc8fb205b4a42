"""Validation and filters: every row ends kept, dropped (with the filter's reason) or invalid (with the error).

Reasons are data: the glossaries below are what the summary, the manifest and the card explain. A row gets the
first reason that applies, so each row is counted exactly once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import polars as pl

from prefkit.errors import SelectionError
from prefkit.formats.base import first_reason

#: why a row could not be turned into a valid record
INVALID_REASONS = {
    "null_value": "a prompt/chosen/rejected value is null",
    "empty_conversation": "a conversation has no messages",
    "answer_not_assistant": "a conversation does not end with an assistant turn",
    "missing_prompt": "a conversation has no turns before the answer",
    "histories_differ": "chosen and rejected disagree before the final answer",
    "answer_not_single_assistant": "chosen/rejected is not exactly one assistant message",
    "bad_transcript": "not a well-formed Human/Assistant transcript",
    "empty_text": "a message is empty or blank",
    "bad_prompt_roles": "prompt is not [system?] user (assistant user)* ending with a user turn",
    "bad_label": "the label naming the preferred answer has an unknown value",
    "too_few_answers": "fewer than two answers with text and a score to make a pair from",
}

#: why a valid row was filtered out
DROP_REASONS = {
    "identical": "chosen == rejected after whitespace normalisation",
    "template_residue": "chat-template tokens or transcript markers inside the text (--keep-residue keeps them)",
    "tie": "the pair is a tie (margin 0; --keep-ties keeps them)",
    "below_min_margin": "margin below --min-margin",
    "not_in_top": "not among the --top N rows by margin",
    "over_max_rows": "beyond --max-rows",
    "below_min_ratio": "SHP score_ratio below --shp-min-ratio",
    "over_max_pairs_per_post": "beyond --max-pairs-per-post pairs of one post (largest score_ratio kept)",
    "axes_disagree": "PKU-SafeRLHF better and safer labels disagree (--axis both keeps only agreeing rows)",
    "below_min_gap": "the answers' scores differ, but by less than --min-gap",
    "duplicate": "same normalised prompt, chosen and rejected as an earlier row (--dedup)",
    "not_best_for_prompt": "another pair of the same prompt has a higher margin (--one-pair-per-prompt)",
    "not_sampled": "not drawn by the source's mixing weight (SOURCE:WEIGHT)",
    # token filters (prefkit.token_filters, with --tokenizer)
    "over_max_length": "prompt + answer longer than --max-length tokens for the chosen or the rejected answer",
    "over_max_prompt_length": "prompt longer than --max-prompt-length tokens",
    "answer_too_short": "the chosen or the rejected answer has fewer than --min-answer-tokens tokens",
}

#: drops that are a choice among good rows, not a judgement on a row: their rejects entry holds the reason,
#: margin and source_index but not the text (unless --full-rejects); the pinned source revision has it.
SELECTION_REASONS = frozenset({"not_in_top", "over_max_rows", "not_sampled"})

#: leftovers of chat templates / transcripts that should not be inside normalised message content (literal
#: substrings, matched with one Aho-Corasick pass), plus content that starts with a transcript "Human:" marker
TEMPLATE_RESIDUE = (
    "<|im_start|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|endoftext|>",
    "[INST]",
    "[/INST]",
    "<extra_id_",
    "<start_of_turn>",
    "<end_of_turn>",
    "\n\nHuman:",
    "\n\nAssistant:",
)
PROMPT_ROLES = r"^(system,)?user(,assistant,user)*$"


@dataclass(frozen=True)
class FilterOptions:
    """What `build` keeps. Defaults: drop ties and template residue, keep everything else, in source order."""

    keep_ties: bool = False
    keep_residue: bool = False
    min_margin: float | None = None
    top: int | None = None
    max_rows: int | None = None
    seed: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _any_content(column: str, predicate) -> pl.Expr:
    return pl.col(column).list.eval(predicate(pl.element().struct.field("content"))).list.any()


def _blank(content: pl.Expr) -> pl.Expr:
    return content.is_null() | (content.str.strip_chars() == "")


def _residue(content: pl.Expr) -> pl.Expr:
    return content.str.contains_any(list(TEMPLATE_RESIDUE)) | content.str.strip_chars_start().str.starts_with(
        "Human:"
    )


def identical_answers(df: pl.DataFrame) -> pl.Series:
    """chosen == rejected after whitespace normalisation.

    Squashing whitespace is a regex pass over every answer, so it only runs on the rows that can be equal:
    those whose answers start and end with the same non-blank character.
    """
    answer = lambda col: pl.col(col).list.first().struct.field("content").str.strip_chars()  # noqa: E731
    maybe = df.select(
        (answer("chosen").str.head(1) == answer("rejected").str.head(1))
        & (answer("chosen").str.tail(1) == answer("rejected").str.tail(1))
    ).to_series()
    squash = lambda col: answer(col).str.replace_all(r"\s+", " ")  # noqa: E731
    rows = df.select("chosen", "rejected").with_row_index("_i").filter(maybe.fill_null(False))
    same = rows.filter(rows.select(squash("chosen") == squash("rejected")).to_series().fill_null(False))["_i"]
    return pl.Series("_identical", [False] * df.height).scatter(same, True)


def validation_reason() -> pl.Expr:
    """Checks every normalised row must pass, after the normaliser's own ``invalid`` reason."""
    roles = pl.col("prompt").list.eval(pl.element().struct.field("role")).list.join(",")
    blank = _any_content("prompt", _blank) | _any_content("chosen", _blank) | _any_content("rejected", _blank)
    return pl.coalesce(
        pl.col("invalid"),
        first_reason(
            (blank, "empty_text"),
            (~roles.str.contains(PROMPT_ROLES), "bad_prompt_roles"),
        ),
    )


def drop_reason(options: FilterOptions, has_tie_column: bool = False) -> pl.Expr:
    """The row-local filters (identical, residue, ties, min margin)."""
    residue = (
        _any_content("prompt", _residue)
        | _any_content("chosen", _residue)
        | _any_content("rejected", _residue)
    )
    tie = pl.col("margin") == 0
    if has_tie_column:
        tie = tie.fill_null(False) | pl.col("tie").fill_null(False)
    conditions = [(pl.col("_identical"), "identical")]
    if not options.keep_residue:
        conditions.append((residue, "template_residue"))
    if not options.keep_ties:
        conditions.append((tie, "tie"))
    if options.min_margin is not None:
        conditions.append((pl.col("margin") < options.min_margin, "below_min_margin"))
    return first_reason(*conditions)


def _apply_extra_drop(df: pl.DataFrame, extra_drop) -> pl.DataFrame:
    rows = df.with_row_index("_x").filter(pl.col("invalid").is_null() & pl.col("_drop").is_null())
    if not rows.height:
        return df
    reasons = pl.Series("_extra", [None] * df.height, dtype=pl.String).scatter(
        rows["_x"].cast(pl.Int64), pl.Series(extra_drop(rows), dtype=pl.String)
    )
    return df.with_columns(pl.coalesce(pl.col("_drop"), reasons).alias("_drop"))


def classify(df: pl.DataFrame, options: FilterOptions, extra_drop=None) -> pl.DataFrame:
    """Add ``stage`` (kept / dropped / invalid) and ``reason`` to a normalised frame; rows stay in order.

    ``extra_drop(rows) -> list[str | None]`` (the token filters) decides more drops on the rows that pass the
    row-local filters, before ``--top`` / ``--max-rows`` select among them.
    """
    # a normaliser may decide a drop from labels (``normaliser_drop``: SHP caps, equal ranks …): such rows hold no
    # pair to validate, and the decision is final (not undone by --keep-ties)
    pre = pl.col("normaliser_drop") if "normaliser_drop" in df.columns else pl.lit(None, dtype=pl.String)
    df = df.with_columns(
        pl.when(pre.is_null()).then(validation_reason()).otherwise(pl.col("invalid")).alias("invalid"),
        identical_answers(df),
    )
    df = df.with_columns(
        pl.when(pl.col("invalid").is_null())
        .then(pl.coalesce(pre, drop_reason(options, "tie" in df.columns)))
        .alias("_drop")
    )
    if extra_drop is not None:
        df = _apply_extra_drop(df, extra_drop)
    candidate = pl.col("invalid").is_null() & pl.col("_drop").is_null()
    needs_margin = [
        flag
        for flag, on in (("--top", options.top is not None), ("--min-margin", options.min_margin is not None))
        if on
    ]
    if needs_margin:
        missing = df.select((candidate & pl.col("margin").is_null()).sum()).item()
        valid = df.select(pl.col("invalid").is_null().sum()).item()
        if missing:
            raise SelectionError(
                f"{' and '.join(needs_margin)} need a margin on every row, but {missing} of {valid} valid rows have none",
                "name the margin column with --margin-col (or the score columns with --score-cols CHOSEN,REJECTED); "
                "`prefkit detect SOURCE` shows which score columns were found",
            )
    if options.top is not None:
        # stable: equal margins keep source order
        order = df.select(
            pl.arg_sort_by(pl.col("margin").fill_null(float("-inf")), descending=True, maintain_order=True)
        )
        rank = pl.Series("_rank", range(df.height), dtype=pl.Int64).scatter(
            order.to_series(), range(df.height)
        )
        df = df.with_columns(rank)
        top_rows = df.filter(candidate).sort("_rank").head(options.top).select("_rank")
        df = df.with_columns(
            pl.when(candidate & ~pl.col("_rank").is_in(top_rows.to_series().implode()))
            .then(pl.lit("not_in_top"))
            .otherwise(pl.col("_drop"))
            .alias("_drop")
        )
    if options.max_rows is not None:
        rows = df.with_row_index("_i").filter(candidate)
        order = (rows.sort("_rank") if options.top is not None else rows)["_i"]
        if order.len() > options.max_rows:
            keep = (
                order.sample(options.max_rows, seed=options.seed)
                if options.seed is not None
                else order.head(options.max_rows)
            )
            index = pl.int_range(pl.len(), dtype=order.dtype)
            over = index.is_in(order.implode()) & ~index.is_in(keep.implode())
            df = df.with_columns(
                pl.when(over).then(pl.lit("over_max_rows")).otherwise(pl.col("_drop")).alias("_drop")
            )
    stage = (
        pl.when(pl.col("invalid").is_not_null())
        .then(pl.lit("invalid"))
        .when(pl.col("_drop").is_not_null())
        .then(pl.lit("dropped"))
        .otherwise(pl.lit("kept"))
    )
    return df.with_columns(stage.alias("stage"), pl.coalesce("invalid", "_drop").alias("reason")).drop(
        "_drop", "invalid"
    )
