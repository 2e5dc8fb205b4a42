"""Mixing several sources with weights (fraction, row count, upsampling), per-source margin scales, dedup, and
the accounting identity across sources."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner

from prefkit import build
from prefkit.cli import cli
from prefkit.errors import SelectionError
from prefkit.select.mix import draw, source_rng
from prefkit.sources.spec import Weight, parse_source, parse_weight
from tests.catalog import publish


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def flat(n, prefix="p", margin=lambda i: 1.0 + i % 3):
    return [
        {
            "prompt": f"{prefix}{i}",
            "chosen": f"good {prefix}{i}",
            "rejected": f"bad {prefix}{i}",
            "delta_score": margin(i),
        }
        for i in range(n)
    ]


def identity_holds(c):
    added = sum(c.get("added", {}).values())
    return c["read"] + added == c["kept"] + sum(c["dropped"].values()) + sum(c["invalid"].values())


def test_weight_syntax():
    assert parse_weight("0.5") == Weight("fraction", 0.5, "0.5")
    assert parse_weight("1.0").kind == "fraction"
    assert parse_weight("2000") == Weight("rows", 2000.0, "2000")
    assert parse_weight(3) == Weight("rows", 3.0, "3")
    assert parse_weight("2.0").kind == "upsample"
    spec = parse_source("argilla/dpo-mix-7k:0.5")
    assert (spec.source, spec.weight.kind) == ("argilla/dpo-mix-7k", "fraction")
    assert parse_source("ns/name").weight is None
    for bad, message in (
        ("0", "source weight '0' asks for no rows"),
        ("-1", "bad source weight '-1'"),
        ("abc", "bad source weight 'abc'"),
        ("0.0", r"source weight '0\.0' asks for no rows"),
    ):
        with pytest.raises(SelectionError, match=message):
            parse_weight(bad)


def test_existing_path_with_a_colon_is_not_split(tmp_path):
    path = write_jsonl(tmp_path / "odd:2", flat(2))
    assert parse_source(str(path)).weight is None


def test_draw_arithmetic():
    rng = lambda: source_rng(0, "x")  # noqa: E731
    once, again = draw(10, parse_weight("0.5"), rng())
    assert len(once) == 5 and len(again) == 0 and list(once) == sorted(once)
    once, again = draw(10, parse_weight("4"), rng())
    assert len(once) == 4 and len(set(once)) == 4
    once, again = draw(10, parse_weight("25"), rng())  # more than there are: all once + 15 with replacement
    assert list(once) == list(range(10)) and len(again) == 15
    once, again = draw(10, parse_weight("2.5"), rng())
    assert len(once) == 10 and len(again) == 15
    a, _ = draw(100, parse_weight("0.3"), source_rng(1, "x"))
    b, _ = draw(100, parse_weight("0.3"), source_rng(1, "x"))
    c, _ = draw(100, parse_weight("0.3"), source_rng(2, "x"))
    assert list(a) == list(b) and list(a) != list(c)


def test_three_source_mix_counts_and_identity(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", flat(40, "a"))
    b = write_jsonl(tmp_path / "b.jsonl", flat(30, "b"))
    c = write_jsonl(tmp_path / "c.jsonl", flat(10, "c"))
    res = build([f"{a}:0.5", f"{b}:12", f"{c}:2.0"], tmp_path / "out", seed=7)
    by_source = pl.from_arrow(res.splits["train"]).group_by("source").len()
    got = {src.rsplit("/", 1)[-1]: n for src, n in by_source.iter_rows()}
    assert got == {"a.jsonl": 20, "b.jsonl": 12, "c.jsonl": 20}
    sources = res.manifest["sources"]
    assert [s["weight"]["kind"] for s in sources] == ["fraction", "rows", "upsample"]
    assert sources[0]["splits"]["train"]["dropped"] == {"not_sampled": 20}
    assert sources[2]["splits"]["train"]["added"] == {"upsampled": 10}
    for s in sources:
        assert identity_holds(s["splits"]["train"])
    total = res.manifest["splits"]["train"]
    assert identity_holds(total) and total["read"] == 80 and total["kept"] == 52
    # every upsampled row is a real row of c, and every row of c is there at least once
    c_rows = pl.from_arrow(res.splits["train"]).filter(pl.col("source").str.ends_with("c.jsonl"))
    assert set(c_rows["source_index"]) == set(range(10))
    # reproducible with the seed, different without the same seed
    again = build([f"{a}:0.5", f"{b}:12", f"{c}:2.0"], seed=7).splits["train"]
    assert again.column("id").to_pylist() == res.splits["train"].column("id").to_pylist()
    other = build([f"{a}:0.5", f"{b}:12", f"{c}:2.0"], seed=8).splits["train"]
    assert other.column("id").to_pylist() != res.splits["train"].column("id").to_pylist()


def test_weights_apply_to_rows_that_survive_filters(tmp_path):
    rows = flat(10, "t", margin=lambda i: 0.0 if i < 4 else 2.0)  # 4 ties
    res = build([f"{write_jsonl(tmp_path / 't.jsonl', rows)}:0.5"])
    c = res.manifest["splits"]["train"]
    assert c["kept"] == 3 and c["dropped"] == {"tie": 4, "not_sampled": 3}


def test_margins_normalised_within_each_source_when_scales_differ(hub, tmp_path):
    publish(hub, "argilla/dpo-mix-7k")  # ratings 1-10 per its preset: span 9
    local = write_jsonl(tmp_path / "ours.jsonl", flat(6, "o", margin=lambda i: [1.0, 2.0, 4.0][i % 3]))
    res = build(["argilla/dpo-mix-7k", str(local)], split="train")
    scales = [s["margin_scale"] for s in res.manifest["sources"]]
    assert scales[0] == {"span": 9.0, "from": "preset", "normalised": True}
    assert scales[1] == {"span": 4.0, "from": "observed max |margin|", "normalised": True}
    df = pl.from_arrow(res.splits["train"])
    mix = df.filter(pl.col("source").str.starts_with("argilla/dpo-mix-7k"))
    assert mix["margin"].to_list() == pytest.approx([(9 - 6) / 9, (9 - 7) / 9, (9 - 8) / 9, (9 - 6) / 9])
    assert mix["score_chosen"].to_list() == [9.0] * 4  # native scores stay
    ours = df.filter(pl.col("source").str.ends_with("ours.jsonl"))
    assert max(ours["margin"]) == 1.0
    # one source alone: native margins
    assert build(str(local)).splits["train"].column("margin").to_pylist()[:3] == [1.0, 2.0, 4.0]


def test_dedup_across_sources_and_one_pair_per_prompt(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", flat(6, "x"))
    b_rows = flat(3, "x")  # exact duplicates of a's first three
    b_rows += [{"prompt": "x0", "chosen": "another", "rejected": "answer", "delta_score": 9.0}]
    b = write_jsonl(tmp_path / "b.jsonl", b_rows)
    res = build([str(a), str(b)], dedup=True)
    counts = res.manifest["splits"]["train"]
    assert counts["kept"] == 7 and counts["dropped"] == {"duplicate": 3}
    assert res.manifest["sources"][1]["splits"]["train"]["dropped"] == {"duplicate": 3}
    best = build([str(a), str(b)], dedup=True, one_pair_per_prompt=True)
    kept = best.splits["train"].to_pylist()
    assert len(kept) == 6 and len({json.dumps(r["prompt"]) for r in kept}) == 6
    x0 = [r for r in kept if r["prompt"][0]["content"] == "x0"]
    assert x0[0]["chosen"][0]["content"] == "another"  # highest margin of prompt x0
    assert best.manifest["splits"]["train"]["dropped"] == {"duplicate": 3, "not_best_for_prompt": 1}
    assert identity_holds(best.manifest["splits"]["train"])


def test_issue_example_mix_from_the_hub_via_the_cli(hub, tmp_path):
    publish(hub, "argilla/dpo-mix-7k")
    publish(hub, "Intel/orca_dpo_pairs")
    ours = write_jsonl(tmp_path / "ours.jsonl", flat(5, "o"))
    out = tmp_path / "mix"
    runner = CliRunner()
    args = ["build", "argilla/dpo-mix-7k:0.5", "Intel/orca_dpo_pairs:3", f"{ours}:1.0", "--dedup"]
    result = runner.invoke(cli, [*args, "--test-size", "0.25", "--seed", "1", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "prefkit.json").read_text())
    assert set(manifest["splits"]) == {"train", "test"}
    for c in manifest["splits"].values():
        assert identity_holds(c)
    sources = manifest["sources"]
    assert [s.get("license") for s in sources] == ["mit", "apache-2.0", None]
    assert all(s["sha"] for s in sources[:2])
    card = (out / "README.md").read_text()
    for s in sources[:2]:
        assert s["id"] in card and s["sha"] in card
    assert "apache-2.0" in card and "mit" in card
    rejects = pl.read_parquet(out / "rejects" / "train.parquet")  # mixed original types written as text
    assert "not_sampled" in set(rejects["reason"])
