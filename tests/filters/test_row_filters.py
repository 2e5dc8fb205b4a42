"""Each row filter of the registry (prefkit/filters/registry.py) on its own: the rows it drops, the option that
turns it on or off, its reason; and the registry's promises (one declaration per filter, classify iterates it)."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest

from prefkit.accounting import glossary
from prefkit.filters import classify, registry
from prefkit.formats import detect, normalise
from prefkit.frame import DETAIL, REASON, STAGE, Stage
from prefkit.options import FilterOptions


def frame(rows: list[dict]) -> pl.DataFrame:
    """Normalised rows of flat ``prompt``/``chosen``/``rejected`` strings (and any score columns)."""
    table = pa.Table.from_pylist(rows)
    return normalise(table, detect(table))


def row(chosen: str = "Paris.", rejected: str = "Rome.", **scores) -> dict:
    return {"prompt": "Capital of France?", "chosen": chosen, "rejected": rejected, **scores}


def outcome(rows: list[dict], **options) -> list[tuple[str, str | None]]:
    df = classify(frame(rows), FilterOptions(**options))
    return list(zip(df[STAGE].to_list(), df[REASON].to_list(), strict=True))


KEPT = (Stage.KEPT, None)


def test_identical_answers_are_dropped_always():
    rows = [row(), row("Same  answer.", "Same answer."), row("Same answer.", "same answer.")]
    assert outcome(rows) == [KEPT, (Stage.DROPPED, "identical"), KEPT]
    assert outcome(rows, keep_ties=True, keep_residue=True) == outcome(rows)


def test_template_residue_is_dropped_with_its_marker_unless_kept():
    rows = [row(), row("Paris.<|im_end|>")]
    df = classify(frame(rows), FilterOptions())
    assert df[REASON].to_list() == [None, "template_residue"]
    assert df[DETAIL].to_list()[0] is None and "<|im_end|>" in df[DETAIL].to_list()[1]
    kept = classify(frame(rows), FilterOptions(keep_residue=True))
    assert kept[STAGE].to_list() == [Stage.KEPT, Stage.KEPT] and kept[DETAIL].null_count() == 2


def test_ties_are_dropped_unless_kept():
    rows = [row(score_chosen=2.0, score_rejected=1.0), row(score_chosen=1.0, score_rejected=1.0)]
    assert outcome(rows) == [KEPT, (Stage.DROPPED, "tie")]
    assert outcome(rows, keep_ties=True) == [KEPT, KEPT]


def test_negative_margins_are_dropped_only_when_asked():
    rows = [row(score_chosen=2.0, score_rejected=1.0), row(score_chosen=1.0, score_rejected=3.0)]
    assert outcome(rows) == [KEPT, KEPT]
    assert outcome(rows, negative_margin="drop") == [KEPT, (Stage.DROPPED, "negative_margin")]
    flipped = classify(frame(rows), FilterOptions(negative_margin="flip"))
    assert flipped[STAGE].to_list() == [Stage.KEPT, Stage.KEPT]
    assert flipped["flag_flipped"].to_list() == [False, True] and flipped["margin"].to_list() == [1.0, 2.0]


def test_reward_model_disagreement_is_dropped_only_when_asked():
    rows = [row(), row("Lyon.")]
    df = frame(rows).with_columns(pl.Series("rm_margin", [1.5, -0.5]))
    assert classify(df, FilterOptions())[REASON].to_list() == [None, None]
    dropped = classify(df, FilterOptions(drop_disagreeing=True))
    assert dropped[REASON].to_list() == [None, "rm_disagrees"]
    assert dropped["flag_rm_disagrees"].to_list() == [False, True]


def test_min_margin_drops_rows_below_it():
    rows = [row(score_chosen=5.0, score_rejected=1.0), row(score_chosen=2.0, score_rejected=1.5)]
    assert outcome(rows) == [KEPT, KEPT]
    assert outcome(rows, min_margin=1.0) == [KEPT, (Stage.DROPPED, "below_min_margin")]


def test_a_row_gets_the_reason_of_the_first_filter_in_registry_order():
    tied_identical = row("Same.", "Same.", score_chosen=1.0, score_rejected=1.0)
    assert outcome([tied_identical], min_margin=5.0) == [(Stage.DROPPED, "identical")]
    tied_low = row(score_chosen=1.0, score_rejected=1.0)
    assert outcome([tied_low], min_margin=5.0) == [(Stage.DROPPED, "tie")]
    assert outcome([tied_low], min_margin=5.0, keep_ties=True) == [(Stage.DROPPED, "below_min_margin")]


def test_invalid_rows_are_not_filtered():
    rows = [row("", "Rome.", score_chosen=1.0, score_rejected=1.0)]
    assert outcome(rows, min_margin=5.0) == [(Stage.INVALID, "empty_text")]


# ------------------------------------------------------------------------------------------------ the registry


def test_every_filter_is_declared_once_with_a_dropped_reason_in_the_glossary():
    names = [f.reason.name for f in registry.FILTERS]
    assert len(names) == len(set(names))
    declared = glossary()
    for f in registry.FILTERS:
        assert declared[("dropped", f.reason.name)] == f.reason


@pytest.mark.parametrize("row_filter", registry.FILTERS, ids=lambda f: f.reason.name)
def test_every_filter_option_is_a_filter_option_and_turns_it(row_filter):
    if row_filter.option is None:
        assert row_filter.applies(FilterOptions())
        return
    assert row_filter.option in FilterOptions.model_fields
    defaults = FilterOptions()
    changed = {
        "keep_residue": {"keep_residue": True},
        "keep_ties": {"keep_ties": True},
        "negative_margin": {"negative_margin": "drop"},
        "drop_disagreeing": {"drop_disagreeing": True},
        "min_margin": {"min_margin": 1.0},
    }[row_filter.option]
    assert row_filter.applies(defaults) != row_filter.applies(FilterOptions(**changed))


def test_classify_runs_exactly_the_active_filters_and_leaves_no_helper_column():
    df = frame([row()])
    out = classify(df, FilterOptions())
    assert not set(registry.helper_columns()) & set(out.columns)
    assert [f.reason.name for f in registry.active(FilterOptions())] == [
        "identical",
        "template_residue",
        "tie",
    ]


def test_a_filter_needs_a_dropped_reason_and_a_whole_column():
    from prefkit.accounting import Reason

    flag = Reason("rm_flipped", "flags", "x")
    with pytest.raises(ValueError, match="a filter drops rows"):
        registry.RowFilter(flag, None, lambda o: True, lambda o, df: pl.lit(True))
    with pytest.raises(ValueError, match="needs both its name and how to compute it"):
        registry.RowFilter(
            registry.IDENTICAL.reason, None, lambda o: True, lambda o, df: pl.lit(True), column="_x"
        )
