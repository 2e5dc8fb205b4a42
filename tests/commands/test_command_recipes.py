"""Recipes for the model commands (`reflogps`, `score`, `verify`, `generate`): ``--recipe FILE`` and
``<Options>.from_file`` read a YAML/JSON file of the command's options (its ``<command>:`` section, or the whole
file), flags typed win, a flag the command needs may come from the file, and one file can hold build's recipe
beside the commands' sections."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from prefkit import build
from prefkit.commands.flags import COMMANDS
from prefkit.errors import OptionError
from prefkit.generate.options import GenerateOptions
from prefkit.optionspec import RECIPE_SECTIONS
from prefkit.reflogps import job
from prefkit.reflogps.options import ReflogpsOptions, VerifyOptions
from prefkit.rewards.options import ScoreOptions
from tests.reflogps_data import build_set, run_cli
from tests.tinymodel import tiny_model_path

REF = ["ref_chosen_logps", "ref_rejected_logps", "chosen_tokens", "rejected_tokens"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return build_set(tmp_path_factory.mktemp("built"), n=12)


@pytest.fixture
def fresh(built, tmp_path) -> Path:
    out = tmp_path / "set"
    shutil.copytree(built, out)
    return out


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data) if path.suffix == ".json" else yaml.safe_dump(data))
    return path


def values(out: Path) -> dict[str, list]:
    table = pq.read_table(sorted((out / "data").glob("*.parquet")))
    return {c: table.column(c).to_pylist() for c in REF}


def manifest(out: Path) -> dict:
    return json.loads((out / "prefkit.json").read_text())


def test_reflogps_recipe_gives_the_values_of_the_same_flags_and_typed_flags_win(built, tmp_path, capsys):
    by_flags, by_recipe = tmp_path / "flags", tmp_path / "recipe"
    shutil.copytree(built, by_flags)
    shutil.copytree(built, by_recipe)
    model = str(tiny_model_path())
    code, _, err = run_cli(
        ["reflogps", str(by_flags), "--model", model, "--max-length", "64", "--shard-rows", "5", "--device", "cpu"],
        capsys,
    )
    assert code == 0, err
    recipe = write(tmp_path / "ref.yaml", {"model": model, "max_length": 32, "shard_rows": 5, "device": "cpu"})
    code, out, err = run_cli(["reflogps", str(by_recipe), "--recipe", str(recipe), "--max-length", "64", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["shards"]["total"] == 3  # 12 rows in shards of 5: the recipe's shard_rows
    recorded = manifest(by_recipe)["reflogps"]
    assert recorded["max_length"] == 64 and recorded["model"] == model  # the typed flag won over the file's 32
    assert values(by_recipe) == values(by_flags)


def test_a_needed_flag_may_come_from_the_recipe_and_is_still_needed_without_it(fresh, tmp_path, capsys):
    recipe = write(tmp_path / "r.yaml", {"max_length": 64})
    code, _, err = run_cli(["reflogps", str(fresh), "--recipe", str(recipe)], capsys)
    assert code == 2 and "Missing option '-m' / '--model'" in err
    assert "Give it, or `model:` in a --recipe file (its `reflogps:` section or the whole file)" in err
    code, _, err = run_cli(["reflogps", str(fresh), "--recipe", ""], capsys)  # an empty name is not "no recipe"
    assert code == 1 and "Error: the recipe's file name is empty" in err
    code, _, err = run_cli(["reflogps", str(fresh)], capsys)
    assert code == 2 and "Missing option '-m' / '--model'" in err
    assert not (fresh / ".reflogps-work").exists()


def test_python_from_file_then_keywords_win(fresh, tmp_path):
    recipe = write(tmp_path / "r.json", {"model": str(tiny_model_path()), "max_length": 32, "device": "cpu"})
    options = ReflogpsOptions.from_file(recipe)
    assert options.given() == {"model": str(tiny_model_path()), "max_length": 32, "device": "cpu"}
    result = job.reflogps(fresh, options=options, max_length=48)  # the model from the file, no positional
    assert result.pairs == 12 and manifest(fresh)["reflogps"]["max_length"] == 48
    with pytest.raises(OptionError, match="no reference model"):
        job.reflogps(fresh, options=ReflogpsOptions.from_file(write(tmp_path / "m.yaml", {"max_length": 8})))


def test_one_file_holds_the_build_recipe_and_each_commands_section(tmp_path):
    source = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "delta_score": i % 4} for i in range(9)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = write(
        tmp_path / "project.yaml",
        {
            "sources": [str(source)],
            "filters": {"min_margin": 1},
            "reflogps": {"model": "./sft", "max_length": 2048, "dtype": "bfloat16"},
            "score": {"reward_model": "./rm", "token_budget": 4096},
            "verify": {"sample": 16, "atol": 0.01},
            "generate": {"model": ["./a", "./b"], "n": 4, "output": "gen"},
        },
    )
    result = build(None, tmp_path / "out", recipe=recipe)
    assert result.splits["train"].num_rows == 6  # the build read its sources and filters; the sections are the commands'
    assert ReflogpsOptions.from_file(recipe).given() == {"model": "./sft", "max_length": 2048, "dtype": "bfloat16"}
    assert ScoreOptions.from_file(recipe).given() == {"reward_model": "./rm", "token_budget": 4096}
    assert VerifyOptions.from_file(recipe).given() == {"sample": 16, "atol": 0.01}
    generate = GenerateOptions.from_file(recipe)
    assert generate.model == ("./a", "./b") and generate.n == 4 and str(generate.output) == "gen"
    assert set(RECIPE_SECTIONS) == set(COMMANDS)  # every model command has a section, and only those


@pytest.mark.parametrize(
    ("data", "message", "hint"),
    [
        ({"max_length": 64, "no_such": 1}, "unknown option(s) no_such", "the options of `prefkit reflogps`'s flags"),
        ({"command": "x", "progress": False}, "unknown option(s) command, progress", "flags: model, revision"),
        ({"prefkit_version": "0.3.0", "recipe": {}, "reflogps": {}}, "is a set's manifest", "rebuilds a set"),
        ({"lease_seconds": "abc"}, "--lease-seconds", "docs/cli.md"),
        ({"max-length": 64}, "options are written with underscores, got 'max-length'", "write 'max_length'"),
        ({"shard_rows": 0}, "--shard-rows", "docs/cli.md"),
        ({"sources": ["a.jsonl"], "score": {"token_budget": 8}}, "has no `reflogps:` section", "add a `reflogps:`"),
        ({"reflogps": ["--model", "x"]}, "`reflogps:` in recipe", "write the reflogps options under it"),
        (["model", "x"], "is not a mapping (it holds a list)", "as a mapping"),
        (None, "is empty", "as a mapping"),
    ],
)
def test_a_bad_recipe_is_one_error_naming_the_file(fresh, tmp_path, capsys, data, message, hint):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("" if data is None else yaml.safe_dump(data))
    code, out, err = run_cli(["reflogps", str(fresh), "--model", "m", "--recipe", str(recipe)], capsys)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 2 and not out, err
    assert lines[0].startswith("Error: ") and message in lines[0] and str(recipe) in lines[0]
    assert lines[1].startswith("Hint: ") and hint in lines[1]
    assert "Traceback" not in err and not (fresh / ".reflogps-work").exists()


def test_a_missing_or_broken_recipe_file_says_so(fresh, tmp_path, capsys):
    code, _, err = run_cli(["reflogps", str(fresh), "--recipe", str(tmp_path / "nope.yaml")], capsys)
    assert code == 1 and "cannot read recipe" in err and "Hint: pass a YAML or JSON recipe file" in err
    broken = tmp_path / "broken.json"
    broken.write_text("{model: ")
    code, _, err = run_cli(["score", str(fresh), "--recipe", str(broken)], capsys)
    assert code == 1 and "is not valid" in err and "check its YAML/JSON syntax" in err


def test_verify_and_score_read_their_sections(built, tmp_path, capsys):
    out = tmp_path / "set"
    shutil.copytree(built, out)
    job.reflogps(out, str(tiny_model_path()), max_length=64, device="cpu")
    recipe = write(tmp_path / "r.yaml", {"verify": {"sample": 5, "seed": 3, "device": "cpu"}})
    code, text, err = run_cli(["verify", str(out), "--recipe", str(recipe), "--json"], capsys)
    assert code == 0, err
    report = json.loads(text)
    assert report["rows_checked"] == 5 and report["seed"] == 3 and report["ok"]
    code, _, err = run_cli(["score", str(out), "--recipe", str(recipe)], capsys)
    assert code == 1 and "has no `score:` section (its command sections: `verify:`)" in err


def test_build_warns_of_what_a_commands_section_holds_wrong_and_builds(tmp_path, capsys):
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps({"prompt": f"p{i}", "chosen": "a", "rejected": "b"}) + "\n" for i in range(3)))
    recipe = write(
        tmp_path / "project.yaml",
        {"sources": [str(source)], "reflogps": {"max_lenght": 8}, "verify": 3, "score": {"token_budget": 64}},
    )
    code, _, err = run_cli(["build", "--recipe", str(recipe), "-o", str(tmp_path / "out")], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 2, err  # score's section is right
    assert "unknown option(s) max_lenght" in warnings[0] and "`prefkit reflogps --recipe` will refuse it" in warnings[0]
    assert "`verify:` in recipe" in warnings[1] and "is not a mapping" in warnings[1]
    assert (tmp_path / "out" / "prefkit.json").exists()
