"""What the card, the summary and the trainer say is true: each sentence checked against what happened."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefkit.errors import ModelError
from tests.reflogps_data import run_cli

ROWS = [
    {"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "delta_score": 1.0 + i}
    for i in range(4)
]


@pytest.fixture
def built(tmp_path) -> Path:
    from prefkit import build

    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    build(str(src), tmp_path / "set")
    return tmp_path / "set"


def test_push_create_pr_says_pull_request_and_warns_before_the_upload(built, hub, capsys):
    repo = hub.unique_id("me/pr")
    code, _, err = run_cli(["push", str(built), repo], capsys)
    assert code == 0, err
    code, _, err = run_cli(["push", str(built), repo, "--create-pr", "--license", "cc-by-4.0"], capsys)
    assert code == 0, err
    assert "(a pull request against main)" in err and "(main)" not in err
    warnings = [line for line in err.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == len(set(warnings))  # each warning once
    if warnings:
        assert err.index(warnings[0]) < err.index("Pushed")  # before the upload's line


def test_the_template_refusal_names_the_recorded_template():
    from prefkit.reflogps.provenance import check_build_tokenizer

    built = {"chat_template": "builtin:chatml", "chat_template_hash": "a"}
    with pytest.raises(ModelError, match=r"another chat template \(builtin:chatml\) than m's"):
        check_build_tokenizer(built, {"chat_template_sha256": "b"}, "m")


def test_the_near_dedup_reason_mentions_chains():
    from prefkit.accounting import meaning

    text = meaning("dropped", "near_duplicate")
    assert "chain" in text


def test_the_reflogps_summary_names_wall_and_model_time():
    from prefkit.job_results import ReflogpsResult

    shards = {"total": 1, "scored": 1, "taken_over": 0, "resumed": 0, "by_others": 0, "lost": 0}
    summary = {
        "splits": {"train": {"rows": 4, "scored": 4, "dropped": {}, "truncated": 0, "tokens": 40}},
        "dropped": {},
        "pairs_per_s": 8.0,
        "tokens_per_s": 80.0,
        "model": "m",
        "revision": None,
        "dtype": "float32",
        "device": "cpu",
        "world_size": 1,
        "workers": 1,
        "max_length": 64,
        "pairs": 4,
        "scored": 4,
        "truncated": 0,
        "tokens": 40,
        "scoring_seconds": 0.5,
        "outcome": "scored",
        "output": "OUT",
        "seconds": 10.0,
        "shards": {**shards, "merged_here": True},
    }
    text = ReflogpsResult.from_dict(summary).summary()
    assert "took 10.0s wall time (scoring 8.0 pairs/s, 80 tokens/s of model time" in text


def test_ctrl_c_promises_only_what_rerunning_does(built, tmp_path, capsys, monkeypatch):
    import prefkit.pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prefkit.pipeline, "build", interrupted)
    code, _, err = run_cli(["build", str(tmp_path / "d.jsonl"), "-o", str(tmp_path / "o")], capsys)
    assert code == 130 and "starts over" in err and "resume" not in err
    from prefkit.reflogps import job

    monkeypatch.setattr(job, "reflogps", interrupted)
    code, _, err = run_cli(["reflogps", str(built), "--model", "m"], capsys)
    assert code == 130 and "resumes from the shards it finished" in err


def test_a_margin_read_with_margin_col_is_called_what_it_is(tmp_path):
    from prefkit import build
    from prefkit.accounting import meaning
    from prefkit.output.audit import margin_is_rm

    rows = [{**r, "rm_margin": [0.5, -0.5, 1.5, 2.0][i]} for i, r in enumerate(ROWS)]
    src = tmp_path / "scored.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = build(str(src), tmp_path / "o", margin_col="rm_margin")
    card = (tmp_path / "o" / "README.md").read_text()
    assert "| `margin` | float64 | the source's `rm_margin` column (`--margin-col rm_margin`) |" in card
    assert "native margin" not in card and "own scores" not in card
    assert "own scores" not in meaning("flags", "negative_margin")
    assert margin_is_rm(result.manifest)
    said = [w for w in result.warnings if "delta_score" in w]
    assert said and "the source's own margin, not used: the margin is rm_margin" in said[0]
    assert not margin_is_rm(build(str(src), tmp_path / "o2").manifest)


def test_the_local_card_states_the_licence_and_size_it_knows(hub, tmp_path):
    import yaml

    from prefkit import build
    from tests.catalog import publish

    publish(hub, "argilla/dpo-mix-7k")
    build("argilla/dpo-mix-7k", tmp_path / "o")
    front = yaml.safe_load((tmp_path / "o" / "README.md").read_text().split("---")[1])
    assert front["license"] == "mit" and front["size_categories"] == ["n<1K"]
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    build(str(src), tmp_path / "local")
    front = yaml.safe_load((tmp_path / "local" / "README.md").read_text().split("---")[1])
    assert "license" not in front and front["size_categories"] == [
        "n<1K"
    ]  # a local file's licence is unknown


def test_published_commands_mark_local_paths_and_the_trainer_compares_weight_hashes(tmp_path):
    import shutil

    from prefkit.integrations.checks import _same_model
    from prefkit.loading.model import weights_hash
    from prefkit.publish.public import public_command
    from tests.tinymodel import tiny_model_path

    published = public_command("prefkit reflogps out --model ../tiny --max-length 64")
    assert "--model '<local path not published: tiny>'" in published and " tiny " not in published
    model = tmp_path / "published-name"
    shutil.copytree(tiny_model_path(), model)
    section = {"model": "tiny", "model_source": "local", "weights_sha256": weights_hash(model)}
    assert _same_model(section, str(model))  # same weights under another path: no warning
    other = tmp_path / "other"
    shutil.copytree(tiny_model_path(seed=1), other)
    assert not _same_model(section, str(other))


@pytest.mark.parametrize("template,noted", [("chatml", False), ("llama-3", True)])
def test_the_double_bos_note_only_for_text_that_starts_with_bos(template, noted, tmp_path, capsys):
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    args = [
        "build",
        str(src),
        "-o",
        str(tmp_path / "o"),
        "--chat-template",
        template,
        "--output-format",
        "text",
    ]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert ("double BOS" in err) is noted, err


def test_the_card_says_what_the_kto_columns_mean(tmp_path):
    from prefkit import build

    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    build(str(src), tmp_path / "kto", export="kto")
    card = (tmp_path / "kto" / "README.md").read_text()
    assert "| `completion` | messages | one answer of a pair" in card
    assert "| `label` | bool | true when the completion was the chosen answer" in card


def test_token_statistics_reach_the_local_card(built, capsys):
    from tests.tinymodel import tiny_model_path

    before = (built / "README.md").read_text()
    code, _, err = run_cli(["stats", str(built), "--tokenizer", str(tiny_model_path()), "-q"], capsys)
    assert code == 0, err
    manifest = json.loads((built / "prefkit.json").read_text())
    assert manifest["stats"]["tokenizer"]["name_or_path"]
    card = (built / "README.md").read_text()
    assert card != before and "Median token lengths with the tokenizer" in card
