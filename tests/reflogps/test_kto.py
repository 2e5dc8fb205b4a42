"""KTO: `prefkit reflogps` on a KTO set writes TRL KTOTrainer's ref_logps / ref_KL_logps, and
prefkit.trl.PrecomputedRefKTOTrainer trains on them without a reference model.

The oracle is TRL's own KTOTrainer (precompute_ref_log_probs=True) on the same tiny model and rows: values per row,
and the first training step's loss and KL with the policy equal to the reference.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("trl")

from prefkit.reflogps.provenance import ReferenceMismatchError
from tests.reflogps_data import pair_rows
from tests.tinymodel import tiny_model_path

MAX_LENGTH = 96
BATCH = 4
KTO_COLUMNS = ["ref_logps", "ref_KL_logps", "completion_tokens", "KL_completion_tokens", "KL_completion_hash"]


def _build(folder, n: int = 14, seed: int = 0):
    from prefkit import build

    source = folder / "source"
    source.mkdir(parents=True, exist_ok=True)
    (source / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pair_rows(n, seed)))
    out = folder / "out"
    build(str(source), out, overwrite=True, export="kto")
    return out


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A KTO set (2 x 14 rows, some prompts too long for MAX_LENGTH) scored for batches of BATCH rows."""
    from prefkit.reflogps.job import reflogps

    model = tiny_model_path()
    out = _build(tmp_path_factory.mktemp("kto"))
    summary = reflogps(
        out, str(model), max_length=MAX_LENGTH, device="cpu", per_device_train_batch_size=BATCH, shard_rows=5
    )
    return out, model, summary


def _load(out):
    import datasets

    return datasets.load_dataset(str(out))["train"]


def _args(tmp_path, batch=BATCH, **kwargs):
    from trl import KTOConfig

    return KTOConfig(
        output_dir=str(tmp_path / "run"),
        precompute_ref_log_probs=kwargs.pop("precompute_ref_log_probs", True),
        max_length=kwargs.pop("max_length", MAX_LENGTH),
        per_device_train_batch_size=batch,
        max_steps=1,
        logging_steps=1,
        learning_rate=1e-6,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
        **kwargs,
    )


def _trainer(cls, model_path, dataset, tmp_path, batch=BATCH, **kwargs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy = AutoModelForCausalLM.from_pretrained(str(model_path))
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    args = _args(tmp_path, batch, **{k: kwargs.pop(k) for k in list(kwargs) if not k.startswith("prefkit")})
    return cls(
        model=policy, ref_model=None, args=args, train_dataset=dataset, processing_class=tokenizer, **kwargs
    )


def _trl_reference(model, dataset, tmp_path, batch=BATCH):
    """TRL's own precompute on the rows without prefkit's columns: its train dataset (with ref_logps/ref_KL_logps)."""
    from trl import KTOTrainer

    bare = dataset.remove_columns([c for c in KTO_COLUMNS if c in dataset.column_names])
    return _trainer(KTOTrainer, model, bare, tmp_path, batch)


def test_values_equal_trl_precompute(scored, tmp_path):
    out, model, summary = scored
    assert summary["shards"]["total"] > 1  # shards cut at KL batch boundaries
    ours = _load(out)
    trl = _trl_reference(model, ours, tmp_path).train_dataset
    kept = [i for i, v in enumerate(ours["ref_logps"]) if v is not None]
    assert len(trl) == len(kept) and len(kept) < len(ours)  # TRL drops exactly the rows prefkit leaves null
    for column in ("ref_logps", "ref_KL_logps"):
        mine = np.array([ours[column][i] for i in kept], dtype=np.float64)
        np.testing.assert_allclose(mine, np.array(trl[column], dtype=np.float64), rtol=1e-5, atol=1e-4)
    from prefkit.reflogps.kto import ids_hash

    assert [ids_hash(ids) for ids in trl["KL_completion_ids"]] == [
        ours["KL_completion_hash"][i] for i in kept
    ]
    manifest = json.loads((out / "prefkit.json").read_text())["reflogps"]
    assert manifest["kto"]["per_device_train_batch_size"] == BATCH
    assert manifest["kto"]["kl_order"] == "dataset"
    labels = manifest["kto"]["labels"]["train"]
    assert (labels["desirable"], labels["undesirable"]) == (14, 14)
    scored = np.array([v is not None for v in ours["ref_logps"]])
    assert labels["desirable_scored"] == int((scored & np.array(ours["label"])).sum())
    assert labels["desirable_scored"] + labels["undesirable_scored"] == len(kept)


def test_first_step_equals_trl_without_reference_model(scored, tmp_path, monkeypatch):
    from prefkit.trl import PrecomputedRefKTOTrainer
    from trl.trainer import kto_trainer

    out, model, _ = scored
    expected = _trl_reference(model, _load(out), tmp_path / "trl")
    expected.train()
    want = next(e for e in expected.state.log_history if "loss" in e)

    calls = []
    monkeypatch.setattr(kto_trainer.KTOTrainer, "compute_ref_log_probs", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(kto_trainer, "hash_module", lambda m: calls.append("hash"))
    trainer = _trainer(PrecomputedRefKTOTrainer, model, _load(out), tmp_path, prefkit_manifest=out)
    assert trainer.ref_model is None and calls == []
    trainer.train()
    got = next(e for e in trainer.state.log_history if "loss" in e)
    assert got["loss"] == pytest.approx(want["loss"], abs=1e-5)
    assert got["kl"] == pytest.approx(want["kl"], abs=1e-4)  # sums of ~300 nats: fp32 ulp is 3e-5


def test_perturbed_kl_column_changes_the_step(scored, tmp_path):
    from prefkit.trl import PrecomputedRefKTOTrainer

    out, model, _ = scored
    data = _load(out).map(
        lambda r: {"ref_KL_logps": None if r["ref_KL_logps"] is None else r["ref_KL_logps"] - 50}
    )
    trainer = _trainer(PrecomputedRefKTOTrainer, model, data, tmp_path)
    trainer.train()
    assert next(e for e in trainer.state.log_history if "loss" in e)["kl"] > 1.0


@pytest.mark.parametrize(
    "change",
    ["batch_size", "batch_size_manifest", "shuffled", "max_length"],
)
def test_refuses_other_pairing(scored, tmp_path, change):
    from prefkit.trl import PrecomputedRefKTOTrainer

    out, model, _ = scored
    data, kwargs = _load(out), {}
    if change == "batch_size":
        kwargs["batch"] = 3
    elif change == "batch_size_manifest":
        kwargs.update(batch=2, prefkit_manifest=out)
    elif change == "shuffled":
        data = data.shuffle(seed=1)
    else:
        kwargs["max_length"] = 200  # keeps the rows whose prompt filled 96: no values
    with pytest.raises(ReferenceMismatchError):
        _trainer(PrecomputedRefKTOTrainer, model, data, tmp_path, **kwargs)


def test_refuses_auto_find_batch_size(scored, tmp_path):
    from prefkit.trl import PrecomputedRefKTOTrainer

    out, model, _ = scored
    with pytest.raises(ReferenceMismatchError, match="auto_find_batch_size"):
        _trainer(PrecomputedRefKTOTrainer, model, _load(out), tmp_path, auto_find_batch_size=True)


def test_text_rows_tokenize_like_trl(tmp_path):
    """Text KTO rows (EOS appended to the completion): ids and KL pairing equal TRL's _prepare_dataset."""
    import datasets
    from trl import KTOTrainer

    from prefkit.reflogps.kto import kl_sources, tokenize_completions

    rows = pair_rows(7, seed=3)
    text = [
        {
            "prompt": r["prompt"][-1]["content"] + " ",
            "completion": r[key][0]["content"],
            "label": key == "chosen",
        }
        for r in rows
        for key in ("chosen", "rejected")
    ]
    model = tiny_model_path()
    trainer = _trainer(KTOTrainer, model, datasets.Dataset.from_list(text), tmp_path)
    trl = trainer.train_dataset
    mine = tokenize_completions(text, trainer.processing_class, MAX_LENGTH)
    kept = [t for t in mine if not t.dropped]
    assert [t.prompt_ids for t in kept] == trl["prompt_ids"]
    assert [t.completion_ids for t in kept] == trl["completion_ids"]
    sources = [s for s in kl_sources([not t.dropped for t in mine], BATCH) if s is not None]
    assert [mine[s].completion_ids for s in sources] == trl["KL_completion_ids"]


def test_batch_size_only_for_kto_sets(tmp_path):
    from prefkit.errors import OptionError
    from prefkit.reflogps.job import reflogps
    from tests.reflogps_data import build_set

    out = build_set(tmp_path, n=4)
    with pytest.raises(OptionError, match="KTO"):
        reflogps(out, str(tiny_model_path()), per_device_train_batch_size=4, device="cpu")


def test_weight_ranges_follow_trl():
    from prefkit.output.stats import kto_weight_ranges

    assert kto_weight_ranges(10, 10) is None
    got = kto_weight_ranges(100, 300)
    assert got["desirable_weight"] == [3.0, 3.99]  # TRL: n_und * uw / n_des * [1, 1.33]
    assert got["undesirable_weight"] == [0.25, 0.33]  # TRL: n_des * dw / n_und / [1.33, 1]


def _unpaired_rows(n: int = 6) -> list[dict]:
    """TRL's unpaired shape: every prompt's desirable completion, an undesirable one for most, one extra."""
    rows = pair_rows(n, seed=5, long_prompt_every=0)
    out = []
    for i, r in enumerate(rows):
        out.append({"prompt": r["prompt"], "completion": r["chosen"], "label": True})
        if i % 3:
            out.append({"prompt": r["prompt"], "completion": r["rejected"], "label": False})
    extra = [{"role": "assistant", "content": "another undesirable answer"}]
    out.append({"prompt": rows[0]["prompt"], "completion": extra, "label": False})
    return out


@pytest.mark.parametrize("batch_rows", [None, "3"])
def test_build_reads_unpaired_shape(tmp_path, monkeypatch, batch_rows):
    """`build` detects TRL's unpaired shape, pairs a prompt's completions in source order (across batches), and
    --export kto writes exactly the paired rows back."""
    import pyarrow.parquet as pq

    from prefkit import build

    if batch_rows:
        monkeypatch.setenv("PREFKIT_BATCH_ROWS", batch_rows)
    rows = _unpaired_rows()
    source = tmp_path / "source"
    source.mkdir()
    (source / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    build(str(source), tmp_path / "pairs", overwrite=True)
    manifest = json.loads((tmp_path / "pairs" / "prefkit.json").read_text())
    counts = manifest["splits"]["train"]
    assert counts["read"] == len(rows) and counts["kept"] == 5
    assert counts["dropped"] == {
        "paired_in_another_row": 5,
        "no_partner": 1,
    }  # prompt 3 has no undesirable row
    table = pq.read_table(next((tmp_path / "pairs" / "data").glob("*.parquet")))
    first = table.slice(0, 1).to_pylist()[0]
    assert first["chosen"][0]["content"] == rows[0]["completion"][0]["content"]
    assert first["rejected"][0]["content"] == "another undesirable answer"  # prompt 0's only undesirable row
    build(str(source), tmp_path / "kto", overwrite=True, export="kto")
    kto = pq.read_table(next((tmp_path / "kto" / "data").glob("*.parquet"))).to_pylist()
    written = {(json.dumps(r["prompt"]), r["completion"][0]["content"], r["label"]) for r in kto}
    paired = {(json.dumps(r["prompt"]), r["completion"][0]["content"], r["label"]) for r in rows}
    assert len(kto) == 10 and written <= paired
    labels = json.loads((tmp_path / "kto" / "prefkit.json").read_text())["stats"]["splits"]["train"]["labels"]
    assert (labels["desirable"], labels["undesirable"], labels["recommended_weights"]) == (5, 5, None)
    assert "## KTO labels" in (tmp_path / "kto" / "README.md").read_text()


def test_warns_when_precompute_is_off(scored, tmp_path):
    from prefkit.trl import PrecomputedRefKTOTrainer, PrefkitWarning

    out, model, _ = scored
    with pytest.warns(PrefkitWarning, match="precompute_ref_log_probs=False"):
        _trainer(PrecomputedRefKTOTrainer, model, _load(out), tmp_path, precompute_ref_log_probs=False)
