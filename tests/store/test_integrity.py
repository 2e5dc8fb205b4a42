"""Nothing lost, nothing destroyed, nothing stale: `build --overwrite` keeps what prefkit did not write, readers
read the files the manifest lists and check them against its counts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from prefkit import build
from prefkit.errors import OutputError
from prefkit.store.folder import foreign_files


def write_jsonl(path: Path, n: int, tag: str = "q") -> Path:
    rows = [
        {"prompt": f"{tag} question {i}?", "chosen": f"good answer {i}", "rejected": f"bad {i}", "score": i}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------ build --overwrite keeps user files


def test_overwrite_keeps_files_prefkit_did_not_write(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", 8)
    out = tmp_path / "out"
    build(src, out)
    (out / "notes.txt").write_text("my notes")
    (out / "checkpoints" / "step-10").mkdir(parents=True)
    (out / "checkpoints" / "step-10" / "model.bin").write_bytes(b"weights")
    (out / "empty").mkdir()
    (out / "data" / "my_handmade.parquet").write_bytes(b"PAR1")
    assert foreign_files(out) == [
        "checkpoints/step-10/model.bin", "data/my_handmade.parquet", "empty/", "notes.txt",
    ]  # fmt: skip
    result = build(write_jsonl(tmp_path / "b.jsonl", 5, "other"), out, overwrite=True)
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "checkpoints" / "step-10" / "model.bin").read_bytes() == b"weights"
    assert (out / "empty").is_dir() and (out / "data" / "my_handmade.parquet").is_file()
    assert any("kept 4 file(s)" in w and "notes.txt" in w for w in result.warnings)
    assert json.loads((out / "prefkit.json").read_text())["splits"]["train"]["kept"] == 5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_overwrite_refuses_naming_a_user_file_the_new_set_would_replace(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", 8)
    out = tmp_path / "out"
    build(src, out)
    (out / "dataset_info.json").write_text("{}")  # a user's, where an llamafactory export writes its own
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(OutputError, match=r"dataset_info\.json") as err:
        build(src, out, overwrite=True, export="llamafactory")
    assert "never deletes what it did not write" in err.value.hint
    assert sorted(p.name for p in out.rglob("*")) == before
    assert (out / "dataset_info.json").read_text() == "{}"


def test_overwrite_drops_prefkit_files_and_work_folders(tmp_path):
    """Stale shards, rejects of old splits, an export's own files and job work folders are prefkit's."""
    src = write_jsonl(tmp_path / "a.jsonl", 8)
    out = tmp_path / "out"
    build(src, out, export="llamafactory", test_size=0.25)
    (out / ".reflogps-work").mkdir()
    (out / ".reflogps-work" / "settings.json").write_text("{}")
    stale = out / "data" / "train-00000-of-00002-0123456789abcdef.parquet"
    shutil.copy(next((out / "data").glob("train-*.parquet")), stale)
    assert foreign_files(out) == []
    build(src, out, overwrite=True)
    assert not (out / "dataset_info.json").exists() and not (out / ".reflogps-work").exists()
    assert not stale.exists() and not (out / "rejects" / "test.parquet").exists()


# ------------------------------------------------------------------ readers read what the manifest lists


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows


@pytest.fixture
def stale_copy(tmp_path) -> Path:
    """A copy of a 70-row set updated with an `--overwrite` rebuild of 20 rows by a copy that does not delete
    (`rsync` without `--delete`): the 70-row shard is still in data/."""
    out, copy = tmp_path / "out", tmp_path / "copy"
    build(write_jsonl(tmp_path / "a.jsonl", 70), out)
    shutil.copytree(out, copy)
    build(write_jsonl(tmp_path / "b.jsonl", 20, "new"), out, overwrite=True)
    shutil.copytree(out, copy, dirs_exist_ok=True)
    assert len(list((copy / "data").glob("*.parquet"))) == 2
    return copy


def test_stale_shard_is_not_read_and_is_named(stale_copy, capsys):
    from prefkit.output import read_output
    from prefkit.output.stats import compute_stats

    folder = read_output(stale_copy)
    assert sum(_rows(p) for p in folder.shards["train"]) == 20
    assert len(folder.warnings) == 1 and "not listed in prefkit.json" in folder.warnings[0]
    stats = compute_stats(stale_copy)
    assert stats["splits"]["train"]["rows"] == 20
    assert "not listed in prefkit.json" in capsys.readouterr().err


def test_stale_shard_is_not_pushed(stale_copy, hub):
    from prefkit.publish.hub import push

    with pytest.warns(UserWarning, match="not listed"):
        result = push(stale_copy, hub.unique_id("me/stale"), dry_run=True)
    data = [f["path"] for f in result.files if f["path"].startswith("data/")]
    listed = json.loads((stale_copy / "prefkit.json").read_text())["splits"]["train"]["files"]
    assert data == listed


def test_stale_shard_is_not_merged(stale_copy):
    from prefkit.reflogps import job
    from tests.tinymodel import tiny_model_path

    stale = [p for p in (stale_copy / "data").glob("*.parquet") if _rows(p) == 70]
    job.reflogps(stale_copy, str(tiny_model_path()), max_length=96, device="cpu")
    manifest = json.loads((stale_copy / "prefkit.json").read_text())
    (listed,) = manifest["splits"]["train"]["files"]
    assert _rows(stale_copy / listed) == 20
    assert stale[0].is_file() and _rows(stale[0]) == 70  # left as it was, not renamed into the set


def _cut(path: Path, rows: int) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    pq.write_table(table.slice(0, rows), path)


@pytest.mark.parametrize("tamper", ["cut", "kept", "missing"])
def test_tampered_set_is_refused_by_every_reader(tamper, tmp_path, hub):
    """A data file cut from 30 to 5 rows, a manifest edited to `kept: 999`, a listed file gone: stats,
    reflogps, score and push refuse with a hint (nothing is computed or published)."""
    from prefkit.output.stats import compute_stats
    from prefkit.publish.hub import push
    from prefkit.reflogps import job
    from prefkit.rewards import score

    out = tmp_path / "out"
    build(write_jsonl(tmp_path / "a.jsonl", 30), out)
    manifest = json.loads((out / "prefkit.json").read_text())
    (shard,) = manifest["splits"]["train"]["files"]
    if tamper == "cut":
        _cut(out / shard, 5)
        expected = "has 5 rows in its data files, but prefkit.json says 30"
    elif tamper == "kept":
        manifest["splits"]["train"]["kept"] = 999
        (out / "prefkit.json").write_text(json.dumps(manifest))
        expected = "has 30 rows in its data files, but prefkit.json says 999"
    else:
        (out / shard).unlink()
        expected = "lacks data files its prefkit.json lists"
    calls = [
        lambda: compute_stats(out),
        lambda: job.reflogps(out, "unused-model", device="cpu"),
        lambda: score.score(out, "unused-model", device="cpu"),
        lambda: push(out, hub.unique_id("me/tampered"), dry_run=True),
    ]
    for call in calls:
        with pytest.raises(OutputError, match=expected) as err:
            call()
        assert "rebuild" in err.value.hint


def test_counts_that_do_not_add_up_are_refused(tmp_path):
    from prefkit.output import read_output

    out = tmp_path / "out"
    build(write_jsonl(tmp_path / "a.jsonl", 12), out)
    manifest = json.loads((out / "prefkit.json").read_text())
    manifest["splits"]["train"]["read"] = 40
    (out / "prefkit.json").write_text(json.dumps(manifest))
    with pytest.raises(OutputError, match="do not add up"):
        read_output(out)


# ------------------------------------------------------------------------------------ empty results


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    from tests.reflogps_data import run_cli

    return run_cli(args, capsys)


def test_header_only_csv_refuses_with_exit_code_4(tmp_path, capsys):
    src = tmp_path / "pairs.csv"
    src.write_text("prompt,chosen,rejected\n")
    out = tmp_path / "out"
    code, _, err = _cli(["build", str(src), "-o", str(out)], capsys)
    assert code == 4
    assert "no row was read" in err and "nothing was written" in err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["pairs.csv"]


def test_filter_dropping_every_row_refuses_and_keeps_the_old_set(tmp_path, capsys):
    src = write_jsonl(tmp_path / "a.jsonl", 6)
    out = tmp_path / "out"
    build(src, out)
    before = (out / "prefkit.json").read_text()
    code, stdout, err = _cli(
        ["build", str(src), "-o", str(out), "--overwrite", "--margin-col", "score", "--min-margin", "1000",
         "--json"],
        capsys,
    )  # fmt: skip
    assert code == 4
    assert "no row was kept: 6 read, 6 dropped" in err and "(below_min_margin 5, tie 1)" in err
    assert json.loads(stdout)["exit_code"] == 4
    assert (out / "prefkit.json").read_text() == before
    code, _, err = _cli(
        ["build", str(src), "--dry-run", "--margin-col", "score", "--min-margin", "1000", "-q"], capsys
    )
    assert code == 0 and "Warning: no row was kept" in err


def test_a_split_emptied_by_a_filter_is_named(tmp_path, capsys):
    """The source's train split keeps rows, its test split none: the split does not vanish in silence."""
    from prefkit.errors import EmptyResultError

    folder = tmp_path / "src"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", 5)
    (folder / "test.jsonl").write_text(
        "".join(
            json.dumps({"prompt": f"q{i}", "chosen": "same", "rejected": "same"}) + "\n" for i in range(4)
        )
    )
    with pytest.raises(EmptyResultError, match=r"split 'test' kept no row \(4 read: identical 4\)") as err:
        build(folder, tmp_path / "out")
    assert err.value.exit_code == 4
    assert not (tmp_path / "out").exists()
    result = build(folder)  # no output folder: a warning
    assert any("split 'test' kept no row" in w for w in result.warnings)


# -------------------------------------------------------------------- a rebuild reads the same input


def test_rebuild_from_the_manifest_reads_the_same_local_input(tmp_path, monkeypatch, capsys):
    """Local sources are recorded with their size and SHA-256, by a path relative to OUT; a rebuild from the
    manifest, from any working folder, refuses when a file changed (one appended line, or an edit of the same
    size), and with --allow-changed-sources builds and says what differs."""
    from prefkit.errors import SourceError

    (tmp_path / "data").mkdir()
    src = write_jsonl(tmp_path / "data" / "pairs.jsonl", 9)
    out = tmp_path / "sets" / "out"
    build(src, out)
    entry = json.loads((out / "prefkit.json").read_text())["recipe"]["sources"][0]
    assert entry["source"] == "../../data/pairs.jsonl"
    assert entry["files"]["pairs.jsonl"]["size"] == src.stat().st_size
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    build(recipe_file=out / "prefkit.json", output=tmp_path / "again")
    ids = [_ids(o) for o in (out, tmp_path / "again")]
    assert ids[0] == ids[1] and len(ids[0]) == 9
    size = src.stat().st_size
    with src.open("a") as f:
        f.write(json.dumps({"prompt": "extra", "chosen": "a", "rejected": "b", "score": 1}) + "\n")
    with pytest.raises(SourceError, match=rf"pairs.jsonl: {size:,} → ") as err:
        build(recipe_file=out / "prefkit.json", output=tmp_path / "changed")
    assert "--allow-changed-sources" in err.value.hint and not (tmp_path / "changed").exists()
    lines = src.read_text().splitlines()[:-1]  # back to the recorded size, with other content
    src.write_text("\n".join(lines).replace("good answer 3", "good answer 4") + "\n")
    with pytest.raises(SourceError, match="other content, same size"):
        build(recipe_file=out / "prefkit.json", output=tmp_path / "changed")
    code, _, stderr = _cli(
        ["build", "--recipe", str(out / "prefkit.json"), "-o", str(tmp_path / "changed"),
         "--allow-changed-sources", "-q"],
        capsys,
    )  # fmt: skip
    assert code == 0 and "differs from the recipe (built anyway): pairs.jsonl: other content" in stderr


def _ids(out: Path) -> list[str]:
    import pyarrow.parquet as pq

    return [
        i for p in sorted((out / "data").glob("*.parquet")) for i in pq.read_table(p).column("id").to_pylist()
    ]


def test_recipe_sources_are_read_relative_to_the_recipe(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    write_jsonl(folder / "ours.jsonl", 4)
    (folder / "mix.yaml").write_text("sources:\n  - ./ours.jsonl\n")
    monkeypatch.chdir(tmp_path)  # not the recipe's folder
    result = build(recipe_file=folder / "mix.yaml", output=tmp_path / "out")
    assert result.manifest["splits"]["train"]["kept"] == 4


def test_built_in_eval_set_revision_is_recorded(tmp_path, hub):
    """--decontaminate with a built-in eval set reads it at the Hub commit it records in the manifest, and a
    rebuild from the manifest reads that commit again."""
    from prefkit.select.evalsets import evalset_presets

    repo = evalset_presets()["mt-bench"]["hub_id"]
    if ("dataset", repo) not in hub.repos:
        hub.add_datasetdict(repo, {"train": [{"prompt": ["good answer 1 question"]}]})
    src = write_jsonl(tmp_path / "a.jsonl", 4)
    result = build(src, tmp_path / "out", decontaminate=["mt-bench"])
    (entry,) = result.manifest["decontamination"]["sets"]
    first = hub.get_repo(repo).refs["main"]
    assert entry["revision"] == first and len(first) == 40
    assert result.manifest["recipe"]["select"]["decontaminate"] == [f"mt-bench@{first}"]
    hub.add_commit(repo, {"README.md": "a later commit"})  # the eval set moves on
    again = build(recipe_file=tmp_path / "out" / "prefkit.json", output=tmp_path / "again")
    assert again.manifest["decontamination"]["sets"][0]["revision"] == first  # read where the first build read
    assert hub.get_repo(repo).refs["main"] != first
