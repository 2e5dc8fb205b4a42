"""The families that read their own scores (``full_frame``): pairwise (two answers + a label), ranked (ranked
lists) and rated (rated completions), through build: orientation, ties, binarisation strategies, caps, and the
accounting identity when one source row gives several pairs or none."""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa
import pytest

from prefkit import build
from prefkit.errors import SelectionError
from prefkit.formats import detect
from prefkit.formats.pairwise import split_extra_id_prompt
from tests import catalog as C


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def assert_identity(counts):
    added = sum(counts.get("added", {}).values())
    assert counts["read"] + added == counts["kept"] + sum(counts["dropped"].values()) + sum(
        counts["invalid"].values()
    ), counts


def pairs_of(result, split="train"):
    return [
        (r["chosen"][0]["content"], r["rejected"][0]["content"], r["margin"], r["source_index"])
        for r in result.splits[split].to_pylist()
    ]


# ---------------------------------------------------------------------------------------------- pairwise


def test_detects_each_e_variant_from_catalog_rows():
    for make, variant in [(C.shp, "shp"), (C.pku, "pku"), (C.helpsteer2, "helpsteer2"), (C.arena, "arena")]:
        mapping = detect(pa.Table.from_pylist([make(0)]))
        assert (mapping.family, mapping.extra["variant"]) == ("pairwise", variant)


def test_shp_labels_orient_and_score_ratio_is_the_margin(tmp_path):
    rows = [C.shp(0, a_wins=True, score_a=30, score_b=4), C.shp(1, a_wins=False, score_a=12, score_b=3)]
    res = build(write_jsonl(tmp_path / "shp.jsonl", rows))
    out = res.splits["train"].to_pylist()
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in out] == [
        ("comment A 0", "comment B 0"),
        ("comment B 1", "comment A 1"),  # labels == 0: B is preferred
    ]
    assert [(r["score_chosen"], r["score_rejected"], r["margin"]) for r in out] == [
        (30, 4, 7.5),
        (12, 3, 4.0),
    ]
    assert out[0]["prompt"] == C.msgs(("user", "Title / body of the Reddit post himc90"))


def test_shp_min_ratio_and_max_pairs_per_post(tmp_path):
    rows = [
        C.shp(0, score_a=10, score_b=5),  # ratio 2
        C.shp(1, score_a=30, score_b=3),  # ratio 10
        C.shp(2, score_a=15, score_b=10),  # ratio 1.5 -> below min ratio
        C.shp(3, score_a=20, score_b=5),  # ratio 4
        C.shp(4, post="other", score_a=9, score_b=3),
    ]
    res = build(write_jsonl(tmp_path / "shp.jsonl", rows), shp_min_ratio=2, max_pairs_per_post=2)
    c = res.manifest["splits"]["train"]
    assert c["dropped"] == {"below_min_ratio": 1, "over_max_pairs_per_post": 1}
    # the two largest ratios of post himc90, plus the other post; source order kept
    assert [p[3] for p in pairs_of(res)] == [1, 3, 4]
    assert_identity(c)


def test_pku_axes_and_disagreement_count(tmp_path):
    rows = [C.pku(0, better=0, safer=1), C.pku(1, 1, 1), C.pku(2, 0, 0), C.pku(3, 1, 0)]
    path = write_jsonl(tmp_path / "pku.jsonl", rows)
    better = build(path)
    assert [p[0] for p in pairs_of(better)] == ["resp0 0", "resp1 1", "resp0 2", "resp1 3"]
    assert better.manifest["splits"]["train"]["flags"] == {"axes_disagree": 2}
    safer = build(path, axis="safer")
    assert [p[0] for p in pairs_of(safer)] == ["resp1 0", "resp1 1", "resp0 2", "resp0 3"]
    both = build(path, axis="both")
    assert both.manifest["splits"]["train"]["dropped"] == {"axes_disagree": 2}
    assert [p[3] for p in pairs_of(both)] == [1, 2]


def test_helpsteer2_strength_sign_size_tie_and_multi_turn_prompt(tmp_path):
    multi = "first question<extra_id_1>Assistant\nfirst answer<extra_id_1>User\nsecond question"
    rows = [C.helpsteer2(0, -2), C.helpsteer2(1, 3, prompt=multi), C.helpsteer2(2, 0)]
    res = build(write_jsonl(tmp_path / "hs2.jsonl", rows))
    assert pairs_of(res) == [
        ("C# is 0", "C# (C-sharp) is 0", 2.0, 0),
        ("C# (C-sharp) is 1", "C# is 1", 3.0, 1),
    ]
    assert res.splits["train"].column("prompt").to_pylist()[1] == C.msgs(
        ("user", "first question"), ("assistant", "first answer"), ("user", "second question")
    )
    assert res.manifest["splits"]["train"]["dropped"] == {"tie": 1}
    assert (
        build(write_jsonl(tmp_path / "h.jsonl", rows), keep_ties=True).manifest["splits"]["train"]["kept"]
        == 3
    )


def test_extra_id_prompt_with_system_turn():
    text = "<extra_id_0>System\nBe terse.\n<extra_id_1>User\nhi<extra_id_1>Assistant\nyo<extra_id_1>User\nbye"
    assert split_extra_id_prompt(text) == C.msgs(
        ("system", "Be terse."), ("user", "hi"), ("assistant", "yo"), ("user", "bye")
    )


def test_arena_winner_and_both_tie_values(tmp_path):
    rows = [C.arena(0, "model_b"), C.arena(1, "model_a"), C.arena(2, "tie"), C.arena(3, "tie (bothbad)")]
    bad = C.arena(4, "model_a")
    bad["conversation_b"] = C.msgs(("user", "other"), ("assistant", "x"), ("user", "q"), ("assistant", "y"))
    res = build(write_jsonl(tmp_path / "arena.jsonl", [*rows, bad]))
    assert [p[:2] for p in pairs_of(res)] == [("B says 0", "A says 0"), ("A says 1", "B says 1")]
    c = res.manifest["splits"]["train"]
    assert c["dropped"] == {"tie": 2} and c["invalid"] == {"histories_differ": 1}
    assert res.manifest["sources"][0]["splits"]["train"]["format"]["extra"]["group"] == "question_id"


# ---------------------------------------------------------------------------------------------- ranked, rated


def nectar_rows():
    return [
        C.nectar(0, ranks=(3.0, 1.0, 2.0, 4.0)),
        C.nectar(1, ranks=(1.0, 1.0)),  # all equal: no pair -> tie
        C.nectar(2, ranks=(1.0,)),  # one answer: invalid
        C.nectar(3, ranks=(2.0, 1.0, 1.0, 3.0, 3.0)),  # equal best: first of them
    ]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (
            "best-vs-worst",
            [
                ("answer 0 rank 1.0", "answer 0 rank 4.0", 3.0),
                ("answer 3 rank 1.0", "answer 3 rank 3.0", 2.0),
            ],
        ),
        (
            "best-vs-next",
            [
                ("answer 0 rank 1.0", "answer 0 rank 2.0", 1.0),
                ("answer 3 rank 1.0", "answer 3 rank 2.0", 1.0),
            ],
        ),
    ],
)
def test_nectar_deterministic_strategies(tmp_path, strategy, expected):
    res = build(write_jsonl(tmp_path / "n.jsonl", nectar_rows()), pairs=strategy)
    assert [p[:3] for p in pairs_of(res)] == expected
    c = res.manifest["splits"]["train"]
    assert (c["read"], c["dropped"], c["invalid"]) == (4, {"tie": 1}, {"too_few_answers": 1})
    assert_identity(c)
    assert res.manifest["sources"][0]["splits"]["train"]["format"]["extra"]["pairs"] == strategy


def test_nectar_all_pairs_gap_cap_and_extra_pairs_in_the_identity(tmp_path):
    path = write_jsonl(tmp_path / "n.jsonl", nectar_rows())
    res = build(path, pairs="all-pairs")
    got = pairs_of(res)
    assert len([p for p in got if p[3] == 0]) == 6  # 4 distinct ranks: C(4, 2)
    assert len([p for p in got if p[3] == 3]) == 8  # ranks 2,1,1,3,3: pairs with different ranks
    assert all(p[2] > 0 for p in got)  # equal ranks never pair
    c = res.manifest["splits"]["train"]
    assert c["added"] == {"extra_pairs": 12} and c["kept"] == 14
    assert_identity(c)
    capped = build(path, pairs="all-pairs", min_gap=2, max_pairs_per_prompt=2)
    assert [p[2] for p in pairs_of(capped)] == [3.0, 2.0, 2.0, 2.0]  # largest gaps first, at most 2 per row
    assert_identity(capped.manifest["splits"]["train"])
    too_far = build(path, pairs="best-vs-worst", min_gap=5)
    assert too_far.manifest["splits"]["train"]["dropped"] == {"below_min_gap": 2, "tie": 1}


def test_best_vs_random_is_seeded_and_strictly_lower(tmp_path):
    rows = [C.nectar(i) for i in range(30)]
    path = write_jsonl(tmp_path / "n.jsonl", rows)
    a = pairs_of(build(path, pairs="best-vs-random", seed=1))
    b = pairs_of(build(path, pairs="best-vs-random", seed=1))
    c = pairs_of(build(path, pairs="best-vs-random", seed=2))
    assert a == b and a != c
    assert all(chosen.endswith("rank 1.0") and margin > 0 for chosen, _, margin, _ in a)
    assert len({rejected.split()[-1] for _, rejected, _, _ in a}) > 2  # really random among the lower ones


def test_ultrafeedback_raw_overall_and_aspects_with_na(tmp_path):
    path = write_jsonl(tmp_path / "uf.jsonl", [C.ultrafeedback_raw(0)])
    overall = build(path, pairs="best-vs-worst")
    assert pairs_of(overall) == [("great 0", "poor 0", 5.5, 0)]
    assert overall.splits["train"].column("score_chosen").to_pylist() == [8.5]
    # aspects: mean of the Rating strings, "N/A" ignored: great 4.75, poor (2+2+1)/3, ok 3.25, fine 3.5
    aspects = build(path, pairs="best-vs-next", rating="aspects")
    (pair,) = pairs_of(aspects)
    assert pair[:2] == ("great 0", "fine 0") and pair[2] == pytest.approx(4.75 - 3.5)
    # overall: ok and fine tie at 6.0: never a pair with each other
    every = pairs_of(build(path, pairs="all-pairs"))
    assert ("ok 0", "fine 0") not in [p[:2] for p in every] and len(every) == 5


def test_generations_with_parallel_ratings(tmp_path):
    rows = [{"prompt": "p", "generations": ["a", "b", "c"], "ratings": [2.0, 5.0, 3.0]}]
    res = build(write_jsonl(tmp_path / "g.jsonl", rows))
    assert pairs_of(res) == [("b", "a", 3.0, 0)]
    assert res.manifest["sources"][0]["splits"]["train"]["format"]["family"] == "rated"


def test_rejects_of_binarised_rows_point_at_the_source_row(tmp_path):
    res = build(write_jsonl(tmp_path / "n.jsonl", nectar_rows()), tmp_path / "out")
    rejects = pl.read_parquet(tmp_path / "out" / "rejects" / "train.parquet")
    assert sorted(rejects.select("source_index", "reason").rows()) == [(1, "tie"), (2, "too_few_answers")]
    assert rejects.filter(pl.col("source_index") == 1)["prompt"][0].startswith("\n\nHuman: How do I 1?")
    assert res.manifest["totals"]["read"] == 4


def test_family_option_that_fits_no_source_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "flat.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}])
    with pytest.raises(SelectionError, match="apply to none of the sources") as err:
        build(path, pairs="all-pairs", axis="safer")
    assert "axis=..., pairs=... apply to none of the sources" in err.value.message
    assert "--axis, --pairs apply to none of the sources" in err.value.text("cli")[0]


def test_cli_detect_and_summary_show_labels_and_added_pairs(tmp_path):
    from click.testing import CliRunner

    from prefkit.cli import cli

    runner = CliRunner()
    shp = write_jsonl(tmp_path / "shp.jsonl", [C.shp(0)])
    out = runner.invoke(cli, ["detect", str(shp)])
    assert out.exit_code == 0 and "family E" in out.output and "label         " in out.output
    assert "labels" not in out.output.split("unused columns:")[-1]
    nectar = write_jsonl(tmp_path / "n.jsonl", [C.nectar(0, ranks=(1.0, 2.0, 3.0))])
    res = runner.invoke(cli, ["build", str(nectar), "--pairs", "all-pairs", "--dry-run"])
    assert res.exit_code == 0 and "extra_pairs" in res.output
