"""Options as data: BuildOptions, recipes (YAML/JSON and a manifest), flags that override them, and the rebuild
of a set from its own prefkit.json (same rows, ids and order, from the same source revisions)."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from prefkit import BuildOptions, build
from prefkit.cli import cli
from prefkit.errors import OptionError
from prefkit.options import GROUP_OF, load_recipe


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def flat(n, prefix="p", margin=lambda i: 1.0 + i % 3, dup_every=0):
    rows = []
    for i in range(n):
        k = i - 1 if dup_every and i % dup_every == 0 and i else i
        rows.append(
            {
                "prompt": f"{prefix}{k}",
                "chosen": f"good {prefix}{k}",
                "rejected": f"bad {prefix}{k}",
                "delta_score": margin(k),
            }
        )
    return rows


def folder_rows(out):
    data = pa.concat_tables([pq.read_table(p) for p in sorted((out / "data").glob("*.parquet"))])
    return data.to_pylist()


def same_set(a, b):
    """Rows (ids, order, content), rejects and counts of two output folders are equal."""
    assert folder_rows(a) == folder_rows(b)
    for name in sorted(p.name for p in (a / "rejects").glob("*.parquet")):
        assert pq.read_table(a / "rejects" / name).equals(pq.read_table(b / "rejects" / name))
    ma, mb = (json.loads((x / "prefkit.json").read_text()) for x in (a, b))
    assert ma["splits"] == mb["splits"] and ma["recipe"] == mb["recipe"]


def test_options_one_name_everywhere():
    opts = BuildOptions.create(
        {"filters": {"min_margin": 1}}, top=5, pairs="all-pairs", system="override Be brief."
    )
    assert opts.filters.min_margin == 1 and opts.select.top == 5 and opts.formats.pairs == "all-pairs"
    assert (opts.formats.system, opts.formats.system_text) == ("override", "Be brief.")
    assert opts.flat() == {
        "min_margin": 1.0,
        "top": 5,
        "pairs": "all-pairs",
        "system": "override",
        "system_text": "Be brief.",
    }
    assert BuildOptions.create(opts.to_recipe()) == opts
    assert GROUP_OF["max_length"] == "filters" and GROUP_OF["export"] == "output"
    with pytest.raises(OptionError, match="unknown option 'min_margins'") as err:
        BuildOptions.create(min_margins=1)
    assert "min_margin" in err.value.hint
    with pytest.raises(OptionError, match=r"^top=\.\.\.: ") as err:
        BuildOptions.create(top=0)
    assert err.value.text("cli")[0].startswith("--top: ")
    with pytest.raises(OptionError, match=r"^export=\.\.\.: "):
        BuildOptions.create(export="no-such-trainer")
    with pytest.raises(OptionError, match="group 'select'"):
        BuildOptions.create({"select": {"min_margin": 1}})


def test_rebuild_from_manifest_is_identical(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", flat(30, "a", dup_every=7))
    b = write_jsonl(tmp_path / "b.jsonl", flat(20, "b", margin=lambda i: 10.0 * (i % 4)))
    first = tmp_path / "first"
    build([f"{a}:0.5", f"{b}:25"], first, dedup=True, test_size=0.2, seed=3, min_margin=1)
    again = tmp_path / "again"
    result = CliRunner().invoke(
        cli, ["build", "--recipe", str(first / "prefkit.json"), "-o", str(again), "-q"]
    )
    assert result.exit_code == 0, result.output
    same_set(first, again)


def test_yaml_recipe_with_three_sources_and_flag_override(tmp_path):
    files = [write_jsonl(tmp_path / f"{p}.jsonl", flat(12, p, margin=lambda i: 1.0 + i % 5)) for p in "xyz"]
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(
        "sources:\n"
        f"  - {{source: {files[0]}, weight: 0.5}}\n"
        f"  - {files[1]}:8\n"
        f"  - source: {files[2]}\n"
        "    weight: 2.0\n"
        "select:\n  dedup: true\n  seed: 1\n"
        "filters:\n  min_margin: 2\n"
    )
    sources, opts = load_recipe(recipe)
    assert len(sources) == 3 and opts.select.dedup and opts.filters.min_margin == 2
    by_flags = tmp_path / "flags"
    build([f"{files[0]}:0.5", f"{files[1]}:8", f"{files[2]}:2.0"], by_flags, dedup=True, seed=2, min_margin=2)
    by_recipe = tmp_path / "recipe"
    result = CliRunner().invoke(
        cli, ["build", "--recipe", str(recipe), "--seed", "2", "-o", str(by_recipe), "-q"]
    )
    assert result.exit_code == 0, result.output
    same_set(by_flags, by_recipe)  # --seed 2 on the command line overrode the recipe's seed 1
    manifest = json.loads((by_recipe / "prefkit.json").read_text())
    assert manifest["recipe"]["select"] == {"seed": 2, "dedup": True}


def test_bad_recipes_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    for text, needle in [
        ("sources: [a.jsonl]\nfilters: {min_margins: 1}\n", "unknown option 'min_margins'"),
        ("sources: a.jsonl\n", "`sources`"),
        ("sources: [{weight: 2}]\n", "a recipe source needs `source`"),
        ("sources: [x\n", "not valid"),
    ]:
        bad.write_text(text)
        result = CliRunner().invoke(cli, ["build", "--recipe", str(bad), "-o", str(tmp_path / "o")])
        assert result.exit_code == 1 and needle in str(result.exception), (text, result.exception)


def test_rebuild_reads_the_pinned_hub_revision(hub, tmp_path):
    repo = hub.unique_id("me/recipe-pin")
    rows = flat(6, "h")
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    hub.create_dataset_repo(repo, {"data/train-00000-of-00001.parquet": buf.getvalue()})
    first = tmp_path / "first"
    build(repo, first)
    manifest = json.loads((first / "prefkit.json").read_text())
    (entry,) = manifest["recipe"]["sources"]
    assert entry == {"source": repo, "revision": manifest["sources"][0]["sha"]}
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(flat(3, "new")), buf)
    hub.add_commit(repo, {"data/train-00000-of-00001.parquet": buf.getvalue()})  # main moves on
    again = tmp_path / "again"
    build(output=again, recipe_file=first / "prefkit.json")
    same_set(first, again)
    assert len(folder_rows(tmp_path / "again")) == 6
