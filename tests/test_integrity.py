"""Nothing lost, nothing destroyed, nothing stale: `build --overwrite` keeps what prefkit did not write, readers
read the files the manifest lists and check them against its counts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from prefkit import build
from prefkit.errors import OutputError
from prefkit.output.folder import foreign_files


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
