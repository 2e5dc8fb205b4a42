"""Trust: no secret or machine detail leaves the machine, the output folder never destroys what prefkit did not
make, whatever prefkit writes loads, a split reads only its own files, and the summary hides nothing."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from prefkit import build
from prefkit.errors import OutputError

GOOD = [
    {"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "delta_score": 1.0 + i}
    for i in range(6)
]
TOKEN = "hf_FAKE123"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def cli(args: list[str], cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prefkit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def everything_under(folder: Path) -> str:
    return "".join(p.read_bytes().decode("latin1") for p in folder.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------------ secrets


@pytest.mark.parametrize("token_args", [["--token", TOKEN], [f"--token={TOKEN}"]])
def test_tokens_are_never_recorded_printed_or_pushed(tmp_path, hub, token_args):
    src = write_jsonl(tmp_path / "data.jsonl", GOOD)
    out = tmp_path / "out"
    proc = cli(["build", str(src), "-o", str(out), *token_args, "--json"])
    assert proc.returncode == 0, proc.stderr
    assert TOKEN not in everything_under(out) and TOKEN not in proc.stdout + proc.stderr
    manifest = json.loads((out / "prefkit.json").read_text())
    assert "--token" in manifest["command"] and "***" in manifest["command"]
    dry = cli(["push", str(out), hub.unique_id("me/secret"), "--dry-run"])
    assert dry.returncode == 0 and TOKEN not in dry.stdout + dry.stderr
    repo = hub.unique_id("me/secret")
    pushed = cli(["push", str(out), repo])
    assert pushed.returncode == 0, pushed.stderr
    assert all(TOKEN.encode() not in hub.read_file(repo, f) for f in hub.list_files(repo))


def test_the_environment_token_is_masked_wherever_it_appears(tmp_path):
    from prefkit.secrets import redact, redact_argv

    os.environ["HF_TOKEN"], before = "sekrit-value-42", os.environ["HF_TOKEN"]
    try:
        assert redact("failed for sekrit-value-42 at /x") == "failed for *** at /x"
        assert redact_argv(["build", "--token", "abc", "--api-key=k", "x.jsonl"]) == [
            "build",
            "--token",
            "***",
            "--api-key=***",
            "x.jsonl",
        ]
        assert redact("use hf_AbCdEf1234567890 please") == "use *** please"
        assert redact("hf_hub_download and hf_datasets stay") == "hf_hub_download and hf_datasets stay"
    finally:
        os.environ["HF_TOKEN"] = before


def test_push_names_local_models_and_sources_by_their_folder_name(tmp_path, hub):
    from prefkit.publish.public import public_manifest

    src = write_jsonl(tmp_path / "deep" / "data.jsonl", GOOD)
    out = tmp_path / "out"
    build(str(src), out, command=f"prefkit build {src} -o {out}")
    manifest = json.loads((out / "prefkit.json").read_text())
    manifest["reflogps"] = {
        "model": str(tmp_path / "models" / "my-sft"),
        "model_source": "local",
        "model_path": str(tmp_path / "models" / "my-sft"),
        "command": f"prefkit reflogps {out} --model {tmp_path}/models/my-sft",
        "max_length": 64,
    }
    public = json.dumps(public_manifest(manifest))
    assert str(tmp_path) not in public
    assert '"model": "my-sft"' in public and "data.jsonl" in public
    assert manifest["sources"][0]["source"] == "data.jsonl"  # the source column never held the full path


# ------------------------------------------------------------------------------------------------ the output folder


def test_output_never_destroys_a_source_or_a_folder_prefkit_did_not_write(tmp_path):
    d = tmp_path / "d"
    good = write_jsonl(d / "good.jsonl", GOOD)
    proc = cli(["build", str(good), "-o", str(d), "--overwrite"])
    assert proc.returncode == 1 and "contains the source" in proc.stderr and good.exists()
    proc = cli(["build", "good.jsonl", "-o", ".", "--overwrite"], cwd=d)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and good.exists()
    proc = cli(["build", str(d), "-o", str(d / "inside")])
    assert proc.returncode == 1 and "lies inside the source" in proc.stderr
    other = tmp_path / "notes"
    (other / "keep.txt").parent.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a prefkit output folder") as err:
        build(str(good), other, overwrite=True)
    assert "never deletes" in err.value.hint and (other / "keep.txt").read_text() == "mine"
    build(str(good), tmp_path / "set")
    build(str(good), tmp_path / "set", overwrite=True)  # a prefkit folder is replaced


def test_a_folder_source_skips_prefkit_output_inside_it(tmp_path):
    src = tmp_path / "src"
    write_jsonl(src / "train.jsonl", GOOD)
    first = build(str(src), tmp_path / "elsewhere")
    shutil.copytree(tmp_path / "elsewhere", src / "out")  # e.g. an earlier build written into the source
    again = build(str(src), tmp_path / "again")
    assert again.manifest["splits"] == first.manifest["splits"]
    assert any("skipped prefkit output folder" in w and "out" in w for w in again.warnings)


def test_a_prefkit_set_as_source_keeps_its_extra_columns_and_their_provenance(tmp_path):
    import pyarrow as pa

    from prefkit.output import write_manifest, write_parquet

    out = build(write_jsonl(tmp_path / "a.jsonl", GOOD), tmp_path / "scored").output
    shard = next((out / "data").glob("*.parquet"))
    table = pq.read_table(shard)
    table = table.append_column("ref_chosen_logps", pa.array([-1.5 * i for i in range(6)], pa.float32()))
    table = table.append_column("ref_rejected_logps", pa.array([-2.5 * i for i in range(6)], pa.float32()))
    write_parquet(table, shard)
    manifest = json.loads((out / "prefkit.json").read_text())
    manifest["reflogps"] = {"model": "m", "max_length": 64}
    write_manifest(out, manifest)
    top = build(str(out), tmp_path / "top2", top=2)
    (kept,) = top.splits.values()
    assert kept.column_names[-2:] == ["ref_chosen_logps", "ref_rejected_logps"]
    assert kept.column("ref_chosen_logps").to_pylist() == [
        -7.5,
        -6.0,
    ]  # the two largest margins, their own values
    assert kept.schema.field("ref_chosen_logps").type == pa.float32()
    assert top.manifest["reflogps"] == {"model": "m", "max_length": 64}


def test_what_a_killed_run_left_is_cleaned_and_files_follow_the_umask(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", GOOD)
    dead = 2**22 + 12345  # above any pid this test machine hands out
    stale = [tmp_path / f".out.stage-{dead}-deadbeef", tmp_path / f".out.old-{dead}-feedf00d"]
    for folder in stale:
        folder.mkdir()
        (folder / "big.parquet").write_bytes(b"x" * 1000)
    mine = tmp_path / f".out.stage-{os.getpid()}-0badcafe"  # a live process's: left alone
    mine.mkdir()
    old = os.umask(0o022)
    try:
        out = build(str(src), tmp_path / "out").output
    finally:
        os.umask(old)
    assert not any(p.exists() for p in stale) and mine.exists()
    (shard,) = (out / "data").glob("train-*.parquet")
    for name in ("README.md", "prefkit.json", f"data/{shard.name}"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name


# ------------------------------------------------------------------------------------------------ it loads


def test_an_empty_split_refuses_the_build_naming_it(tmp_path):
    """One rule for empty results (docs/cli.md, "Empty results"): exit code 4, nothing written, the split and
    its reasons on stderr; --dry-run says the same as a warning."""
    src = tmp_path / "src"
    write_jsonl(src / "train.jsonl", GOOD)
    write_jsonl(src / "test.jsonl", [{**r, "rejected": r["chosen"]} for r in GOOD[:2]])  # all identical
    proc = cli(["build", str(src), "-o", str(tmp_path / "out"), "--json"])
    assert proc.returncode == 4, proc.stderr
    assert "Error: split 'test' kept no row (2 read: identical 2)" in proc.stderr
    assert json.loads(proc.stdout)["exit_code"] == 4
    assert not (tmp_path / "out").exists()
    proc = cli(["build", str(src), "--dry-run", "--json"])
    assert proc.returncode == 0 and "Warning: split 'test' kept no row" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["splits"]["test"]["kept"] == 0 and any("'test'" in w for w in summary["warnings"])


def test_load_dataset_of_a_rebuilt_folder_reads_the_new_rows(tmp_path):
    """``datasets`` caches a local folder under a hash of its card: a rebuild with other rows of the very same
    size must still change the card, or load_dataset(OUT) returns the old rows."""
    src = write_jsonl(tmp_path / "a.jsonl", GOOD)
    build(str(src), tmp_path / "out")
    assert (
        datasets.load_dataset(str(tmp_path / "out"))["train"][0]["chosen"][0]["content"] == GOOD[0]["chosen"]
    )
    same_size = [{**r, "chosen": r["chosen"].replace("good", "fine")} for r in GOOD]
    build(str(write_jsonl(tmp_path / "a.jsonl", same_size)), tmp_path / "out", overwrite=True)
    assert datasets.load_dataset(str(tmp_path / "out"))["train"][0]["chosen"][0]["content"] == "fine 0"
    # a folder of the same name elsewhere is another set too
    other = tmp_path / "elsewhere" / "out"
    build(str(write_jsonl(tmp_path / "b.jsonl", GOOD[:2])), other)
    assert datasets.load_dataset(str(other))["train"].num_rows == 2


def test_a_build_that_keeps_nothing_says_so(tmp_path):
    src = write_jsonl(tmp_path / "same.jsonl", [{**r, "rejected": r["chosen"]} for r in GOOD])
    proc = cli(["build", str(src), "-o", str(tmp_path / "out"), "--json"])
    assert proc.returncode == 4
    assert "Error: no row was kept: 6 read, 6 dropped, 0 invalid (identical 6)" in proc.stderr
    assert not (tmp_path / "out").exists()
    proc = cli(["build", str(src), "--dry-run", "--json"])
    assert proc.returncode == 0
    assert "Warning: no row was kept: 6 read, 6 dropped, 0 invalid (identical 6)" in proc.stderr
    assert json.loads(proc.stdout)["warnings"][0].startswith("no row was kept")


def test_summary_shows_added_rows_and_what_an_export_wrote(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", GOOD[:2])
    proc = cli(["build", f"{src}:5", "--export", "kto", "-o", str(tmp_path / "kto"), "--json"])
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (
        summary["totals"]["added"] == {"upsampled": 3} and summary["export"]["splits"]["train"]["rows"] == 4
    )
    header = next(line for line in proc.stderr.splitlines() if line.startswith("split"))
    assert header.split()[-1] == "added"
    assert "export kto: 4 rows written from 5 kept pairs" in proc.stderr


# ------------------------------------------------------------------------------------------------ little is little


def test_one_split_reads_only_its_files_and_detect_reads_a_sample(tmp_path, hub):
    import io

    import pyarrow as pa

    repo = hub.unique_id("me/two-splits")
    files = {}
    for split, n in (("train_prefs", 50), ("test_prefs", 5)):
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(GOOD * (n // 5)), buf)
        files[f"data/{split}-00000-of-00001.parquet"] = buf.getvalue()
    hub.create_dataset_repo(repo, files)
    before = len(hub.requests)
    result = build(repo, split="test_prefs")
    assert list(result.splits) == ["test_prefs"] and result.manifest["totals"]["read"] == 6
    fetched = [path for _, path in hub.requests[before:] if path.endswith(".parquet")]
    assert fetched and not any("train_prefs" in path for path in fetched), fetched
    from prefkit.pipeline import detect_source

    report = detect_source(repo, sample=3)
    assert {s: r["rows"] for s, r in report["splits"].items()} == {"train_prefs": 3, "test_prefs": 3}
