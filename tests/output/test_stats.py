"""`prefkit stats`: numbers checked against independent computations on small sets."""

from __future__ import annotations

import json
import statistics

import pyarrow.parquet as pq
import pytest

from prefkit.chat.tokenize import tokenize_pairs
from tests.builders import write_rows
from tests.tinymodel import tiny_model  # noqa: F401 (fixture)


def pct(values, p):
    """Linear-interpolated percentile, computed with the standard library."""
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


@pytest.fixture
def built(tmp_path):
    from prefkit.pipeline import build

    data = write_rows(tmp_path / "d.jsonl", n=30, seed=4)
    lines = data.read_text().splitlines()
    extra = [
        json.loads(lines[0]) | {"chosen": "x<|im_end|>\n<|im_start|>user\ny"},
        json.loads(lines[1]) | {"rejected": "Sure.</s> [INST] z [/INST]"},
        json.loads(lines[2])
        | {"chosen": "In ChatML `<|im_start|>` opens a turn and [INST] opens one in Llama 2"},
    ]
    data.write_text("\n".join(lines + [json.dumps(r) for r in extra]) + "\n")
    build(str(data), tmp_path / "set", keep_ties=True, keep_residue=True)
    return tmp_path / "set"


def contents(messages):
    return sum(len(m["content"]) for m in messages)


def test_stats_numbers(built, tiny_model):  # noqa: F811
    from transformers import AutoTokenizer

    from prefkit.chat.target import load_target
    from prefkit.output.stats import compute_stats

    rows = pq.read_table(built / "data").to_pylist()
    stats = compute_stats(built, load_target(str(tiny_model)))
    (s,) = stats["splits"].values()
    assert s["rows"] == len(rows) == 33
    margins = [r["margin"] for r in rows]
    assert s["margin"]["p50"] == pytest.approx(statistics.median(margins))
    assert s["margin"]["p5"] == pytest.approx(pct(margins, 5))
    assert s["margin"]["mean"] == pytest.approx(statistics.fmean(margins))
    chosen_chars = [contents(r["chosen"]) for r in rows]
    rejected_chars = [contents(r["rejected"]) for r in rows]
    assert s["chars"]["chosen"]["p95"] == pytest.approx(pct(chosen_chars, 95))
    assert s["chars"]["prompt"]["max"] == max(contents(r["prompt"]) for r in rows)
    longer = sum(c > r for c, r in zip(chosen_chars, rejected_chars, strict=True)) / len(rows)
    assert s["length_bias"]["chosen_longer_chars"] == pytest.approx(longer)
    assert s["template_residue_rows"] == 2
    pairs = tokenize_pairs(rows, AutoTokenizer.from_pretrained(tiny_model), None)
    assert s["tokens"]["chosen"]["p50"] == pytest.approx(statistics.median(len(p.chosen_ids) for p in pairs))
    assert s["tokens"]["prompt"]["p99"] == pytest.approx(pct([len(p.prompt_ids) for p in pairs], 99))
    totals = [len(p.prompt_ids) + len(p.rejected_ids) for p in pairs]
    assert s["tokens"]["prompt+rejected"]["max"] == max(totals)
    tok_longer = sum(len(p.chosen_ids) > len(p.rejected_ids) for p in pairs) / len(pairs)
    assert s["length_bias"]["chosen_longer_tokens"] == pytest.approx(tok_longer)
    assert s["build_counts"]["read"] == 33


def test_stats_cli_json_plots_and_card(built, capsys):
    from prefkit.cli import main

    main(["stats", str(built), "--json", "--plot", str(built / "plots")])
    out = json.loads(capsys.readouterr().out)
    assert out["splits"]["train"]["rows"] == 33 and "tokens" not in out["splits"]["train"]
    pngs = sorted(p.name for p in (built / "plots").iterdir())
    assert pngs == ["lengths-train.png", "margin-train.png"]
    assert all((built / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    manifest = json.loads((built / "prefkit.json").read_text())
    assert manifest["stats"]["plots"] == ["plots/margin-train.png", "plots/lengths-train.png"]
    assert "![margin-train.png](plots/margin-train.png)" in (built / "README.md").read_text()
    main(["stats", str(built)])
    table = capsys.readouterr().out
    assert "split train: 33 rows" in table and "template residue: 2 rows" in table


def test_stats_text_set_and_errors(tmp_path, tiny_model, capsys):  # noqa: F811
    from prefkit.cli import main
    from prefkit.pipeline import build

    data = write_rows(tmp_path / "d.jsonl", n=10, seed=5)
    build(str(data), tmp_path / "text", keep_ties=True, tokenizer=str(tiny_model), output_format="text")
    main(["stats", str(tmp_path / "text"), "--tokenizer", str(tiny_model), "--json"])
    s = json.loads(capsys.readouterr().out)["splits"]["train"]
    assert s["format"] == "text" and s["template_residue_rows"] is None
    assert s["tokens"]["chosen"]["count"] == 10
    with pytest.raises(SystemExit, match=r"^1$"):
        main(["stats", str(tmp_path / "nothing")])
    assert "Hint:" in capsys.readouterr().err


def test_options_and_keywords_are_one_call(built):
    """``StatsOptions`` says what the keywords say (one split name or several); keywords given with it win."""
    from prefkit.output.stats import StatsOptions, stats

    by_keywords = stats(built, split="train")
    assert stats(built, StatsOptions(split=("train",))) == by_keywords
    assert stats(built, StatsOptions(split=("nope",)), split=["train"]) == by_keywords
