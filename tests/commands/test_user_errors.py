"""What a new user ran into on the installed wheel, each kind fixed where it is owned and tested here through the
CLI: a data file given as a chat template, a cross-option error with no option named, a verify that checked
nothing, delta pairs naming a model no completion has, empty builds whose hint no option can follow, a bad
source weight on an existing file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.builders import write_rows
from tests.reflogps_data import build_set, run_cli
from tests.tinymodel import tiny_model_path


def _one_error(code: int, err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert code != 0 and [line.split(":")[0] for line in lines[-2:]] == ["Error", "Hint"], err
    assert "Traceback" not in err and all(w in err for w in words), err


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_data_file_is_not_a_chat_template(tmp_path, capsys):
    """Any file used to be rendered as the template: every prompt became the file's text, answers empty."""
    src = write_rows(tmp_path / "pairs.jsonl", 12)
    args = ["build", str(src), "--chat-template", str(src), "--output-format", "text", "-o", str(tmp_path / "o")]
    code, _, err = run_cli(args, capsys)
    _one_error(code, err, "is not a chat template", "loops over `messages`")
    assert not (tmp_path / "o").exists()
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}", encoding="utf-8")
    args[3], args[-1] = str(template), str(tmp_path / "ok")
    assert run_cli(args, capsys)[0] == 0


def test_a_rule_across_options_names_them_not_a_placeholder(tmp_path, capsys):
    src = write_rows(tmp_path / "pairs.jsonl", 12)
    code, _, err = run_cli(["build", str(src), "--drop-disagreeing", "--flip-disagreeing", "--dry-run"], capsys)
    _one_error(code, err, "--drop-disagreeing and --flip-disagreeing exclude each other")
    assert "?" not in err and "got {" not in err


def test_verify_that_compares_no_value_fails(tmp_path, capsys):
    """A set whose sampled rows are all null (every prompt fills max_length) used to verify as OK."""
    out = build_set(tmp_path, n=8)
    model = str(tiny_model_path())
    assert run_cli(["reflogps", str(out), "--model", model, "--device", "cpu", "--max-length", "2"], capsys)[0] == 0
    code, _, err = run_cli(["verify", str(out), "--model", model, "--device", "cpu"], capsys)
    _one_error(code, err, "no value to compare", "--max-length")


@pytest.fixture
def generated(tmp_path) -> Path:
    """Prompts with completions of two models, as `prefkit generate` writes them (the rated shape)."""
    rows = [
        {
            "prompt": f"question {i}",
            "completions": [{"model": "big", "response": f"good {i}"}, {"model": "small", "response": f"bad {i}"}],
        }
        for i in range(6)
    ]
    return _jsonl(tmp_path / "gen.jsonl", rows)


@pytest.mark.parametrize(
    "chosen, rejected, words",
    [
        ("nomodel", "small", ("--chosen-from 'nomodel' is not the model of any completion", "big, small")),
        ("big", "typo", ("--rejected-from 'typo'", "big, small")),
        ("big", "big", ("name the same model",)),
    ],
)
def test_delta_pairs_refuse_models_the_completions_do_not_have(generated, tmp_path, capsys, chosen, rejected, words):
    args = ["build", str(generated), "--chosen-from", chosen, "--rejected-from", rejected, "-o", str(tmp_path / "d")]
    code, _, err = run_cli(args, capsys)
    _one_error(code, err, *words)
    assert "tie" not in err
    args[3], args[5] = "big", "small"
    assert run_cli(args, capsys)[0] == 0


def test_an_empty_build_says_what_to_do_when_no_option_helps(tmp_path, capsys):
    prompts = _jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"write about {i}"} for i in range(4)])
    code, _, err = run_cli(["build", str(prompts), "-o", str(tmp_path / "p")], capsys)
    _one_error(code, err, "prompt_only 4", "prefkit generate")
    assert code == 4 and "loosen" not in err
    kto = _jsonl(
        tmp_path / "kto.jsonl",
        [{"prompt": f"q {i}", "completion": f"a {i}", "label": True} for i in range(3)],
    )
    code, _, err = run_cli(["build", str(kto), "-o", str(tmp_path / "k")], capsys)
    _one_error(code, err, "no_partner", "both labels")
    src = write_rows(tmp_path / "pairs.jsonl", 12)
    code, _, err = run_cli(["build", str(src), "--min-margin", "1000", "-o", str(tmp_path / "m")], capsys)
    _one_error(code, err, "below_min_margin", "loosen the options")


@pytest.mark.parametrize("weight, words", [("-1", ("bad source weight '-1'",)), ("abc", ("bad source weight",))])
def test_a_bad_weight_on_an_existing_file_is_called_a_weight(tmp_path, capsys, weight, words):
    src = write_rows(tmp_path / "pairs.jsonl", 12)
    code, _, err = run_cli(["build", f"{src}:{weight}", "--dry-run"], capsys)
    _one_error(code, err, *words, "SOURCE:WEIGHT")
    assert "neither an existing file" not in err


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--near-dedup-threshold", "0.5"], "--near-dedup-threshold changes nothing without --near-dedup"),
        (["--decontaminate-answers"], "--decontaminate-answers changes nothing without --decontaminate"),
    ],
)
def test_an_option_that_modifies_another_given_alone_is_named(tmp_path, capsys, flags, words):
    src = write_rows(tmp_path / "pairs.jsonl", 12)
    code, _, err = run_cli(["build", str(src), *flags, "--dry-run"], capsys)
    assert code == 0 and f"Warning: {words}" in err
    code, _, err = run_cli(["build", str(src), "--dry-run"], capsys)
    assert code == 0 and "changes nothing" not in err


def test_a_job_that_scores_no_row_says_so_and_verify_names_a_generated_set(tmp_path, capsys):
    out = build_set(tmp_path / "s", n=8)
    model = str(tiny_model_path())
    code, _, err = run_cli(["reflogps", str(out), "--model", model, "--device", "cpu", "--max-length", "2"], capsys)
    assert code == 0 and "Warning: no row was scored" in err
    generated = tmp_path / "g.jsonl"
    _jsonl(generated, [{"prompt": f"write about {i}"} for i in range(3)])
    gen = tmp_path / "gen"
    args = ["generate", str(generated), "--model", model, "-n", "1", "--max-new-tokens", "4", "--device", "cpu"]
    assert run_cli([*args, "-o", str(gen)], capsys)[0] == 0
    code, _, err = run_cli(["verify", str(gen), "--model", model, "--device", "cpu"], capsys)
    _one_error(code, err, "prompts with completions", "prefkit build")
    assert "score it first" not in err


@pytest.mark.parametrize(
    "command",
    [["reflogps", "--model", "m"], ["score", "--reward-model", "m"], ["verify"], ["stats"], ["report"]],
)
def test_a_file_where_a_set_folder_goes_is_one_error_with_a_hint(tmp_path, capsys, command):
    """click's own check ("Directory ... is a file", a usage error, no Hint) no longer runs before prefkit's."""
    src = write_rows(tmp_path / "pairs.jsonl", 4)
    code, _, err = run_cli([command[0], str(src), *command[1:]], capsys)
    _one_error(code, err, "is not a folder", "prefkit build -o OUT")
    assert code == 1 and "Usage:" not in err
