"""Hints that can be followed: each hint names something that exists and fixes what the message says."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from tests.reflogps_data import run_cli

ROWS = [
    {"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "delta_score": 1.0 + i}
    for i in range(4)
]


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def _trainer_table(prompt: list[int], chosen: list[int], scored: list[float | None]) -> pa.Table:
    """Rows as TRL tokenized them (lengths only matter) with the scoring run's counts."""
    return pa.table(
        {
            "id": [f"r{i}" for i in range(len(prompt))],
            "prompt_ids": [[1] * n for n in prompt],
            "chosen_ids": [[1] * n for n in chosen],
            "rejected_ids": [[1] * n for n in chosen],
            "ref_chosen_logps": [None if s is None else -1.0 for s in scored],
            "ref_rejected_logps": [None if s is None else -1.0 for s in scored],
            "chosen_tokens": scored,
            "rejected_tokens": scored,
        }
    )


def test_the_trainers_hints_can_be_followed():
    from prefkit.reflogps.provenance import check_rows, row_problems

    # a row without values kept by a trainer with no truncation: no `--max-length None`
    table = _trainer_table([10, 100], [5, 5], [5.0, None])
    (message, fix), *_ = row_problems(check_rows(table, None), 96, None)
    assert "no reference values" in message and "--max-length None" not in fix
    assert "DPOConfig(max_length=96)" in fix
    # keep_end cuts other tokens than the scoring run: the truncation mode is named, not max_length
    table = _trainer_table([10, 60], [5, 50], [5.0, 36.0])
    problems = row_problems(check_rows(table, 96, "keep_end"), 96, 96)
    assert len(problems) == 1
    message, fix = problems[0]
    assert "truncation_mode='keep_end'" in message and "truncation_mode='keep_start'" in fix
    # the example shows the two numbers that differ
    table = _trainer_table([10, 10], [5, 50], [5.0, 40.0])
    (message, _), *_ = row_problems(check_rows(table, None), 96, None)
    assert "row r1: 40 chosen tokens scored, this trainer keeps 50" in message


def test_presets_and_eval_sets_suggest_the_name_meant(data, tmp_path, capsys):
    code, _, err = run_cli(["presets", "nectar"], capsys)
    assert (
        code == 1
        and "did you mean berkeley-nest/Nectar" in err
        and "prefkit presets berkeley-nest/Nectar" in err
    )
    code, _, err = run_cli(["presets", "berkeley-nest/Nectar"], capsys)
    assert code == 0
    code, _, err = run_cli(
        ["build", str(data), "-o", str(tmp_path / "o"), "--decontaminate", "mmluu"], capsys
    )
    assert code == 1 and "did you mean 'mmlu'" in err and "built-in eval sets: mt-bench" in err


def test_files_get_hints_about_what_they_hold(tmp_path, capsys):
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROWS).encode())
    code, _, err = run_cli(["build", str(bom), "-o", str(tmp_path / "o1")], capsys)
    assert code == 0, err
    bom_lines = tmp_path / "bom.jsonl"
    bom_lines.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in ROWS).encode())
    code, _, err = run_cli(["build", str(bom_lines), "-o", str(tmp_path / "o2")], capsys)
    assert code == 0, err
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n\n\n")
    for args in (["build", str(blank), "-o", str(tmp_path / "o3")], ["detect", str(blank)]):
        code, _, err = run_cli(args, capsys)
        assert code == 1 and "no columns: it holds no rows" in err, err


def test_detect_does_not_tell_you_to_run_detect(data, capsys):
    code, _, err = run_cli(["detect", str(data), "--format", "ranked"], capsys)
    assert code == 1 and "prefkit detect" not in err and "docs/formats.md" in err


def test_a_corrupted_work_settings_file_says_overwrite(data, tmp_path, capsys):
    from prefkit import build
    from prefkit.jobs.plan import SETTINGS_NAME, WORK_DIR
    from tests.tinymodel import tiny_model_path

    out = tmp_path / "set"
    build(str(data), out)
    (out / WORK_DIR).mkdir()
    (out / WORK_DIR / SETTINGS_NAME).write_text('{"fingerprint": "abc", "setti')
    args = ["reflogps", str(out), "--model", str(tiny_model_path()), "--device", "cpu"]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and "cannot be read" in err and "pass --overwrite" in err and "same options" not in err
    code, _, err = run_cli([*args, "--overwrite"], capsys)
    assert code == 0, err


def test_dictionary_binary_and_decimal_columns_read_as_text_and_numbers(tmp_path, capsys):
    import decimal

    import pyarrow.parquet as pq

    from prefkit import build

    d = decimal.Decimal
    table = pa.table(
        {
            "prompt": pa.array(["p1", "p2"]).dictionary_encode(),
            "chosen": pa.array([b"a", b"c"], pa.binary()),
            "rejected": pa.array(["b", "d"], pa.large_string()),
            "score_chosen": pa.array([d("2.5"), d("3.0")], pa.decimal128(4, 2)),
            "score_rejected": pa.array([d("1.5"), d("1.0")], pa.decimal128(4, 2)),
        }
    )
    pq.write_table(table, tmp_path / "types.parquet")
    result = build(str(tmp_path / "types.parquet"), tmp_path / "o", min_margin=1.5)
    assert result.manifest["splits"]["train"]["kept"] == 1  # margins 1.0 and 2.0 (decimal scores are numbers)
    rows = pq.read_table(tmp_path / "o" / "data").to_pylist()
    assert rows[0]["chosen"][0]["content"] == "c" and rows[0]["prompt"][0]["content"] == "p2"
    bad = table.set_column(1, "chosen", pa.array([b"\xff\xfe", b"c"], pa.binary()))
    pq.write_table(bad, tmp_path / "bad.parquet")
    code, _, err = run_cli(["build", str(tmp_path / "bad.parquet"), "-o", str(tmp_path / "o2")], capsys)
    assert code == 1 and err.startswith("Error: a column cannot be read as text") and "UTF-8" in err, err
