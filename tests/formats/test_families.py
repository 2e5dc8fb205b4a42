"""Each family of the registry (prefkit/formats/) on its own: detection finds it from its columns, its normaliser
gives the canonical columns row for row, a bad row gets the reason the family declares; and what the registry
asks of a family by attribute (``full_frame``, ``system_in_prompt``) instead of by name."""

from __future__ import annotations

import pyarrow as pa
import pytest

from prefkit.accounting import glossary
from prefkit.formats import FAMILIES, ColumnMapping, Mapping, detect, normalise
from prefkit.frame import INVALID_COLUMN, SOURCE_INDEX
from tests import catalog as C


def msgs(*turns):
    return [{"role": r, "content": c} for r, c in turns]


def unpaired_rows():
    return [
        {"prompt": "Q?", "completion": "good", "label": True},
        {"prompt": "Q?", "completion": "bad", "label": False},
        {"prompt": "Alone?", "completion": "no partner", "label": True},
    ]


#: family -> (rows, {row index: the reason that row is invalid or dropped for by the normaliser})
EXAMPLES: dict[str, tuple[list[dict], dict[int, str]]] = {
    "flat": (
        [C.openhermes(0), {**C.openhermes(1), "chosen": None}],
        {1: "null_value"},
    ),
    "implicit-messages": (
        [C.orpo_mix(0), {**C.orpo_mix(1), "chosen": msgs(("user", "only a question"))}],
        {1: "answer_not_assistant"},
    ),
    "explicit-messages": (
        [C.trl_hh(0), {**C.trl_hh(1), "chosen": msgs(("user", "not an answer"))}],
        {1: "answer_not_single_assistant"},
    ),
    "transcript": (
        [C.hh(0), {"chosen": "no markers at all", "rejected": "\n\nHuman: hi\n\nAssistant: hello"}],
        {1: "bad_transcript"},
    ),
    "implicit-text": (
        [
            {"chosen": "The capital of France is Paris.", "rejected": "The capital of France is Rome."},
            {"chosen": "Paris.", "rejected": "Rome."},
        ],
        {1: "missing_prompt"},
    ),
    "pairwise": (
        [C.pku(0), {**C.pku(1), "better_response_id": 7}],
        {1: "bad_label"},
    ),
    "unpaired": (unpaired_rows(), {1: "paired_in_another_row", 2: "no_partner"}),
    "ranked": ([C.nectar(0), C.nectar(1, ranks=(1.0,))], {1: "too_few_answers"}),
    "rated": ([C.ultrafeedback_raw(0)], {}),
    "prompt-only": ([{"prompt": "Write a poem."}, {"prompt": None}], {0: "prompt_only", 1: "null_value"}),
}


def test_every_family_has_an_example_here():
    assert set(EXAMPLES) == set(FAMILIES)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_detection_finds_the_family(name):
    rows, _ = EXAMPLES[name]
    mapping = detect(pa.Table.from_pylist(rows))
    assert isinstance(mapping, ColumnMapping) and mapping.family == name


@pytest.mark.parametrize("name", list(FAMILIES))
def test_normalise_gives_the_canonical_columns_and_the_declared_reasons(name):
    rows, bad = EXAMPLES[name]
    table = pa.Table.from_pylist(rows)
    df = normalise(table, detect(table, format=name))
    assert {
        "prompt",
        "chosen",
        "rejected",
        "score_chosen",
        "score_rejected",
        "margin",
        INVALID_COLUMN,
    } <= set(df.columns)
    reasons = df[INVALID_COLUMN]
    if "normaliser_drop" in df.columns:
        reasons = reasons.fill_null(df["normaliser_drop"])
    by_row: dict[int, str] = {}
    for index, reason in zip(df[SOURCE_INDEX].to_list(), reasons.to_list(), strict=True):
        if reason is not None:
            by_row.setdefault(index, reason)
    assert by_row == bad
    declared = {r.name for r in FAMILIES[name].reasons}
    assert set(bad.values()) <= declared
    assert all(key in glossary() for key in ((r.stage, r.name) for r in FAMILIES[name].reasons))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_forced_family_that_does_not_fit_says_why(name):
    from prefkit.errors import FormatError

    with pytest.raises(FormatError, match="the columns do not fit format"):
        detect(pa.table({"unrelated": [1, 2]}), format=name)


def test_the_system_column_goes_into_the_prompt_once():
    """``system_in_prompt``: the flat family puts its system column into the prompt itself; for the others the
    registry adds it as the prompt's first message."""
    assert [n for n, f in FAMILIES.items() if f.system_in_prompt] == ["flat"]
    flat = pa.Table.from_pylist([{"system": "Be brief.", "question": "Q?", "chosen": "A", "rejected": "B"}])
    explicit = pa.Table.from_pylist([{**C.trl_hh(0), "system": "Be brief."}])
    for table in (flat, explicit):
        prompt = normalise(table, detect(table, columns={"system": "system"}))["prompt"].to_list()[0]
        assert [m["role"] for m in prompt].count("system") == 1 and prompt[0]["content"] == "Be brief."


def test_only_implicit_text_rows_are_plain_text():
    """``plain_text``: what ``--output-format auto`` keeps as TRL's standard text format."""
    assert [n for n, f in FAMILIES.items() if f.plain_text] == ["implicit-text"]


def test_full_frame_families_read_their_own_scores():
    full = sorted(n for n, f in FAMILIES.items() if f.full_frame)
    assert full == ["pairwise", "ranked", "rated", "unpaired"]


def test_the_old_name_of_the_column_mapping_is_the_same_class():
    assert Mapping is ColumnMapping
