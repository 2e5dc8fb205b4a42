"""`prefkit score` on a tiny random reward model: values equal plain per-row forwards, TRL's RewardTrainer
tokenization, nulls for over-long pairs, resume, torchrun, one-line errors, and the label audit."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefkit.errors import ModelError, OutputError
from prefkit.output.audit import audit
from prefkit.ranks import average_ranks, spearman
from prefkit.reflogps import score as score_mod
from tests.reflogps_data import build_set, data_columns, pair_rows, run_cli
from tests.tinymodel import make_tiny_model, tiny_model_path

MAX_LENGTH = 160  # 5 of the 30 pairs have a text longer than this
RM = ["rm_chosen", "rm_rejected", "rm_margin"]


def _rm() -> Path:
    return tiny_model_path(reward=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A pristine built set (train 22 rows + test 8, message rows); copy it before scoring."""
    return build_set(tmp_path_factory.mktemp("built"), splits={"train": 22, "test": 8})


@pytest.fixture
def fresh(built, tmp_path) -> Path:
    out = tmp_path / "set"
    shutil.copytree(built, out)
    return out


@pytest.fixture(scope="module")
def reference(built, tmp_path_factory) -> Path:
    """The set scored in one uninterrupted run through the top-level call (shards of 8 rows)."""
    import prefkit

    out = tmp_path_factory.mktemp("ref") / "set"
    shutil.copytree(built, out)
    prefkit.score(out, str(_rm()), max_length=MAX_LENGTH, shard_rows=8, device="cpu")
    return out


def _plain_scores(model_path: Path, rows: list[dict], max_length: int) -> tuple[list, list]:
    """The plain recipe, written without prefkit: the reward model's own chat template, one forward per text."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, dtype=torch.float32).eval()
    out: tuple[list, list] = ([], [])
    for row in rows:
        ids = [tok.apply_chat_template(row["prompt"] + row[k], tokenize=True) for k in ("chosen", "rejected")]
        ids = [i["input_ids"] if hasattr(i, "keys") else i for i in ids]
        fits = max(len(i) for i in ids) <= max_length
        for side, seq in zip(out, ids, strict=True):
            with torch.inference_mode():
                side.append(float(model(input_ids=torch.tensor([seq])).logits[0, 0]) if fits else None)
    return out


def test_values_equal_plain_forwards_nulls_counted_and_provenance(fresh, capsys):
    import datasets

    args = ["score", str(fresh), "--reward-model", str(_rm()), "--max-length", str(MAX_LENGTH)]
    code, out, err = run_cli([*args, "--shard-rows", "8", "--json"], capsys)
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
    assert summary["dropped"] == {"too_long": 5} and summary["scored"] == 25
    assert "agree" in err and "spearman" in err and "Traceback" not in err  # the human summary, on stderr

    schema = pq.read_schema(next((fresh / "data").glob("*.parquet")))
    assert [str(schema.field(n).type) for n in RM] == ["float", "float", "float"]
    assert not (fresh / score_mod.WORK_DIR).exists()
    loaded = datasets.load_dataset(str(fresh))
    ds = datasets.concatenate_datasets([loaded["train"], loaded["test"]])
    assert ds.features["rm_margin"].dtype == "float32"

    want_c, want_r = _plain_scores(
        _rm(), ds.select_columns(["prompt", "chosen", "rejected"]).to_list(), MAX_LENGTH
    )
    assert [v is None for v in ds["rm_chosen"]] == [v is None for v in want_c]
    assert sum(v is None for v in want_c) == 5
    nan = lambda xs: np.array([math.nan if v is None else v for v in xs], dtype=np.float64)  # noqa: E731
    np.testing.assert_allclose(nan(ds["rm_chosen"]), nan(want_c), rtol=1e-4, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(nan(ds["rm_rejected"]), nan(want_r), rtol=1e-4, atol=1e-6, equal_nan=True)
    assert (
        np.ptp(nan(want_c)[~np.isnan(nan(want_c))]) > 0.1
    )  # the values differ between rows: a wrong one shows
    c, r, m = (np.array(nan(ds[k]), dtype=np.float32) for k in RM)  # rm_margin is the float32 difference
    np.testing.assert_array_equal(m, c - r)

    section = json.loads((fresh / "prefkit.json").read_text())["rm_scores"]
    for key in ("model", "weights_sha256", "tokenizer_sha256", "chat_template_sha256", "tokenization_rule"):
        assert section[key], key
    assert section["model_class"] == "LlamaForSequenceClassification" and section["num_labels"] == 1
    assert section["dtype"] == "float32" and section["max_length"] == MAX_LENGTH
    assert (
        section["engine"]["mode"] == "shared" and section["engine"]["self_test_max_abs_diff"]["shared"] < 1e-4
    )
    assert section["totals"]["dropped"] == {"too_long": 5} and section["columns"] == RM
    assert summary["audit"]["totals"]["scored"] == 25 and summary["audit"]["totals"]["nulls"] == 5


def test_tokenization_is_trl_reward_trainers(tmp_path):
    """Messages and text pairs tokenize as TRL's RewardTrainer tokenizes them, and it drops the same pairs."""
    trl = pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from prefkit.rewards.reward import tokenize_reward_pairs

    tok = AutoTokenizer.from_pretrained(_rm())
    model = AutoModelForSequenceClassification.from_pretrained(_rm())
    rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in pair_rows(12, seed=3)]
    text = [
        {"prompt": f"Q: {r['prompt'][-1]['content']}\nA:", "chosen": " " + r["chosen"][0]["content"],
         "rejected": " " + r["rejected"][0]["content"]}
        for r in rows
    ]  # fmt: skip
    for data in (rows, text):
        args = trl.RewardConfig(
            output_dir=str(tmp_path),
            max_length=150,
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            bf16=False,
        )
        trainer = trl.RewardTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(data), processing_class=tok
        )
        kept = [p for p in tokenize_reward_pairs(data, tok, 150) if not p.dropped]
        assert 0 < len(kept) < len(data) or data is text
        assert trainer.train_dataset["chosen_ids"] == [p.chosen_ids for p in kept]
        assert trainer.train_dataset["rejected_ids"] == [p.rejected_ids for p in kept]


def test_engine_paths_equal_plain_and_pad_rule(monkeypatch):
    """Prefix sharing, one row per text, and the model's own forward all give the plain per-row values; a text
    ending in pad tokens is read before them, as transformers reads it."""
    import torch

    from prefkit.loading.model import load_model
    from prefkit.reflogps import reward
    from prefkit.rewards.reward import RewardPair, last_non_pad, score_rewards, score_rewards_plain

    assert (
        last_non_pad([5, 6, 0, 0], 0) == 1
        and last_non_pad([0, 0], 0) == 0
        and last_non_pad([5, 0], None) == 1
    )
    loaded = load_model(str(_rm()), device="cpu", kind="reward")
    pairs = reward.tokenize_reward_pairs(pair_rows(16, seed=5), loaded.tokenizer, MAX_LENGTH)
    pairs.append(RewardPair([*pairs[0].chosen_ids, 0, 0], pairs[0].rejected_ids))  # pad id 0 at the end
    want = np.concatenate(score_rewards_plain(loaded.model, pairs))
    assert want[len(pairs) - 1] == pytest.approx(want[0], rel=1e-5)  # trailing pads do not change the score
    for sharing in (True, False):
        got = np.concatenate(score_rewards(loaded.model, pairs, token_budget=300, prefix_sharing=sharing))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, equal_nan=True)
    monkeypatch.setattr(reward, "reward_head", lambda model: None)  # e.g. an encoder's classifier
    assert reward.engine_mode(loaded.model) == "forward"
    got = np.concatenate(score_rewards(loaded.model, pairs, token_budget=300))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, equal_nan=True)
    assert set(reward.self_test(loaded.model)) == {"forward"}
    with torch.inference_mode():
        assert loaded.model.training is False


def test_resume_after_interrupt_gives_identical_output(fresh, reference, monkeypatch):
    real = score_mod.score_shard
    calls = []

    def failing_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed in the second shard")  # like Ctrl-C / a kill during the second shard
        return real(*args, **kwargs)

    monkeypatch.setattr(score_mod, "score_shard", failing_on_second)
    with pytest.raises(KeyboardInterrupt, match="killed in the second shard"):
        score_mod.score(fresh, str(_rm()), max_length=MAX_LENGTH, shard_rows=8, device="cpu")
    assert sorted(p.name for p in (fresh / score_mod.WORK_DIR).glob("*.parquet")) == ["train-00000.parquet"]
    assert "rm_margin" not in pq.read_schema(next((fresh / "data").glob("*.parquet"))).names

    with pytest.raises(
        OutputError, match="unfinished reward-model score scoring from a run with other settings"
    ):
        score_mod.score(fresh, str(_rm()), max_length=MAX_LENGTH + 1, shard_rows=8, device="cpu")

    calls.clear()
    monkeypatch.setattr(score_mod, "score_shard", lambda *a, **k: calls.append(1) or real(*a, **k))
    summary = score_mod.score(fresh, str(_rm()), max_length=MAX_LENGTH, shard_rows=8, device="cpu")
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
    assert data_columns(fresh, RM) == data_columns(reference, RM)


@pytest.mark.slow
def test_torchrun_two_processes_match_one(fresh, reference):
    """`torchrun --nproc-per-node 2 -m prefkit score` (gloo on CPU): the same output as one process."""
    pytest.importorskip("torch.distributed.run")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "prefkit", "score", str(fresh), "--reward-model", str(_rm()),
        "--max-length", str(MAX_LENGTH), "--shard-rows", "8", "--device", "cpu", "--json", "-q",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # printed once, by rank 0
    assert summary["world_size"] == 2 and summary["shards"]["total"] == 4
    assert json.loads((fresh / "prefkit.json").read_text())["rm_scores"]["world_size"] == 2
    assert data_columns(fresh, RM) == data_columns(reference, RM)


def _error_of(capsys, args: list[str]) -> tuple[str, str]:
    code, _, err = run_cli(args, capsys)
    lines = err.strip().splitlines()
    assert code == 1 and "Traceback" not in err, err
    assert lines[-2].startswith("Error: ") and lines[-1].startswith("Hint: "), err
    return lines[-2], lines[-1]


def test_model_errors_are_one_line_with_hints(fresh, tmp_path, capsys):
    base = ["score", str(fresh), "--max-length", str(MAX_LENGTH), "-q"]
    message, hint = _error_of(capsys, [*base, "--reward-model", str(tiny_model_path())])
    assert (
        "causal language model (LlamaForCausalLM)" in message and "AutoModelForSequenceClassification" in hint
    )

    causal = make_tiny_model(tmp_path / "causal-no-arch")  # a causal LM whose config names no architecture
    config = json.loads((causal / "config.json").read_text())
    config.pop("architectures")
    (causal / "config.json").write_text(json.dumps(config))
    message, hint = _error_of(capsys, [*base, "--reward-model", str(causal)])
    assert "names no architecture and no labels" in message and "AutoModelForSequenceClassification" in hint
    config["id2label"] = {"0": "LABEL_0"}  # ... and claims one label: its weights have no score head
    (causal / "config.json").write_text(json.dumps(config))
    message, hint = _error_of(capsys, [*base, "--reward-model", str(causal)])
    assert "not in its checkpoint (score.weight)" in message and "AutoModelForSequenceClassification" in hint

    three = make_tiny_model(tmp_path / "three-labels", reward=True)
    config = json.loads((three / "config.json").read_text())
    config["id2label"] = {str(i): f"L{i}" for i in range(3)}
    (three / "config.json").write_text(json.dumps(config))
    message, hint = _error_of(capsys, [*base, "--reward-model", str(three)])
    assert "has 3 labels" in message and "num_labels=1" in hint

    no_template = tiny_model_path(reward=True, chat_template=False)
    message, hint = _error_of(capsys, [*base, "--reward-model", str(no_template)])
    assert "no chat template" in message and "--chat-template" in hint
    code, _, err = run_cli([*base, "--reward-model", str(no_template), "--chat-template", "chatml"], capsys)
    assert code == 0, err
    section = json.loads((fresh / "prefkit.json").read_text())["rm_scores"]
    assert section["chat_template"] == "builtin:chatml"

    message, hint = _error_of(capsys, [*base, "--reward-model", str(_rm())])  # the columns are there now
    assert "already has reward-model score columns" in message and "--overwrite" in hint
    code, out, err = run_cli([*base, "--reward-model", str(_rm()), "--overwrite", "--json"], capsys)
    assert code == 0 and json.loads(out)["scored"] == 25, err
    assert pq.read_schema(next((fresh / "data").glob("*.parquet"))).names.count("rm_margin") == 1

    with pytest.raises(ModelError, match="does not exist"):
        score_mod.score(fresh, str(tmp_path / "missing"), overwrite=True)


def test_other_export_shapes_are_refused(tmp_path, capsys):
    from prefkit import build

    source = tmp_path / "source"
    source.mkdir()
    (source / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pair_rows(4)))
    kto = build(str(source), tmp_path / "kto", export="kto").output
    message, hint = _error_of(
        capsys, ["score", str(kto), "--reward-model", str(tmp_path / "no-model-needed")]
    )
    assert "exported in the 'kto' shape" in message and "prefkit score" in hint


def test_audit_figures_on_a_hand_made_table():
    table = pa.table(
        {
            "id": ["a", "b", "c", "d", "e", "f", "g"],
            "margin": [3.0, 1.0, 2.0, None, 2.0, 5.0, 0.5],
            "rm_margin": pa.array([1.5, -0.5, 0.0, 2.0, None, 4.0, 0.25], pa.float32()),
        }
    )
    a = audit(table)["splits"]["all"]
    assert (a["pairs"], a["scored"], a["nulls"]) == (7, 6, 1)
    assert a["agree"] == 4 and a["agree_fraction"] == pytest.approx(4 / 6)  # a d f g: rm_margin > 0
    assert (a["disagree"], a["ties"], a["disagree_ids"], a["disagree_ids_truncated"]) == (
        2,
        1,
        ["b", "c"],
        False,
    )
    # rows with both margins: a b c f g; ranks (4 2 3 5 1) vs (4 1 2 5 3): rho = 1 - 6·6 / (5·24) = 0.7
    assert a["spearman"] == pytest.approx(0.7) and a["spearman_pairs"] == 5

    # a split column groups the rows; the id list is capped, the count is not; totals cover every split
    grouped = table.append_column("split", pa.array(["train"] * 4 + ["test"] * 3))
    result = audit(grouped, max_ids=1)
    train, test = result["splits"]["train"], result["splits"]["test"]
    assert (train["disagree"], train["disagree_ids"], train["disagree_ids_truncated"]) == (2, ["b"], True)
    assert (test["scored"], test["nulls"], test["agree"], test["disagree"]) == (2, 1, 2, 0)
    assert test["spearman"] == pytest.approx(1.0) and result["totals"]["spearman"] == pytest.approx(0.7)
    assert result["totals"]["agree"] == 4 and result["totals"]["disagree_ids"] == ["b"]

    # a mapping of split tables; without a source margin the correlation is undefined; nothing scored
    result = audit({"train": table.drop_columns(["margin"]), "empty": table.slice(0, 0)})
    assert result["splits"]["train"]["spearman"] is None and result["splits"]["train"]["agree"] == 4
    assert result["splits"]["empty"]["agree_fraction"] is None and result["splits"]["empty"]["pairs"] == 0
    with pytest.raises(KeyError, match="rm_margin"):
        audit(table.drop_columns(["rm_margin"]))


def test_spearman_and_ranks():
    scipy_stats = pytest.importorskip("scipy.stats")
    np.testing.assert_array_equal(average_ranks(np.array([10.0, 20.0, 10.0, 30.0])), [1.5, 3.0, 1.5, 4.0])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 50).astype(float)  # many ties
    y = x + rng.normal(0, 2, 50)
    assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1.0], [2.0]) is None and spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, None, 3, 4], [2, 5, float("nan"), 8]) == pytest.approx(1.0)  # pairwise complete


def test_hub_reward_model_with_revision(fresh, hub):
    """A Hub id (local fake Hub) with --revision: loaded through the same helpers as reflogps' models; the
    manifest names the resolved commit and the weights hash equals the local folder's."""
    from prefkit.loading.model import weights_hash

    src = _rm()
    repo = hub.unique_id("me/tiny-reward-model")
    files = {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()}
    sha = hub.create_dataset_repo(repo, files, repo_type="model")
    hub.add_commit(repo, {"README.md": "newer commit"}, repo_type="model")
    summary = score_mod.score(fresh, repo, revision=sha, max_length=MAX_LENGTH, device="cpu")
    section = json.loads((fresh / "prefkit.json").read_text())["rm_scores"]
    assert section["model_source"] == "hub" and section["revision"] == sha == summary["revision"]
    assert section["weights_sha256"] == weights_hash(src)


def test_oom_halves_the_budget_and_self_test_catches_a_leaking_mask():
    """The shared batch loop's out-of-memory halving works for reward scoring; a packing whose branches see each
    other (the 4D mask lost) fails the self-test with a hint."""
    import torch

    from prefkit.loading.model import load_model
    from prefkit.reflogps import reward

    loaded = load_model(str(_rm()), device="cpu", kind="reward")
    model = loaded.model
    pairs = reward.tokenize_reward_pairs(pair_rows(8, seed=7), loaded.tokenizer, MAX_LENGTH)
    expected = np.concatenate(reward.score_rewards(model, pairs, token_budget=4096))
    backbone = model.base_model
    original = backbone.forward
    seen: list[int] = []

    def limited(*args, **kwargs):
        seen.append(kwargs["input_ids"].numel())
        if seen[-1] > 300:
            raise torch.OutOfMemoryError("simulated: budget-limited device")
        return original(*args, **kwargs)

    def no_mask(*args, **kwargs):
        kwargs.pop("attention_mask", None)
        kwargs.pop("position_ids", None)
        return original(*args, **kwargs)

    try:
        backbone.forward = limited
        got = np.concatenate(reward.score_rewards(model, pairs, token_budget=4096))
        backbone.forward = no_mask
        with pytest.raises(ModelError, match=r"self-test failed.*shared") as err:
            reward.self_test(model)
        assert "--no-prefix-sharing" in err.value.hint
    finally:
        del backbone.forward
    assert max(seen) > 300 and len(seen) > 2  # failed once, then ran smaller batches
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6, equal_nan=True)


# ------------------------------------------------------------------------------------------------ building from a scored set


def _by_id(table) -> dict[str, dict]:
    return {r["id"]: r for r in table.to_pylist()}


def test_build_from_a_scored_set_drops_or_flips_disagreeing_pairs(reference, tmp_path):
    """`prefkit build OUT --drop-disagreeing` / `--flip-disagreeing` on a set scored by `prefkit score`: the pairs
    the reward model orders the other way are dropped (reason) or turned round with their reward scores."""
    from prefkit import build
    from prefkit.output import read_output

    source = read_output(reference)
    rows = _by_id(source.read_split("train"))
    scored = [r for r in rows.values() if r["rm_margin"] is not None]
    disagree = {i for i, r in rows.items() if r["rm_margin"] is not None and r["rm_margin"] <= 0}
    against = {i for i, r in rows.items() if r["rm_margin"] is not None and r["rm_margin"] < 0}
    assert scored and disagree and len(disagree) < len(scored)  # the random RM disagrees on some pairs only

    kept = build(str(reference), tmp_path / "agreed", split="train", drop_disagreeing=True)
    counts = kept.manifest["splits"]["train"]
    assert counts["dropped"].get("rm_disagrees") == len(disagree)
    assert counts["flags"]["rm_disagrees"] == len(disagree)
    assert set(_by_id(kept.splits["train"])) == set(rows) - disagree
    assert (
        kept.manifest["rm_scores"] == source.manifest["rm_scores"]
    )  # the provenance travels with the columns

    flipped = build(str(reference), tmp_path / "flipped", split="train", flip_disagreeing=True)
    assert flipped.manifest["splits"]["train"]["flags"]["rm_flipped"] == len(against)
    out = flipped.splits["train"].to_pylist()
    assert len(out) == len(rows)
    original = {r["source_index"]: r for r in rows.values()}
    for row in out:
        before = original[row["source_index"]]
        if before["id"] in against:
            assert (row["chosen"], row["rejected"]) == (before["rejected"], before["chosen"])
            assert (row["rm_chosen"], row["rm_rejected"]) == (before["rm_rejected"], before["rm_chosen"])
            assert row["rm_margin"] == -before["rm_margin"] and row["margin"] == -before["margin"]
        else:
            assert row["chosen"] == before["chosen"] and row["rm_margin"] == before["rm_margin"]


def test_select_on_the_reward_margin_and_the_audit_in_stats_and_card(reference, fresh, tmp_path, capsys):
    import prefkit
    from prefkit import build
    from prefkit.output import read_output

    prefkit.score(fresh, str(_rm()), device="cpu")  # the model's own context length: every pair is scored
    rows = read_output(fresh).read_split("train").to_pylist()
    assert all(r["rm_margin"] is not None for r in rows)
    res = build(str(fresh), tmp_path / "top", split="train", margin_col="rm_margin", top=5)
    best = sorted((r["rm_margin"] for r in rows if r["rm_margin"] is not None), reverse=True)[:5]
    assert sorted(res.splits["train"].column("margin").to_pylist(), reverse=True) == pytest.approx(best)

    code, out, _ = run_cli(["stats", str(reference), "--json"], capsys)
    assert code == 0
    audit = json.loads(out)["splits"]["train"]["rm_audit"]
    scored = read_output(reference).read_split("train").column("rm_margin").to_pylist()
    margins = [m for m in scored if m is not None]
    assert audit["agree"] == sum(m > 0 for m in margins) and audit["disagree"] == sum(m <= 0 for m in margins)
    code, text, _ = run_cli(["stats", str(reference)], capsys)
    assert f"{audit['disagree']} disagree" in text
    card = (tmp_path / "top" / "README.md").read_text()
    assert "reward model agrees with the label" in card


def test_disagreeing_options_need_a_scored_set_and_exclude_each_other(built, tmp_path):
    from prefkit import build
    from prefkit.errors import OptionError, SelectionError

    with pytest.raises(SelectionError, match="needs reward-model scores"):
        build(str(built), drop_disagreeing=True)
    with pytest.raises(OptionError, match="exclude each other"):
        build(str(built), drop_disagreeing=True, flip_disagreeing=True)
