"""Decontamination (prefkit.select.decontaminate): planted eval items are caught, common phrasing is not.

Eval items and prompts are made from a fixed vocabulary with a seeded RNG, so unrelated texts share no
13-word run; each planted contamination embeds an item (changed in case, punctuation and whitespace) in a
longer prompt, and each clean row is built to share as much as the rule allows without matching.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest

from prefkit.errors import SelectionError
from prefkit.select.decontaminate import (
    build_index,
    contamination_items,
    decontaminate_reasons,
    find_contamination,
    item_texts,
)
from prefkit.select.evalsets import evalset_presets, load_evalset

VOCAB = (
    "time person year way day thing man world life hand part child eye woman place work week case point "
    "government company number group problem fact be have do say get make go know take see come think look "
    "want give use find tell ask seem feel try leave call good new first last long great little own other "
    "old "
    "right big high different small large next early young important few public bad same able river garden "
    "window kitchen mountain engine science music history doctor letter market station forest paper summer"
).split()
PAD = "lorem ipsum dolor sit amet"
BOILERPLATE = (
    "Your entire response should be in English and in all lowercase letters with no capitals at all."
)


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def garble(text: str) -> str:
    """Same words, different case, punctuation and whitespace."""
    out = []
    for i, w in enumerate(text.split()):
        out.append(w.upper() if i % 3 == 0 else w.capitalize() if i % 3 == 1 else w)
        out.append(",  " if i % 4 == 0 else "\n" if i % 7 == 0 else " ")
    return "".join(out).strip() + "?!"


@pytest.fixture(scope="module")
def evalset():
    rng = random.Random(11)
    long_items = [words(rng, rng.randint(15, 40)).capitalize() + "." for _ in range(20)]
    mid_items = [words(rng, 8) + "?", words(rng, 10) + "!", words(rng, 12) + "."]
    short_items = ["Tell me a joke.", "What is 2 + 2?"]
    templated = [f"{words(rng, 6)}. {BOILERPLATE}" for _ in range(12)]  # boilerplate in 12 items
    multi = [[words(rng, 20), "Now make it rhyme."]]
    return long_items + mid_items + short_items + templated + multi


def test_planted_contamination_and_clean_rows(evalset):
    rng = random.Random(3)
    index = build_index(evalset)
    long0, long5, mid8, mid12 = evalset[0], evalset[5], evalset[20], evalset[22]
    item_words = long5.rstrip(".").split()
    texts = {
        "embedded": f"{words(rng, 30)} {garble(long0)} {words(rng, 20)}",
        "13-word slice": f"{PAD} {' '.join(item_words[:13])} {PAD}",
        "mid whole": f"Quick question: {garble(mid8)} Thanks",
        "mid12 whole": f"{garble(mid12)}",
        "short exact": "  TELL me, a joke!! ",
        "2nd turn": ["Hello there, how are you today my friend?", garble(evalset[-1][0])],
        "multi-turn short": ["something", "now make it RHYME"],
        # clean rows
        "12-word slice": f"{PAD} {' '.join(item_words[:12])} {PAD}",  # padding is outside the vocabulary
        "mid partial": " ".join(mid8.rstrip("?").split()[:7]),
        "short inside": "Tell me a joke about a river and a doctor.",
        "boilerplate": f"Write a poem about summer. {BOILERPLATE}",
        "unrelated": words(rng, 200),
        "empty": "",
        "none": None,
    }
    found = dict(zip(texts, find_contamination(list(texts.values()), index), strict=True))
    assert found == {
        "embedded": ("eval", 0),
        "13-word slice": ("eval", 5),
        "mid whole": ("eval", 20),
        "mid12 whole": ("eval", 22),
        "short exact": ("eval", 23),
        "2nd turn": ("eval", 37),
        "multi-turn short": ("eval", 37),
        "12-word slice": None,
        "mid partial": None,
        "short inside": None,
        "boilerplate": None,
        "unrelated": None,
        "empty": None,
        "none": None,
    }


def test_first_set_and_lowest_item_win():
    a = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron"
    b = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    index = build_index(
        {"first": ["unrelated words only here please and thank you kindly sir", b], "second": [a, b]}
    )
    assert find_contamination([f"{a} {b}", a, b], index) == [("first", 1), ("second", 0), ("first", 1)]
    assert contamination_items([a, "nothing"], index).tolist() == [2, -1]
    assert index.n_items == 4 and index.locate(3) == ("second", 1)


def test_seed_and_parameters():
    item = " ".join(f"w{i}" for i in range(20))
    text = "prefix " + " ".join(f"w{i}" for i in range(3, 16)) + " suffix"  # 13 of its words
    for seed in (0, 5):
        assert find_contamination([text], build_index([item], seed=seed)) == [("eval", 0)]
    assert find_contamination([text], build_index([item], n=14)) == [None]
    assert find_contamination(
        ["w0 w1 w2 w3 w4 w5 w6"], build_index(["w0 w1 w2 w3 w4 w5 w6"], min_words=5)
    ) == [("eval", 0)]
    for bad in ({"n": 0}, {"min_words": 0}, {"min_words": 14}, {"boilerplate_items": 0}, {"seed": -2}):
        got = ", ".join(f"{k}={v}" for k, v in bad.items())
        with pytest.raises(SelectionError, match=rf"decontamination needs n >= 1, .*\(got .*{got}"):
            build_index([item], **bad)


def test_boilerplate_cutoff_is_a_parameter(evalset):
    text = f"Write a poem about summer. {BOILERPLATE}"
    assert find_contamination([text], build_index(evalset)) == [None]
    assert find_contamination([text], build_index(evalset, boilerplate_items=20)) == [("eval", 25)]


def test_templated_items_are_matched_whole(evalset):
    # items 25-36: 6 own words + the 17-word boilerplate: every 13-gram touches boilerplate, so the whole item
    # must appear; the boilerplate with other words, or the item's own words alone, are not enough
    index = build_index(evalset)
    item = evalset[30]
    own = item.split(".")[0]
    texts = [f"Please: {garble(item)} thanks", f"{own}. {BOILERPLATE.replace('capitals', 'capital')}", own]
    assert find_contamination(texts, index) == [("eval", 30), None, None]


def msgs(*pairs: tuple[str, str]) -> list[dict]:
    return [{"role": r, "content": c} for r, c in pairs]


def test_reasons_frame(evalset):
    rng = random.Random(5)
    item, answer_item = evalset[1], evalset[2]
    message = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
    rows = [
        (msgs(("user", f"Hi! {garble(item)}")), "kept"),  # 0 contaminated
        (msgs(("user", words(rng, 40))), "kept"),  # 1 clean
        (msgs(("system", item), ("user", words(rng, 20))), "kept"),  # 2 system turns are not checked
        (msgs(("user", item)), "dropped"),  # 3 not kept: not checked
        (msgs(("user", "hello"), ("assistant", "hi"), ("user", garble(item))), "kept"),  # 4 later user turn
        (msgs(("user", words(rng, 30))), "kept"),  # 5 eval item in the chosen answer only
    ]
    chosen = [msgs(("assistant", answer_item if i == 5 else words(rng, 30))) for i in range(len(rows))]
    df = pl.DataFrame(
        {
            "prompt": [r[0] for r in rows],
            "chosen": chosen,
            "rejected": [msgs(("assistant", words(rng, 30))) for _ in rows],
            "stage": [r[1] for r in rows],
        },
        schema={"prompt": message, "chosen": message, "rejected": message, "stage": pl.String},
    )
    index = build_index({"mt-bench": ["x y z"], "mine": evalset})
    out = decontaminate_reasons(df, index)
    assert out.schema == pl.Schema(
        {"_row": pl.Int64, "reason": pl.String, "eval_set": pl.String, "eval_index": pl.Int64}
    )
    assert out.rows() == [(0, "contaminated", "mine", 1), (4, "contaminated", "mine", 1)]
    with_answers = decontaminate_reasons(df, index, answers=True)
    assert with_answers["_row"].to_list() == [0, 4, 5] and with_answers["eval_index"].to_list() == [1, 1, 2]
    assert decontaminate_reasons(df.head(0), index).height == 0


def test_item_texts():
    assert item_texts("a") == ["a"]
    assert item_texts(["a", "", None, ["b"]]) == ["a", "b"]
    assert item_texts([{"content": "a"}, {"content": None}, {"role": "user"}]) == ["a"]
    assert item_texts(None) == [] and item_texts("") == []


REQUIRED = {
    "mt-bench",
    "alpacaeval",
    "arena-hard",
    "ifeval",
    "truthfulqa",
    "gsm8k",
    "math",
    "humaneval",
    "mmlu",
}


def test_presets_file():
    presets = evalset_presets()
    assert presets.keys() >= REQUIRED
    for name, spec in presets.items():
        assert isinstance(spec["hub_id"], str) and spec["hub_id"].count("/") == 1, name
        assert spec["config"] is None or isinstance(spec["config"], str | list), name
        assert isinstance(spec["split"], str) and spec["split"], name
        assert spec["data_files"] is None or isinstance(spec["data_files"], str), name
        assert spec["columns"] and all(isinstance(c, str) for c in spec["columns"]), name
        assert isinstance(spec["items"], int) and spec["items"] > 0, name
        for key in ("licence", "notes", "source"):
            assert isinstance(spec[key], str) and spec[key], (name, key)
    raw = json.loads((Path(__file__).resolve().parents[2] / "prefkit" / "select" / "evalsets.json").read_text())
    assert set(raw) - {"$comment"} == set(presets)
    with pytest.raises(SelectionError, match="unknown eval set 'no-such-benchmark'"):
        load_evalset("no-such-benchmark")


def test_load_evalset_from_the_hub(hub):
    repo = hub.unique_id("me/evalset")
    hub.add_datasetdict(
        repo, {"test": [{"q": "first question", "turns": [{"content": "t1"}]}]}, config_name="a"
    )
    hub.add_datasetdict(
        repo, {"test": [{"q": "second", "turns": [{"content": "t2"}, {"content": "t3"}]}]}, config_name="b"
    )
    spec = {
        "hub_id": repo,
        "config": ["a", "b"],
        "split": "test",
        "data_files": None,
        "columns": ["q", "turns"],
    }
    assert load_evalset(spec) == [["first question", "t1"], ["second", "t2", "t3"]]
    scripted = hub.unique_id("me/scripted")
    hub.add_json_files(scripted, {"items.json": [{"instruction": "one"}, {"instruction": "two"}]})
    hub.add_commit(scripted, {scripted.split("/")[1] + ".py": "raise SystemExit('scripts are not run')\n"})
    spec = {
        "hub_id": scripted,
        "config": None,
        "split": "train",
        "data_files": "items.json",
        "columns": ["instruction"],
    }
    assert load_evalset(spec) == [["one"], ["two"]]
