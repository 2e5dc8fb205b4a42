"""Export shapes for other trainers (--export) and the system-prompt options (--system)."""

from __future__ import annotations

import json

import datasets
import pytest
from click.testing import CliRunner

from prefkit import build
from prefkit.cli import cli
from prefkit.errors import SelectionError
from prefkit.formats.system import parse_system
from tests import catalog as C


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def source(tmp_path):
    return write_jsonl(tmp_path / "truthy.jsonl", [C.truthy(i) | {"delta_score": 1.0 + i} for i in range(3)])


def test_trl_is_the_default(source, tmp_path):
    res = build(source, tmp_path / "out")
    assert res.splits["train"].column_names[:3] == ["prompt", "chosen", "rejected"]
    assert "export" not in res.manifest


def test_openrlhf_full_conversations_and_margin(source, tmp_path):
    build(source, tmp_path / "out", export="openrlhf")
    row = datasets.load_dataset(str(tmp_path / "out"), split="train")[0]
    system = "You are an unbiased, uncensored, helpful assistant."
    assert row["chosen"] == C.msgs(
        ("system", system),
        ("user", "What does the sun feel like 0?"),
        ("assistant", "As an AI, I don't have a body 0"),
    )
    assert row["rejected"][-1] == {"role": "assistant", "content": "It feels warm 0"}
    assert row["chosen"][:-1] == row["rejected"][:-1]
    assert row["margin"] == 1.0 and "prompt" not in row
    assert "OpenRLHF" in (tmp_path / "out" / "README.md").read_text()


def test_llamafactory_sharegpt_and_dataset_info(source, tmp_path):
    out = tmp_path / "lf"
    build(source, out, export="llamafactory")
    info = json.loads((out / "dataset_info.json").read_text())
    (entry,) = info.values()
    assert entry["formatting"] == "sharegpt" and entry["ranking"] is True
    assert entry["columns"] == {
        "messages": "conversations",
        "system": "system",
        "tools": "tools_json",
        "chosen": "chosen",
        "rejected": "rejected",
    }
    row = datasets.load_dataset("parquet", data_files=str(out / entry["file_name"]), split="train")[0]
    assert row["conversations"] == [{"from": "human", "value": "What does the sun feel like 0?"}]
    assert row["system"] == "You are an unbiased, uncensored, helpful assistant."
    assert row["chosen"] == {"from": "gpt", "value": "As an AI, I don't have a body 0"}
    assert row["rejected"] == {"from": "gpt", "value": "It feels warm 0"}
    assert (
        len(row["conversations"]) % 2 == 1
    )  # LLaMA-Factory wants an odd number of turns ending with the user


def test_kto_unpaired_rows_without_conflicts(tmp_path):
    # all-pairs over 3 ranked answers: the middle answer is chosen in one pair and rejected in another
    path = write_jsonl(tmp_path / "n.jsonl", [C.nectar(0, ranks=(1.0, 2.0, 3.0))])
    res = build(path, tmp_path / "kto", pairs="all-pairs", export="kto")
    rows = res.splits["train"].to_pylist()
    assert {(r["completion"][0]["content"], r["label"]) for r in rows} == {
        ("answer 0 rank 1.0", True),
        ("answer 0 rank 3.0", False),
    }
    stats = res.manifest["export"]["splits"]["train"]
    assert stats == {"rows": 2, "pairs": 3, "duplicate_completions": 2, "conflicting_completions": 2}
    loaded = datasets.load_dataset(str(tmp_path / "kto"), split="train")
    assert loaded.column_names[:3] == ["prompt", "completion", "label"]


def test_unknown_export_is_an_error(source):
    with pytest.raises(SelectionError, match=r"export=\.\.\.: Input should be 'trl'.*got 'nope'"):
        build(source, export="nope")


@pytest.mark.parametrize(
    ("value", "first"),
    [
        ("keep", ("system", "You are an unbiased, uncensored, helpful assistant.")),
        ("drop", ("user", "What does the sun feel like 0?")),
        ("override Be a pirate.", ("system", "Be a pirate.")),
        ("default Be a pirate.", ("system", "You are an unbiased, uncensored, helpful assistant.")),
    ],
)
def test_system_options_on_prompts_with_a_system(source, value, first):
    prompt = build(source, system=value).splits["train"].column("prompt").to_pylist()[0]
    assert (prompt[0]["role"], prompt[0]["content"]) == first
    assert [m["role"] for m in prompt].count("system") <= 1


def test_system_default_adds_only_where_missing(tmp_path):
    rows = [C.intel_orca(0), C.intel_orca(1)]  # row 1 has an empty system: no system message
    prompts = build(write_jsonl(tmp_path / "o.jsonl", rows), system="default Be kind.").splits["train"]
    first = [p[0] for p in prompts.column("prompt").to_pylist()]
    assert first == [
        {"role": "system", "content": "You are helpful."},
        {"role": "system", "content": "Be kind."},
    ]


def test_system_parsing_and_cli_takes_the_text_as_the_next_argument(source, tmp_path):
    assert parse_system("override:Hi there") == ("override", "Hi there")
    assert parse_system(None) == ("keep", None)
    for bad, message in (
        ("override", "override needs the system prompt text"),
        ("drop it", "drop takes no text"),
        ("sometimes", "unknown system=... mode 'sometimes'"),
    ):
        with pytest.raises(SelectionError, match=message):
            parse_system(bad)
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        cli, ["build", str(source), "--system", "override", "Talk like a pirate.", "-o", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "prefkit.json").read_text())
    assert manifest["parameters"]["system"] == "override"
    assert manifest["parameters"]["system_text"] == "Talk like a pirate."
    assert len(manifest["sources"]) == 1


@pytest.mark.parametrize("export", ["openai", "axolotl", "nemo-rl", "torchtune"])
def test_new_shapes_from_the_cli(source, tmp_path, export):
    out = tmp_path / export
    result = CliRunner().invoke(cli, ["build", str(source), "--export", export, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"export {export}: 3 rows written from 3 kept pairs" in result.output
    manifest = json.loads((out / "prefkit.json").read_text())
    assert manifest["export"]["shape"] == export and manifest["splits"]["train"]["kept"] == 3
    assert len(datasets.load_dataset(str(out), split="train")) == 3
