"""Leak-free train/test splits: grouped by prompt, by the source's group key and by source row, so no prompt is
ever on both sides; the counts of each side add up on their own."""

from __future__ import annotations

import json

import polars as pl
import pytest

from prefkit import build
from prefkit.errors import SelectionError
from prefkit.select.dedup import prompt_keys
from prefkit.select.splits import components
from tests import catalog as C


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def prompts(table):
    return set(prompt_keys(pl.from_arrow(table)).to_list())


def identity_holds(c):
    added = sum(c.get("added", {}).values())
    return c["read"] + added == c["kept"] + sum(c["dropped"].values()) + sum(c["invalid"].values())


def leaky_rows(n=60):
    """Many pairs per prompt, prompts repeated with different case/whitespace, and a system-prompt variant."""
    rows = []
    for i in range(n):
        p = i % 15
        text = f"Question {p}" if i % 3 else f"  question   {p} "  # same prompt once folded
        rows.append(
            {
                "prompt": text,
                "chosen": f"good {i}",
                "rejected": f"bad {i}",
                "delta_score": 1.0 + i % 4,
                "system": "be brief" if i % 5 == 0 else "",
            }
        )
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_no_prompt_on_both_sides(tmp_path, seed):
    a = write_jsonl(tmp_path / "a.jsonl", leaky_rows())
    b = write_jsonl(tmp_path / "b.jsonl", leaky_rows(30))  # a second source repeating the same prompts
    res = build([str(a), str(b)], tmp_path / "out", test_size=0.2, seed=seed)
    train, test = res.splits["train"], res.splits["test"]
    assert train.num_rows and test.num_rows
    assert not prompts(train) & prompts(test)
    # without grouping the same data would leak: the check can fail
    ids = pl.from_arrow(train).vstack(pl.from_arrow(test)).sample(fraction=1.0, seed=seed)
    naive_test = ids.head(test.num_rows)
    naive_train = ids.tail(ids.height - test.num_rows)
    assert prompts(naive_train.to_arrow()) & prompts(naive_test.to_arrow())
    info = res.manifest["test_split"]
    assert info["test_kept"] == test.num_rows >= info["target"] == round(0.2 * 90)
    for c in res.manifest["splits"].values():
        assert identity_holds(c)
    assert res.manifest["totals"]["read"] == 90


def test_group_key_keeps_shp_posts_together(tmp_path):
    rows = []
    for post in range(8):
        for j in range(3):  # same post, different prompts would not link them: the post_id does
            r = C.shp(post * 3 + j, post=f"post{post}")
            r["history"] = f"post {post} variant {j}"
            rows.append(r)
    res = build(write_jsonl(tmp_path / "shp.jsonl", rows), test_rows=5, seed=0)
    test_posts = {i // 3 for i in res.splits["test"].column("source_index").to_pylist()}
    train_posts = {i // 3 for i in res.splits["train"].column("source_index").to_pylist()}
    assert not test_posts & train_posts
    assert res.splits["test"].num_rows % 3 == 0 and res.splits["test"].num_rows >= 5


def test_binarised_pairs_and_upsampled_copies_stay_with_their_row(tmp_path):
    nectar = write_jsonl(tmp_path / "n.jsonl", [C.nectar(i, ranks=(1.0, 2.0, 3.0)) for i in range(12)])
    flat = write_jsonl(
        tmp_path / "f.jsonl",
        [{"prompt": f"f{i}", "chosen": "c", "rejected": f"r{i}", "delta_score": 1.0} for i in range(6)],
    )
    res = build([str(nectar), f"{flat}:3.0"], pairs="all-pairs", test_rows=10, seed=4)
    for split, other in (("train", "test"), ("test", "train")):
        mine = set(
            zip(
                res.splits[split].column("source").to_pylist(),
                res.splits[split].column("source_index").to_pylist(),
                strict=True,
            )
        )
        theirs = set(
            zip(
                res.splits[other].column("source").to_pylist(),
                res.splits[other].column("source_index").to_pylist(),
                strict=True,
            )
        )
        assert not mine & theirs
    for c in res.manifest["splits"].values():
        assert identity_holds(c)
    assert sum(c.get("added", {}).get("upsampled", 0) for c in res.manifest["splits"].values()) == 12


def test_components_link_rows_through_any_key():
    rows = pl.DataFrame(
        {"_pkey": [1, 2, 2, 3, None], "_gkey": [None, 7, None, 7, None], "_skey": [10, 11, 12, 13, 14]}
    )
    assert components(rows).to_list() == [0, 1, 1, 1, 4]


def test_bad_split_sizes(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", leaky_rows(10))
    with pytest.raises(SelectionError, match=r"test_size=1\.5 is not a fraction"):
        build(path, test_size=1.5)
    with pytest.raises(SelectionError, match=r"test_size=\.\.\. and test_rows=\.\.\. both given"):
        build(path, test_size=0.1, test_rows=3)
    with pytest.raises(SelectionError, match="a test split of 50 rows leaves no training rows") as err:
        build(path, test_rows=50)
    assert "leaves no training rows" in err.value.message
    with pytest.raises(SelectionError, match="no row is left to split") as err:  # said so, not "0 kept"
        build(path, test_size=0.2, min_margin=1e9)
    assert "no row is left" in err.value.message and "--test-size" in err.value.hint
