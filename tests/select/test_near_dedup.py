"""Near-duplicate detection (prefkit.select.near_dedup): planted near-duplicates are found, nothing else.

The texts are made from a fixed vocabulary with a seeded RNG: unrelated texts share almost no 3-word shingle,
planted copies differ only in case, punctuation, whitespace or one or two words (estimated Jaccard well above
0.8), and the "common phrasing" rows share a template but not enough shingles (Jaccard at most 0.5).
"""

from __future__ import annotations

import random
import sys

import numpy as np
import polars as pl
import pytest

pytest.importorskip("rensa")

from prefkit.errors import PrefkitError, SelectionError
from prefkit.select import near_dedup as nd
from prefkit.select import words
from prefkit.select.near_dedup import (
    components,
    lsh_params,
    near_dedup_reasons,
    near_duplicate_clusters,
    shingle_hashes,
)
from prefkit.select.words import normalise_words, word_hashes

VOCAB = (
    "time person year way day thing man world life hand part child eye woman place work week case point "
    "government company number group problem fact be have do say get make go know take see come think look "
    "want give use find tell ask seem feel try leave call good new first last long great little own other "
    "old "
    "right big high different small large next early young important few public bad same able river garden "
    "window kitchen mountain engine science music history doctor letter market station forest paper summer "
    "winter travel dinner bottle camera pencil planet rocket silver yellow purple orange animal button castle"
).split()


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(words)).capitalize() + "."


def shout(text: str) -> str:
    """Same words: upper case, doubled spaces, extra punctuation."""
    return "  ".join(text.upper().split()).replace(".", "!!!") + " ?!"


def swap_words(text: str, positions: list[int]) -> str:
    words = text.split()
    for p in positions:
        words[p] = "zebra" if words[p] != "zebra" else "yak"
    return " ".join(words)


@pytest.fixture(scope="module")
def planted():
    """(texts, expected representatives)."""
    rng = random.Random(7)
    base = [sentence(rng, rng.randint(40, 80)) for _ in range(30)]
    texts, expected = list(base), list(range(30))

    def add(text: str, rep: int) -> None:
        texts.append(text)
        expected.append(rep)

    add(shout(base[0]), 0)  # case, punctuation, whitespace only
    add(swap_words(base[1], [10]), 1)  # one word changed
    add(swap_words(base[2], [5, 30]), 2)  # two words changed
    add(base[3].replace(" ", "\n\t "), 3)
    add(shout(swap_words(base[4], [20])), 4)
    add(swap_words(shout(base[1]), [3]), 1)  # a second copy of 1
    template = "Please write a detailed answer about the following topic and keep it short: "
    for _ in range(4):  # common phrasing: same 14-word template, different 14-word topics -> J < 0.5
        add(template + sentence(rng, 14), len(texts))
    add(sentence(rng, 60), len(texts))  # unrelated
    return texts, expected


def test_normalise_words_rule():
    assert normalise_words("Hello,  WORLD!") == ["hello", "world"]
    assert normalise_words("don't x=3 x = 3\tsnake_case\n") == ["don", "t", "x", "3", "x", "3", "snake_case"]
    assert normalise_words("ÉCOLE Straße ΟΔΟΣ «quote» — dash…") == [
        "école",
        "straße",
        "οδος",
        "quote",
        "dash",
    ]
    assert normalise_words("") == []
    assert normalise_words("?!... ---") == []


def test_word_hashes_and_shingles_layout():
    words, offsets = word_hashes(["a b c d", "", "x y", "A, b; C!"])
    assert offsets.tolist() == [0, 4, 4, 6, 9]
    assert words[0] == words[6] and words[1] == words[7] and words[2] == words[8]
    shingles, s_offsets = shingle_hashes(words, offsets, 3)
    # 4 words -> 2 shingles; 0 words -> none; 2 words (< 3) -> one shingle of both; 3 words -> 1
    assert s_offsets.tolist() == [0, 2, 2, 3, 4]
    assert shingles[0] == shingles[3]  # "a b c" in both texts
    assert len(set(shingles.tolist())) == 3
    with pytest.raises(SelectionError, match="shingle must be at least 1 word, got 0"):
        shingle_hashes(words, offsets, 0)


def test_planted_near_duplicates_exact(planted):
    texts, expected = planted
    assert near_duplicate_clusters(texts) == expected


def test_deterministic_and_seed_independent_on_clear_cases(planted):
    texts, expected = planted
    first = near_duplicate_clusters(texts, seed=3)
    assert near_duplicate_clusters(texts, seed=3) == first
    assert first == expected
    assert near_duplicate_clusters(pl.Series(texts), seed=11) == expected


def test_short_and_empty_texts():
    texts = ["hi", "HI!", "hi there", "Hi, there.", "", None, "   ", "a b", "a c", "ok"]
    # shorter than 3 words: the whole text is one shingle; no words: never a near-duplicate
    assert near_duplicate_clusters(texts) == [0, 0, 2, 2, 4, 5, 6, 7, 8, 9]
    assert near_duplicate_clusters([]) == []


def test_sections_only_match_the_same_section():
    rng = random.Random(2)
    p, a, b = (sentence(rng, 40) for _ in range(3))
    labels = near_duplicate_clusters([[p, a, b], [p.lower(), a, b], [p, b, a], [p, a], [p + " " + a, b]])
    assert labels == [0, 0, 2, 3, 4]
    # an empty section still takes a position; None sections are dropped
    assert near_duplicate_clusters([[p], p, ["", p], [None, p]]) == [0, 0, 2, 0]


def test_threshold_matters():
    rng = random.Random(1)
    base = sentence(rng, 30)
    edited = swap_words(base, [3, 13, 23])  # J about (28-9)/(28+9) = 0.51
    assert near_duplicate_clusters([base, edited], threshold=0.8) == [0, 1]
    assert near_duplicate_clusters([base, edited], threshold=0.3) == [0, 0]


def test_big_buckets_are_peeled_and_identical_rows_collapse():
    rng = random.Random(5)
    base = sentence(rng, 200)
    family = [base + f" tail{i}" for i in range(90)]  # 90 distinct near-identical texts: buckets > 64 members
    copies = [base.upper()] * 70  # identical signatures
    other = [sentence(rng, 50) for _ in range(5)]
    labels = near_duplicate_clusters(family + copies + other)
    assert labels == [0] * 160 + list(range(160, 165))


def test_components_union_find():
    edges = np.array([[3, 4], [1, 4], [0, 2], [2, 5], [6, 6]])
    assert components(8, edges).tolist() == [0, 1, 0, 1, 1, 0, 6, 7]
    chain = np.stack([np.arange(1, 500), np.arange(0, 499)], axis=1)[::-1]
    assert (components(500, chain) == 0).all()
    assert components(3, np.empty((0, 2), dtype=np.int64)).tolist() == [0, 1, 2]


def test_lsh_params():
    assert lsh_params(0.8, 128) == (21, 6)
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95):
        bands, rows = lsh_params(threshold, 128)
        assert bands * rows <= 128
        assert 1 - (1 - threshold**rows) ** bands >= 0.99


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0.0}, r"threshold must be in \(0, 1\], got 0.0"),
        ({"threshold": 1.5}, r"threshold must be in \(0, 1\], got 1.5"),
        ({"num_perm": 0}, r"num_perm and shingle must be >= 1 and seed >= 0 \(got 0, 3, 0\)"),
        ({"shingle": 0}, r"num_perm and shingle must be >= 1 and seed >= 0 \(got 128, 0, 0\)"),
        ({"seed": -1}, r"num_perm and shingle must be >= 1 and seed >= 0 \(got 128, 3, -1\)"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(SelectionError, match=message):
        near_duplicate_clusters(["a b c"], **kwargs)


def test_a_missing_rensa_is_one_error_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "rensa", None)
    with pytest.raises(PrefkitError, match="needs rensa, which is not installed") as err:
        nd.minhash_signatures(["a b c"])
    assert "rensa" in str(err.value) and err.value.hint == "pip install rensa"


def msgs(role: str, content: str) -> list[dict]:
    return [{"role": role, "content": content}]


def frame(rows: list[tuple[list[dict], str, str, float | None, str]]) -> pl.DataFrame:
    message = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
    return pl.DataFrame(
        {
            "prompt": [r[0] for r in rows],
            "chosen": [msgs("assistant", r[1]) for r in rows],
            "rejected": [msgs("assistant", r[2]) for r in rows],
            "margin": [r[3] for r in rows],
            "stage": [r[4] for r in rows],
        },
        schema={
            "prompt": message,
            "chosen": message,
            "rejected": message,
            "margin": pl.Float64,
            "stage": pl.String,
        },
    )


@pytest.fixture(scope="module")
def pairs_df():
    rng = random.Random(3)
    q = [sentence(rng, 40) for _ in range(4)]
    a = [sentence(rng, 60) for _ in range(8)]
    user = [msgs("user", x) for x in q]
    sys_a = msgs("system", "You are a helpful assistant.")
    sys_b = msgs("system", "Answer like a pirate, always, whatever the question is.")
    rows = [
        (user[0], a[0], a[1], 1.0, "kept"),  # 0
        (sys_a + user[0], shout(a[0]), a[1], 3.0, "kept"),  # 1: pair-duplicate of 0 (system turn ignored)
        (user[0], a[2], a[3], None, "kept"),  # 2: same prompt, other answers
        (user[1], a[4], a[5], 2.0, "kept"),  # 3
        (sys_b + user[1], a[4], swap_words(a[5], [7]), 2.0, "kept"),  # 4: pair-duplicate of 3
        (user[0], a[0], a[1], 9.0, "dropped"),  # 5: not kept: takes no part
        (user[2], a[6], a[7], float("nan"), "kept"),  # 6
        (msgs("user", shout(q[2])), a[7], a[6], 0.5, "kept"),  # 7: same prompt as 6, answers swapped
        (user[3], a[0], a[5], None, "invalid"),  # 8
    ]
    return frame(rows)


def test_reasons_pair_mode(pairs_df):
    out = near_dedup_reasons(pairs_df, mode="pair")
    assert out.schema == pl.Schema({"_row": pl.Int64, "reason": pl.String, "kept_row": pl.Int64})
    # row 7 has row 6's prompt and answers, but chosen and rejected swapped: not the same pair
    assert out.rows() == [(1, "near_duplicate", 0), (4, "near_duplicate", 3)]


def test_reasons_prompt_mode_keeps_highest_margin(pairs_df):
    out = near_dedup_reasons(pairs_df, mode="prompt", reason="near_duplicate_prompt")
    # prompt 0: rows 0 (1.0), 1 (3.0), 2 (null) -> keep 1; prompt 1: rows 3, 4 tie at 2.0 -> keep 3 (first);
    # prompt 2: rows 6 (NaN = missing) and 7 (0.5) -> keep 7
    assert out.rows() == [
        (0, "near_duplicate_prompt", 1),
        (2, "near_duplicate_prompt", 1),
        (4, "near_duplicate_prompt", 3),
        (6, "near_duplicate_prompt", 7),
    ]


def test_batches_do_not_change_the_result(pairs_df, planted, monkeypatch):
    texts, expected = planted
    whole_pairs = near_dedup_reasons(pairs_df, mode="prompt")
    monkeypatch.setattr(words, "BATCH_TEXTS", 2)  # batches of 2 rows, some with dropped rows only
    assert near_duplicate_clusters(texts) == expected
    assert near_dedup_reasons(pairs_df, mode="prompt").equals(whole_pairs)
    for workers in (1, 3):
        parts = words.map_batches(lambda part: part.to_list(), pl.Series(list(range(7))), workers=workers)
        assert parts == [[0, 1], [2, 3], [4, 5], [6]]


def test_reasons_edge_cases(pairs_df):
    assert near_dedup_reasons(pairs_df.head(0)).height == 0
    assert near_dedup_reasons(pairs_df.with_columns(stage=pl.lit("dropped"))).height == 0
    no_stage = near_dedup_reasons(pairs_df.drop("stage"), mode="pair")
    assert no_stage["_row"].to_list() == [1, 4, 5] and no_stage["kept_row"].to_list() == [0, 3, 0]
    with pytest.raises(SelectionError, match="near-dedup mode must be 'pair' or 'prompt', got 'answers'"):
        near_dedup_reasons(pairs_df, mode="answers")  # type: ignore[arg-type]
