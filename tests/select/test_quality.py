"""The quality pass in a build (issue "near-duplicates, decontamination, length bias"): planted near-duplicates,
contaminations and length bias with known truth, through `build`, the CLI, recipes, rejects and the card."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from prefkit import build

PREFKIT = [sys.executable, "-c", "import sys; from prefkit.cli import main; main(sys.argv[1:])"]
WORDS = (
    "river stone lamp garden window cloud engine paper silver music forest candle harbor winter basket "
    "mirror ladder pepper violin copper saddle lantern meadow orchard pillow thunder velvet walnut"
).split()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def planted(n: int, seed: int = 0, dup_every: int = 4) -> tuple[list[dict], set[int]]:
    """``n`` distinct pairs, and after every ``dup_every``-th one a copy with case, punctuation and spacing
    changed and one word replaced: returns the rows and the positions of the copies."""
    rng = random.Random(seed)
    rows, copies = [], set()
    for i in range(n):
        row = {
            "prompt": sentence(rng, 40),
            "chosen": sentence(rng, 25),
            "rejected": sentence(rng, 25),
            "delta_score": float(1 + i % 5),
        }
        rows.append(row)
        if i % dup_every == 0:
            words = row["prompt"].split()
            words[7] = "zebra"
            copy = {**row, "prompt": "  " + " ".join(words).upper() + "?!", "chosen": row["chosen"] + "."}
            copies.add(len(rows))
            rows.append(copy)
    return rows, copies


def rejects(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "rejects" / "train.parquet")


def data(out: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in sorted((out / "data").glob("train-*.parquet"))])


def assert_counts_add_up(manifest: dict) -> None:
    for c in manifest["splits"].values():
        added = sum(c.get("added", {}).values())
        assert c["read"] + added == c["kept"] + sum(c["dropped"].values()) + sum(c["invalid"].values())


# ------------------------------------------------------------------------------------------------ near-dedup


def test_near_dedup_pair_removes_exactly_the_planted_copies_across_sources(tmp_path):
    rows, copies = planted(40)
    half = len(rows) // 2
    a = write_jsonl(tmp_path / "a.jsonl", rows[:half])
    b = write_jsonl(tmp_path / "b.jsonl", rows[half:])
    res = build([str(a), str(b)], tmp_path / "out", near_dedup=True)
    assert_counts_add_up(res.manifest)
    assert res.manifest["splits"]["train"]["dropped"] == {"near_duplicate": len(copies)}
    rej = rejects(tmp_path / "out")
    dropped = {(s, i) for s, i in rej.select("source", "source_index").iter_rows()}
    want = {("a.jsonl", i) if i < half else ("b.jsonl", i - half) for i in copies}
    assert dropped == want
    # the evidence names the kept row by the id it has in the data files: the original just before the copy
    kept = data(tmp_path / "out")
    for source, index, detail in rej.select("source", "source_index", "detail").iter_rows():
        original = (source, index - 1) if index > 0 else ("a.jsonl", half - 1)
        row = kept.filter((pl.col("source") == original[0]) & (pl.col("source_index") == original[1]))
        assert detail.startswith(f"kept id {row['id'][0]} ")
    assert res.manifest["near_dedup"]["rows_removed"] == len(copies)


def test_near_dedup_prompt_keeps_the_highest_margin_of_each_fuzzy_prompt(tmp_path):
    rng = random.Random(3)
    base = sentence(rng, 40)
    rows = [
        {"prompt": base, "delta_score": 2.0},
        {"prompt": base.upper() + "!", "delta_score": 5.0},
        {"prompt": base + " ", "delta_score": 5.0},  # the same margin: the later one goes
        {"prompt": sentence(rng, 40), "delta_score": 1.0},
    ]
    rows = [{**r, "chosen": sentence(rng, 30), "rejected": sentence(rng, 30)} for r in rows]
    res = build(str(write_jsonl(tmp_path / "p.jsonl", rows)), tmp_path / "out", near_dedup="prompt")
    kept = data(tmp_path / "out")
    assert sorted(kept["source_index"].to_list()) == [1, 3]
    assert res.manifest["splits"]["train"]["dropped"] == {"near_duplicate": 2}
    # pair mode keeps all four: the answers differ
    assert build(str(tmp_path / "p.jsonl"), near_dedup="pair").manifest["splits"]["train"]["kept"] == 4


def test_near_dedup_is_deterministic_and_threshold_matters(tmp_path):
    rows, _ = planted(30, seed=5)
    src = str(write_jsonl(tmp_path / "p.jsonl", rows))
    one = build(src, tmp_path / "a", near_dedup=True, seed=1)
    two = build(src, tmp_path / "b", near_dedup=True, seed=1)
    assert data(tmp_path / "a")["id"].to_list() == data(tmp_path / "b")["id"].to_list()
    assert one.manifest["near_dedup"] == two.manifest["near_dedup"]
    strict = build(src, near_dedup=True, near_dedup_threshold=1.0)
    assert strict.manifest["splits"]["train"]["dropped"].get("near_duplicate", 0) == 0


# ------------------------------------------------------------------------------------------------ decontamination

EVAL_ITEMS = [
    "Write a short story about a robot who learns to paint with watercolors in an old lighthouse by the sea.",
    "Explain the difference between a stack and a queue, giving one everyday example of each structure.",
    "Compose a haiku about autumn leaves.",  # 6 words: only an exact turn matches
]


def decontam_rows() -> tuple[list[dict], set[int]]:
    rng = random.Random(9)
    rows = [
        {"prompt": sentence(rng, 30), "chosen": "a", "rejected": "b", "delta_score": 1.0} for _ in range(12)
    ]
    rows[2]["prompt"] = "Please help. " + EVAL_ITEMS[0].upper().replace(",", " ,") + " Thanks!"  # embedded
    rows[5]["prompt"] = (
        "explain the difference between a stack and a queue giving one everyday example of each"
    )
    rows[7]["prompt"] = "compose a HAIKU about autumn leaves!"
    rows[9]["prompt"] = "Write a short story about a robot."  # common phrasing: not an eval item
    rows[10]["prompt"] = "Compose a haiku about autumn leaves and then explain its structure in detail."
    return rows, {2, 5, 7}


def test_decontaminate_against_a_local_eval_file(tmp_path):
    rows, truth = decontam_rows()
    evalset = write_jsonl(tmp_path / "my_eval.jsonl", [{"question": q} for q in EVAL_ITEMS])
    res = build(str(write_jsonl(tmp_path / "p.jsonl", rows)), tmp_path / "out", decontaminate=[str(evalset)])
    assert_counts_add_up(res.manifest)
    rej = rejects(tmp_path / "out")
    assert set(rej["source_index"].to_list()) == truth
    by_index = dict(rej.select("source_index", "detail").iter_rows())
    assert by_index == {
        2: "eval set my_eval.jsonl item 0",
        5: "eval set my_eval.jsonl item 1",
        7: "eval set my_eval.jsonl item 2",
    }
    (entry,) = res.manifest["decontamination"]["sets"]
    assert entry["items"] == 3 and entry["rows_removed"] == 3 and entry["column"] == "question"
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| my_eval.jsonl | 3 | 3 |" in card


def test_decontaminate_answers_too(tmp_path):
    rows = [{"prompt": "hello there", "chosen": EVAL_ITEMS[1], "rejected": "no", "delta_score": 1.0}]
    evalset = write_jsonl(tmp_path / "e.jsonl", [{"prompt": q} for q in EVAL_ITEMS])
    src = str(write_jsonl(tmp_path / "p.jsonl", rows))
    assert build(src, decontaminate=[str(evalset)]).manifest["splits"]["train"]["kept"] == 1
    res = build(src, decontaminate=[str(evalset)], decontaminate_answers=True)
    assert res.manifest["splits"]["train"]["dropped"] == {"contaminated": 1}


def test_builtin_eval_set_by_name_from_the_hub_via_the_cli(hub, tmp_path):
    hub.add_datasetdict(
        "HuggingFaceH4/mt_bench_prompts", {"train": [{"prompt": [q, "And then?"]} for q in EVAL_ITEMS[:2]]}
    )
    rows, _ = decontam_rows()
    src = write_jsonl(tmp_path / "p.jsonl", rows)
    out = tmp_path / "clean"
    proc = subprocess.run(
        [
            *PREFKIT,
            "build",
            str(src),
            "--decontaminate",
            "mt-bench",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "prefkit.json").exists(), (proc.stdout, proc.stderr)
    manifest = json.loads((out / "prefkit.json").read_text())
    assert manifest["splits"]["train"]["dropped"] == {"contaminated": 2}  # the haiku is not in this set
    assert manifest["decontamination"]["sets"][0]["hub_id"] == "HuggingFaceH4/mt_bench_prompts"
    assert "| HuggingFaceH4/mt_bench_prompts | 2 | 2 |" in (out / "README.md").read_text()


def test_an_unknown_eval_set_is_one_line_with_the_names(tmp_path):
    src = write_jsonl(tmp_path / "p.jsonl", decontam_rows()[0])
    proc = subprocess.run(
        [*PREFKIT, "build", str(src), "--decontaminate", "./nope.jsonl", "-o", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: ") and "Hint: " in proc.stderr and "mt-bench" in proc.stderr


# ------------------------------------------------------------------------------------------------ length balance


def biased_rows(n: int = 100, longer: int = 80) -> list[dict]:
    """``longer`` of ``n`` pairs have the longer answer chosen; margins 1..n."""
    rows = []
    for i in range(n):
        long, short = "word " * 20, "word " * 5
        chosen, rejected = (long, short) if i < longer else (short, long)
        rows.append({"prompt": f"q{i}", "chosen": chosen, "rejected": rejected, "delta_score": float(i + 1)})
    return rows


def test_length_balance_drops_the_fewest_lowest_margin_pairs(tmp_path):
    res = build(str(write_jsonl(tmp_path / "p.jsonl", biased_rows())), tmp_path / "out", length_balance=True)
    assert_counts_add_up(res.manifest)
    # 20 pairs have the rejected answer longer, so at most 20 (+1 % of the kept) chosen-longer pairs stay:
    # keep k with k / (k + 20) <= 0.51 -> k = 20; 60 chosen-longer pairs go, the lowest margins (1..60)
    kept = data(tmp_path / "out")
    assert kept.height == 40
    assert sorted(kept["margin"].to_list()) == [float(m) for m in range(61, 101)]
    assert res.manifest["splits"]["train"]["dropped"] == {"length_balance": 60}
    section = res.manifest["length_balance"]
    assert section["unit"] == "characters" and section["splits"]["train"]["chosen_longer_after"] == 0.5
    assert section["splits"]["train"]["chosen_longer_before"] == 0.8
    stats = res.manifest["stats"]["splits"]["train"]["length_bias"]
    assert stats["chosen_longer_chars"] == 0.5


def test_length_bias_figures_in_stats_and_card(tmp_path):
    build(str(write_jsonl(tmp_path / "p.jsonl", biased_rows(10, 8))), tmp_path / "out")
    proc = subprocess.run(
        [*PREFKIT, "stats", str(tmp_path / "out"), "--json"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    bias = json.loads(proc.stdout)["splits"]["train"]["length_bias"]
    assert bias["chosen_longer_chars"] == 0.8
    # chosen/rejected = 100/25 in 8 pairs, 25/100 in 2: the median ratio is 4
    assert bias["median_ratio_chars"] == pytest.approx(4.0)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| 80% | 4.00 |" in card


# ------------------------------------------------------------------------------------------------ recipes, CLI


def test_quality_options_round_trip_through_a_recipe(tmp_path):
    rows, _ = planted(12)
    src = write_jsonl(tmp_path / "p.jsonl", rows)
    evalset = write_jsonl(tmp_path / "e.jsonl", [{"prompt": q} for q in EVAL_ITEMS])
    first = build(
        str(src), tmp_path / "a", near_dedup="pair", decontaminate=[str(evalset)], length_balance=True
    )
    again = build(recipe_file=tmp_path / "a" / "prefkit.json", output=tmp_path / "b")
    assert again.manifest["splits"] == {
        k: {**v, "files": again.manifest["splits"][k]["files"]} for k, v in first.manifest["splits"].items()
    }
    assert pq.read_table(next((tmp_path / "b" / "data").glob("*.parquet"))).equals(
        pq.read_table(next((tmp_path / "a" / "data").glob("*.parquet")))
    )


def test_cli_near_dedup_flag_with_and_without_a_value(tmp_path):
    rows, copies = planted(12)
    src = write_jsonl(tmp_path / "pairs.jsonl", rows)
    for extra in (["--near-dedup"], ["--near-dedup", "prompt", "--near-dedup-threshold", "0.7"]):
        out = tmp_path / extra[-1].strip("-")
        proc = subprocess.run(
            [*PREFKIT, "build", str(src), *extra, "-o", str(out)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        manifest = json.loads((out / "prefkit.json").read_text())
        assert manifest["splits"]["train"]["dropped"] == {"near_duplicate": len(copies)}
        assert "near_duplicate" in proc.stderr  # the summary names the reason
