"""`prefkit reflogps` / `prefkit verify` end to end on a tiny model: columns, provenance, resume, errors, torchrun."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from prefkit.errors import ModelError, OutputError
from prefkit.reflogps import job
from tests.reflogps_data import build_set, data_columns, run_cli
from tests.tinymodel import make_tiny_model, tiny_model_path

MAX_LENGTH = 96
REF = ["ref_chosen_logps", "ref_rejected_logps", "chosen_tokens", "rejected_tokens"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A pristine built set (train 22 rows + test 8, some too long for MAX_LENGTH); copy it before scoring."""
    return build_set(tmp_path_factory.mktemp("built"), splits={"train": 22, "test": 8})


@pytest.fixture
def fresh(built, tmp_path) -> Path:
    out = tmp_path / "set"
    shutil.copytree(built, out)
    return out


@pytest.fixture(scope="module")
def reference(built, tmp_path_factory) -> Path:
    """The set scored in one uninterrupted in-process run (shards of 8 rows)."""
    out = tmp_path_factory.mktemp("ref") / "set"
    shutil.copytree(built, out)
    job.reflogps(out, str(tiny_model_path()), max_length=MAX_LENGTH, shard_rows=8, device="cpu")
    return out


def test_end_to_end_columns_provenance_and_values(fresh, capsys):
    import datasets

    from prefkit.chat.tokenize import tokenize_pairs
    from prefkit.loading.model import load_model
    from prefkit.reflogps.plain import score_pairs_plain

    model = tiny_model_path()
    code, out, err = run_cli(
        [
            "reflogps",
            str(fresh),
            "--model",
            str(model),
            "--max-length",
            str(MAX_LENGTH),
            "--shard-rows",
            "8",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["pairs"] == 30 and summary["shards"] == {
        "total": 4,
        "resumed": 0,
        "scored": 4,
        "taken_over": 0,
        "by_others": 0,
        "lost": 0,
        "merged_here": True,
    }
    assert summary["outcome"] == "merged_here"
    assert "Traceback" not in err

    schema = pq.read_schema(next((fresh / "data").glob("*.parquet")))
    assert [str(schema.field(n).type) for n in REF] == ["float", "float", "int32", "int32"]
    assert not (fresh / job.WORK_DIR).exists()

    loaded = datasets.load_dataset(str(fresh))  # the card's features were refreshed
    assert set(loaded) == {"train", "test"} and loaded["test"].num_rows == 8
    ds = datasets.concatenate_datasets([loaded["train"], loaded["test"]])
    assert (
        ds.features["ref_chosen_logps"].dtype == "float32" and ds.features["chosen_tokens"].dtype == "int32"
    )
    assert "ref_chosen_logps" in (fresh / "README.md").read_text()

    section = json.loads((fresh / "prefkit.json").read_text())["reflogps"]
    for key in (
        "model",
        "weights_sha256",
        "tokenizer_sha256",
        "chat_template_sha256",
        "trl_tokenization_rule",
    ):
        assert section[key], key
    assert section["dtype"] == "float32" and section["max_length"] == MAX_LENGTH
    assert section["engine"]["prefix_sharing"] is True

    # the values equal the plain path on TRL-exact tokens; rows TRL drops are null and counted
    lm = load_model(str(model), device="cpu")
    rows = ds.select_columns(["prompt", "chosen", "rejected"]).to_list()
    pairs = tokenize_pairs(rows, lm.tokenizer, MAX_LENGTH)
    want_c, want_r = score_pairs_plain(lm.model, pairs)
    dropped = [p.dropped is not None for p in pairs]
    assert 0 < sum(dropped) < len(pairs)
    assert section["totals"]["dropped"] == {"prompt_too_long": sum(dropped)} == summary["dropped"]
    got_c = np.array([math.nan if v is None else v for v in ds["ref_chosen_logps"]])
    got_r = np.array([math.nan if v is None else v for v in ds["ref_rejected_logps"]])
    np.testing.assert_allclose(got_c, want_c, rtol=1e-4, equal_nan=True)
    np.testing.assert_allclose(got_r, want_r, rtol=1e-4, equal_nan=True)
    assert ds["chosen_tokens"] == [None if p.dropped else len(p.chosen_ids) for p in pairs]
    assert ds["rejected_tokens"] == [None if p.dropped else len(p.rejected_ids) for p in pairs]

    # verify: same values → exit 0; a corrupted value → exit 1
    code, out, err = run_cli(["verify", str(fresh), "--sample", "8", "--json", "-q"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] and report["rows_checked"] == 8 and report["max_abs_diff"] < 1e-3


@pytest.mark.slow
def test_verify_fails_on_wrong_values(reference, tmp_path, capsys):
    out = tmp_path / "set"
    shutil.copytree(reference, out)
    path = next((out / "data").glob("*.parquet"))
    table = pq.read_table(path)
    values = [None if v is None else v + 0.5 for v in table.column("ref_chosen_logps").to_pylist()]
    import pyarrow as pa

    table = table.set_column(
        table.schema.get_field_index("ref_chosen_logps"), "ref_chosen_logps", pa.array(values, pa.float32())
    )
    pq.write_table(table, path)
    code, stdout, err = run_cli(["verify", str(out), "--sample", "30", "--json"], capsys)
    assert code == 1
    report = json.loads(stdout)
    assert not report["ok"] and report["failing"] > 0 and abs(report["max_abs_diff"] - 0.5) < 1e-3
    assert "Error:" in err


def test_resume_after_interrupt_gives_identical_output(fresh, reference, monkeypatch):
    real = job.score_shard
    calls = []

    def failing_after_first(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed in the second shard")  # like Ctrl-C / a kill during the second shard
        return real(*args, **kwargs)

    monkeypatch.setattr(job, "score_shard", failing_after_first)
    with pytest.raises(KeyboardInterrupt, match="killed in the second shard"):
        job.reflogps(fresh, str(tiny_model_path()), max_length=MAX_LENGTH, shard_rows=8, device="cpu")
    parts = sorted(p.name for p in (fresh / job.WORK_DIR).glob("*.parquet"))
    assert parts == ["train-00000.parquet"]
    assert "ref_chosen_logps" not in pq.read_schema(next((fresh / "data").glob("*.parquet"))).names

    # other settings: refused while the unfinished work exists
    with pytest.raises(OutputError, match="other settings"):
        job.reflogps(fresh, str(tiny_model_path()), max_length=MAX_LENGTH + 1, shard_rows=8, device="cpu")

    calls.clear()
    monkeypatch.setattr(job, "score_shard", lambda *a, **k: calls.append(1) or real(*a, **k))
    summary = job.reflogps(fresh, str(tiny_model_path()), max_length=MAX_LENGTH, shard_rows=8, device="cpu")
    assert len(calls) == 3, "the finished shard was scored again"
    assert summary["shards"] == {
        "total": 4,
        "resumed": 1,
        "scored": 3,
        "taken_over": 0,
        "by_others": 0,
        "lost": 0,
        "merged_here": True,
    }
    assert data_columns(fresh, REF) == data_columns(reference, REF)


def test_existing_columns_need_overwrite(reference, tmp_path, monkeypatch):
    out = tmp_path / "set"
    shutil.copytree(reference, out)
    with pytest.raises(OutputError, match="already has reference log-prob columns"):
        job.reflogps(out, str(tiny_model_path()), max_length=MAX_LENGTH, device="cpu")
    summary = job.reflogps(out, str(tiny_model_path()), max_length=64, device="cpu", overwrite=True)
    assert summary["max_length"] == 64
    assert json.loads((out / "prefkit.json").read_text())["reflogps"]["max_length"] == 64
    assert pq.read_schema(next((out / "data").glob("*.parquet"))).names.count("ref_chosen_logps") == 1


def test_model_errors_are_one_line_with_hints(fresh, tmp_path, capsys):
    def error_of(args):
        code, _, err = run_cli(["reflogps", str(fresh), *args], capsys)
        lines = err.strip().splitlines()
        assert code == 1 and "Traceback" not in err, err
        assert lines[0].startswith("Error: ") and lines[1].startswith("Hint: "), err
        return lines[0], lines[1]

    message, hint = error_of(["--model", str(tmp_path / "no-such-model")])
    assert "does not exist" in message

    no_template = tiny_model_path(chat_template=False)
    message, hint = error_of(["--model", str(no_template)])
    assert "no chat template" in message and "--chat-template" in hint

    # a tokenizer with more tokens than the model has embeddings
    small = make_tiny_model(tmp_path / "small", vocab_size=300)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_path() / name, small / name)
    message, hint = error_of(["--model", str(small)])
    assert "mismatch" in message

    # the --chat-template override makes the template-less model usable
    template = tmp_path / "chatml.jinja"
    from tests.tinymodel import CHAT_TEMPLATE

    template.write_text(CHAT_TEMPLATE)
    code, _out, err = run_cli(
        [
            "reflogps",
            str(fresh),
            "--model",
            str(no_template),
            "--chat-template",
            str(template),
            "--json",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    section = json.loads((fresh / "prefkit.json").read_text())["reflogps"]
    assert section["chat_template"].startswith("file:")
    with pytest.raises(ModelError, match="missing' does not exist"):
        from prefkit.loading.model import load_model

        load_model(str(tmp_path / "missing"))


@pytest.mark.slow
def test_torchrun_two_processes_match_one(fresh, reference):
    """`torchrun --nproc-per-node 2 -m prefkit reflogps` (gloo on CPU): same output as one process."""
    pytest.importorskip("torch.distributed.run")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "prefkit", "reflogps", str(fresh), "--model", str(tiny_model_path()),
        "--max-length", str(MAX_LENGTH), "--shard-rows", "8", "--device", "cpu", "--json", "-q",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # printed once, by rank 0
    assert summary["world_size"] == 2 and summary["shards"]["total"] == 4
    section = json.loads((fresh / "prefkit.json").read_text())["reflogps"]
    assert section["world_size"] == 2
    assert data_columns(fresh, REF) == data_columns(reference, REF)


def test_hub_model_with_revision_and_provenance(hub):
    """A Hub id (local fake Hub): revision resolved to the commit, weights hash equal to the local folder's."""
    from prefkit.loading.model import load_model, weights_hash

    src = tiny_model_path()
    repo = hub.unique_id("me/tiny-model")
    sha = hub.create_dataset_repo(
        repo, {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()}, repo_type="model"
    )
    hub.add_commit(repo, {"README.md": "newer commit"}, repo_type="model")
    loaded = load_model(repo, revision=sha, device="cpu", attn_implementation="eager")
    prov = loaded.provenance
    assert prov["source"] == "hub" and prov["revision"] == sha and prov["model"] == repo
    assert prov["weights_sha256"] == weights_hash(src)
    assert load_model(repo, device="cpu").provenance["revision"] != sha  # main moved on

    with pytest.raises(ModelError, match=r"neither a local folder nor a Hub model repo"):
        load_model(hub.unique_id("me/missing-model"), device="cpu")
    with pytest.raises(ModelError, match="revision"):
        load_model(repo, revision="no-such-branch", device="cpu")


def test_refuses_a_set_built_for_another_tokenizer(fresh, capsys):
    """`build --tokenizer` records the tokenizer/template hashes; reflogps refuses a mismatch unless told."""
    manifest_path = fresh / "prefkit.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["tokenizer"] = {"name_or_path": "other-model", "hash": "0" * 64, "chat_template_hash": "1" * 64}
    manifest_path.write_text(json.dumps(manifest))
    args = ["reflogps", str(fresh), "--model", str(tiny_model_path()), "--max-length", str(MAX_LENGTH), "-q"]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and "built for another tokenizer (other-model)" in err and "--allow-mismatch" in err
    code, _, err = run_cli([*args, "--allow-mismatch", "--chat-template", "chatml"], capsys)
    assert code == 0, err
    assert json.loads(manifest_path.read_text())["reflogps"]["chat_template"] == "builtin:chatml"


def test_empty_split_and_other_export_shapes(tmp_path):
    """A split whose rows were all dropped at build time is refused now; a set an earlier prefkit wrote with such a
    split (no data file: datasets cannot load an empty split) loads and scores without it; sets exported for other
    trainers (but KTO: tests/reflogps/test_kto.py) are refused before any model loads."""
    import datasets

    from prefkit import build
    from prefkit.errors import EmptyResultError, OutputError
    from tests.reflogps_data import pair_rows

    source = tmp_path / "source"
    source.mkdir()
    (source / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pair_rows(4)))
    same = [{**r, "rejected": r["chosen"]} for r in pair_rows(2, seed=1)]  # identical: every row dropped
    (source / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in same))
    with pytest.raises(
        EmptyResultError, match="split 'test' kept no row"
    ):  # refused since the empty-split rule
        build(str(source), tmp_path / "out")
    out = build(str(source), tmp_path / "out", split=["train"]).output
    manifest = json.loads((out / "prefkit.json").read_text())  # as an earlier prefkit wrote such a set
    manifest["splits"]["test"] = {
        "read": 2,
        "kept": 0,
        "dropped": {"identical": 2},
        "invalid": {},
        "files": [],
    }
    manifest["totals"]["read"] += 2
    manifest["totals"]["dropped"] = {"identical": 2}
    (out / "prefkit.json").write_text(json.dumps(manifest))
    assert not list((out / "data").glob("test-*.parquet"))
    job.reflogps(out, str(tiny_model_path()), max_length=MAX_LENGTH, device="cpu")
    loaded = datasets.load_dataset(str(out))
    assert list(loaded) == ["train"] and set(REF) <= set(loaded["train"].column_names)
    assert json.loads((out / "prefkit.json").read_text())["splits"]["test"]["dropped"] == {"identical": 2}
    assert (
        pq.read_table(next((out / "data").glob("train-*.parquet"))).column("ref_chosen_logps").null_count < 4
    )

    other = build(str(source), tmp_path / "openrlhf", export="openrlhf", split=["train"]).output
    with pytest.raises(OutputError, match="exported in the 'openrlhf' shape"):
        job.reflogps(other, str(tmp_path / "no-model-needed"), device="cpu")
