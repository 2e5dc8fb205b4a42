"""prefkit build / detect on Hub ids, through the real `datasets` + `huggingface_hub` clients over HTTP
against the local test Hub (tests/hubserver.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import datasets
import pytest

from prefkit import build
from prefkit.errors import SourceError


def msgs(*turns):
    return [{"role": r, "content": c} for r, c in turns]


def uf_rows(n):
    return [
        {
            "prompt": f"question {i}",
            "prompt_id": f"id{i}",
            "chosen": msgs(("user", f"question {i}"), ("assistant", f"good answer {i}")),
            "rejected": msgs(("user", f"question {i}"), ("assistant", f"bad answer {i}")),
            "messages": msgs(("user", f"question {i}"), ("assistant", f"good answer {i}")),
            "score_chosen": 5.0 + i % 4,
            "score_rejected": 5.0,
        }
        for i in range(n)
    ]


def test_named_splits_top_and_pinned_revision(hub, tmp_path):
    repo = hub.unique_id("HuggingFaceH4/ultrafeedback_binarized")
    sha = hub.add_datasetdict(repo, {"train_prefs": uf_rows(12), "test_prefs": uf_rows(4)})
    res = build(repo, tmp_path / "uf", split="train_prefs", top=3)
    assert list(res.splits) == ["train_prefs"]
    c = res.manifest["splits"]["train_prefs"]
    assert (c["read"], c["kept"], c["dropped"]) == (12, 3, {"not_in_top": 6, "tie": 3})
    src = res.manifest["sources"][0]
    assert src["sha"] == sha and src["kind"] == "hub"
    rows = datasets.load_dataset(str(tmp_path / "uf"))["train_prefs"]
    assert rows[0]["source"] == f"{repo}@{sha}"
    assert [r["margin"] for r in rows] == [3.0, 3.0, 3.0]
    # a later commit does not change what an old revision reads
    hub.add_datasetdict(repo, {"train_prefs": uf_rows(2), "test_prefs": uf_rows(2)})
    assert build(repo, split="train_prefs", revision=sha).manifest["splits"]["train_prefs"]["read"] == 12
    # all splits by default
    assert set(build(repo).splits) == {"train_prefs", "test_prefs"}


def test_data_dir_transcripts_like_hh_rlhf(hub, tmp_path):
    repo = hub.unique_id("Anthropic/hh-rlhf")
    rows = [
        {
            "chosen": f"\n\nHuman: q{i}\n\nAssistant: yes {i}",
            "rejected": f"\n\nHuman: q{i}\n\nAssistant: no {i}",
        }
        for i in range(5)
    ]
    hub.add_json_files(repo, {"helpful-base/train.jsonl.gz": rows, "harmless-base/train.jsonl.gz": rows[:2]})
    res = build(repo, tmp_path / "hh", data_dir="helpful-base")
    assert res.manifest["splits"]["train"]["kept"] == 5
    assert res.manifest["sources"][0]["splits"]["train"]["format"]["family"] == "transcript"
    assert res.splits["train"].column("prompt").to_pylist()[0] == msgs(("user", "q0"))


def test_named_config(hub):
    repo = hub.unique_id("ns/configs")
    flat = [{"prompt": "p", "chosen": "c", "rejected": "r", "delta_score": 1.0}]
    hub.add_datasetdict(repo, {"train": flat}, config_name="small")
    hub.add_datasetdict(repo, {"train": flat * 3}, config_name="big")
    assert build(repo, config="big").manifest["splits"]["train"]["read"] == 3
    assert build(repo, config="small").manifest["sources"][0]["config"] == "small"


def test_missing_repo(hub):
    with pytest.raises(SourceError, match="was not found on the Hub") as err:
        build(hub.unique_id("nobody/nothing"))
    assert "was not found on the Hub" in err.value.message and "hf auth login" in err.value.hint


def test_private_repo_without_token_reads_as_missing_and_with_token_works(hub, monkeypatch):
    repo = hub.unique_id("me/private-pairs")
    hub.add_datasetdict(repo, {"train": uf_rows(2)}, private=True)
    assert build(repo).manifest["splits"]["train"]["read"] == 2  # HF_TOKEN is the owner's
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(SourceError, match="was not found on the Hub") as err:
        build(repo, token=False)
    assert "or it is private" in err.value.message and "HF_TOKEN" in err.value.hint


def test_gated_repo_without_access(hub):
    repo = hub.unique_id("lmsys/gated-arena")
    hub.add_datasetdict(repo, {"train": uf_rows(2)}, gated="manual")
    with pytest.raises(SourceError, match="is gated and this account has no access to it") as err:
        build(repo, token=hub.read_token)
    assert "gated" in err.value.message and "request access" in err.value.hint


def test_split_not_found_lists_available(hub):
    repo = hub.unique_id("ns/named-splits")
    hub.add_datasetdict(repo, {"train_prefs": uf_rows(2), "test_prefs": uf_rows(2)})
    with pytest.raises(SourceError, match="split 'train' not found in") as err:
        build(repo, split="train")
    assert "split 'train' not found" in err.value.message
    assert "train_prefs" in err.value.message and "test_prefs" in err.value.message


def test_bad_revision(hub):
    repo = hub.unique_id("ns/rev")
    hub.add_datasetdict(repo, {"train": uf_rows(2)})
    with pytest.raises(SourceError, match="revision 'nope' not found"):
        build(repo, revision="nope")


def test_cli_hub_build_json(hub, tmp_path):
    repo = hub.unique_id("mlabonne/chatml-OpenHermes2.5-dpo-binarized-alpha")
    rows = [
        {"question": f"q{i}", "chosen": f"c{i}", "rejected": f"r{i}", "delta_score": float(i)}
        for i in range(6)
    ]
    hub.add_datasetdict(repo, {"train": rows})
    out = tmp_path / "hermes"
    proc = subprocess.run(
        [sys.executable, "-m", "prefkit", "build", repo, "--top", "2", "-o", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["splits"]["train"]["kept"] == 2
    loaded = datasets.load_dataset(str(out))["train"]
    assert [r["source_index"] for r in loaded] == [5, 4]
    manifest = json.loads((out / "prefkit.json").read_text())
    assert manifest["command"].startswith("prefkit build " + repo)
