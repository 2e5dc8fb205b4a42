"""`prefkit reflogps` for the setups people train with, against TRL 1.16's own precompute in the same setup.

QLoRA (a 4-bit NF4 base, double quantization, and a LoRA ``peft_config``: TRL's reference is the quantized base with
the adapter disabled), 8-bit + LoRA, and a ``PeftModel`` that already carries an adapter (TRL's reference is its
frozen "ref" copy: base + adapter), on a 4-bit base and at full precision. bitsandbytes runs 4-bit and 8-bit on the
CPU (its CPU backend, >= 0.49); compute in fp32; values equal to 1e-4 relative.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")
pytest.importorskip("bitsandbytes")

from prefkit.errors import ModelError
from tests.reflogps_data import build_set
from tests.tinymodel import tiny_model_path

MAX_LENGTH = 96
QLORA = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_set(tmp_path_factory.mktemp("setups"), n=12)


@pytest.fixture(scope="module")
def adapter_path(tmp_path_factory):
    """A LoRA adapter with random (non-zero) weights on the tiny model: base + adapter != base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_path()), dtype=torch.float32)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(base, config)
    folder = tmp_path_factory.mktemp("adapter") / "lora"
    peft_model.save_pretrained(str(folder))
    return folder


def bnb(**kw):
    import torch
    from transformers import BitsAndBytesConfig

    if kw.get("load_in_4bit"):
        kw.setdefault("bnb_4bit_compute_dtype", torch.float32)
    return BitsAndBytesConfig(**kw)


def load_base(quant: dict | None):
    """The tiny model as a trainer loads it: from_pretrained with a BitsAndBytesConfig, fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"quantization_config": bnb(**quant)} if quant else {}
    return AutoModelForCausalLM.from_pretrained(str(tiny_model_path()), dtype=torch.float32, **kwargs)


def lora_config():
    from peft import LoraConfig

    return LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )


def dpo_args(tmp_path, **kw):
    from trl import DPOConfig

    return DPOConfig(
        output_dir=str(tmp_path / "run"),
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=8,
        max_length=MAX_LENGTH,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        max_steps=1,
        logging_steps=1,
        learning_rate=1e-6,
        bf16=False,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        **kw,
    )


def dataset(out, split: str = "train", bare: bool = False):
    import datasets

    ds = datasets.load_dataset(str(out))[split]
    if bare:
        ds = ds.remove_columns([c for c in ds.column_names if c.startswith("ref_") or c.endswith("_tokens")])
    return ds


def trl_values(model, out, tmp_path, peft_config=None) -> dict:
    """TRL's own precompute: {row id: (ref_chosen_logps, ref_rejected_logps)}, with the trainer's reference setup."""
    from transformers import AutoTokenizer
    from trl import DPOTrainer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_path()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = DPOTrainer(
            model=model,
            ref_model=None,
            args=dpo_args(tmp_path),
            train_dataset=dataset(out, bare=True),
            processing_class=tok,
            peft_config=peft_config,
        )
    assert trainer.ref_model is None
    ds = trainer.train_dataset
    return {
        i: (c, r) for i, c, r in zip(ds["id"], ds["ref_chosen_logps"], ds["ref_rejected_logps"], strict=True)
    }


def score(out, **options) -> dict:
    """prefkit's values for the same setup: {row id: (chosen, rejected)} of the rows it scored."""
    from prefkit.reflogps.job import reflogps

    reflogps(
        out,
        str(tiny_model_path()),
        max_length=MAX_LENGTH,
        device="cpu",
        dtype="float32",
        overwrite=True,
        **options,
    )
    ds = dataset(out)
    return {
        i: (c, r)
        for i, c, r in zip(ds["id"], ds["ref_chosen_logps"], ds["ref_rejected_logps"], strict=True)
        if c is not None
    }


def assert_equal_values(ours: dict, theirs: dict, other: dict | None = None) -> None:
    assert ours and set(ours) == set(theirs)
    keys = sorted(ours)
    mine = np.array([ours[k] for k in keys], dtype=np.float64)
    trls = np.array([theirs[k] for k in keys], dtype=np.float64)
    np.testing.assert_allclose(mine, trls, rtol=1e-4, atol=1e-4)
    if other is not None:  # the setup matters: another setup's values are far outside the tolerance
        others = np.array([other[k] for k in keys], dtype=np.float64)
        assert (np.abs(others - trls) / (1e-4 + 1e-4 * np.abs(trls))).max() > 10


@pytest.fixture(scope="module")
def full_precision(built):
    return score(built)


def test_qlora_4bit_nf4_equals_trl_with_peft_config(built, tmp_path, full_precision):
    ours = score(built, **QLORA)
    theirs = trl_values(load_base(QLORA), built, tmp_path, peft_config=lora_config())
    assert_equal_values(ours, theirs, other=full_precision)
    section = dataset_manifest(built)["reflogps"]
    assert section["quantization"] == {
        "method": "bitsandbytes",
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
        "bnb_4bit_compute_dtype": "float32",
    }
    assert section["adapter"] is None


def test_8bit_equals_trl_with_peft_config(built, tmp_path, full_precision):
    """LLM.int8() without outlier decomposition (threshold 0): each row's value is its own, and TRL's."""
    int8 = {"load_in_8bit": True, "llm_int8_threshold": 0.0}
    ours = score(built, **int8)
    theirs = trl_values(load_base(int8), built, tmp_path, peft_config=lora_config())
    assert_equal_values(ours, theirs, other=full_precision)
    quant = dataset_manifest(built)["reflogps"]["quantization"]
    assert quant == {"method": "bitsandbytes", "load_in_8bit": True, "llm_int8_threshold": 0.0}


def test_8bit_with_outlier_threshold_is_refused(built):
    """With transformers' default threshold 6.0 a row's value depends on its batch: no value is TRL's."""
    from prefkit.reflogps.job import reflogps

    with pytest.raises(ModelError, match="depend on which rows share a batch") as err:
        reflogps(built, str(tiny_model_path()), device="cpu", load_in_8bit=True, overwrite=True)
    assert "--llm-int8-threshold 0" in err.value.hint


def _peft_model(quant: dict | None, adapter_path):
    from peft import PeftModel

    return PeftModel.from_pretrained(load_base(quant), str(adapter_path), is_trainable=True)


def test_adapter_on_4bit_base_equals_trls_ref_adapter(built, tmp_path, adapter_path):
    base_values = score(built, **QLORA)
    ours = score(built, adapter=str(adapter_path), **QLORA)
    theirs = trl_values(_peft_model(QLORA, adapter_path), built, tmp_path)
    assert_equal_values(ours, theirs, other=base_values)
    adapter = dataset_manifest(built)["reflogps"]["adapter"]
    assert adapter["source"] == "local" and len(adapter["weights_sha256"]) == 64
    assert len(adapter["tensors_sha256"]) == 64


def test_adapter_full_precision_equals_trls_ref_adapter(built, tmp_path, adapter_path, full_precision):
    ours = score(built, adapter=str(adapter_path))
    theirs = trl_values(_peft_model(None, adapter_path), built, tmp_path)
    assert_equal_values(ours, theirs, other=full_precision)


def dataset_manifest(out) -> dict:
    import json

    return json.loads((out / "prefkit.json").read_text())


def test_cli_flags_record_and_verify_uses_the_recorded_setup(built, capsys):
    from tests.reflogps_data import run_cli

    model = str(tiny_model_path())
    args = [
        "reflogps",
        str(built),
        "--model",
        model,
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--overwrite",
        "-q",
    ]
    code, _, err = run_cli(
        [*args, "--max-length", str(MAX_LENGTH), "--load-in-4bit", "--bnb-4bit-use-double-quant"], capsys
    )
    assert code == 0, err
    quant = dataset_manifest(built)["reflogps"]["quantization"]
    assert (
        quant["load_in_4bit"] and quant["bnb_4bit_use_double_quant"] and quant["bnb_4bit_quant_type"] == "nf4"
    )
    card = (built / "README.md").read_text()
    assert "| quantization | `4-bit nf4, double quantization, compute float32` |" in card
    code, out, err = run_cli(
        ["verify", str(built), "--sample", "4", "--device", "cpu", "--json", "-q"], capsys
    )
    assert code == 0, err  # the recorded 4-bit setup is loaded again
    import json

    report = json.loads(out)
    assert report["warnings"] == [] and report["max_rel_diff"] < 1e-4 and report["hint"] is None
    # the same model in 8-bit is another setup: verify says so, and its hint says to verify the recorded one
    code, _, err = run_cli(
        [
            "verify",
            str(built),
            "--model",
            model,
            "--load-in-8bit",
            "--llm-int8-threshold",
            "0",
            "--sample",
            "4",
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert code == 1
    assert "Warning: the quantization (8-bit) differs from the one the set was scored with (4-bit nf4" in err
    assert "verify with the recorded one" in err


def test_flags_that_exclude_each_other(built, capsys):
    from tests.reflogps_data import run_cli

    code, _, err = run_cli(
        ["reflogps", str(built), "--model", str(tiny_model_path()), "--load-in-4bit", "--load-in-8bit"],
        capsys,
    )
    assert code == 1 and "exclude each other" in err


def test_a_checkpoint_without_its_lm_head_is_refused_before_scoring(built, capsys):
    """A sequence-classification reward model's checkpoint loaded as a causal LM has no LM head: transformers would
    initialise one at random (two runs: two different sets of values). Refused, with `prefkit score` as the hint."""
    from prefkit.loading.model import load_model
    from tests.reflogps_data import run_cli

    reward = str(tiny_model_path(reward=True))
    with pytest.raises(ModelError, match=r"lm_head.weight.*at random") as err:
        load_model(reward, device="cpu")
    assert "prefkit score" in err.value.hint and "score.weight" in err.value.hint
    code, _, err_text = run_cli(
        ["reflogps", str(built), "--model", reward, "--device", "cpu", "--overwrite"], capsys
    )
    assert code == 1 and "Hint:" in err_text and "prefkit score" in err_text
    # tied embeddings are not missing weights: such a model loads
    load_model(str(tiny_model_path(tie_word_embeddings=True)), device="cpu")


def test_score_takes_the_same_flags_and_equals_the_4bit_reward_models_own_forward(tmp_path, capsys):
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tests.reflogps_data import run_cli

    out = shutil.copytree(build_set(tmp_path / "b", n=6), tmp_path / "set")
    reward = tiny_model_path(reward=True)
    args = ["score", str(out), "--reward-model", str(reward), "--device", "cpu", "--dtype", "float32", "-q"]
    code, _, err = run_cli([*args, "--load-in-4bit", "--bnb-4bit-use-double-quant"], capsys)
    assert code == 0, err
    assert dataset_manifest(out)["rm_scores"]["quantization"]["load_in_4bit"] is True
    tok = AutoTokenizer.from_pretrained(str(reward))
    model = AutoModelForSequenceClassification.from_pretrained(
        str(reward), dtype=torch.float32, quantization_config=bnb(**QLORA)
    ).eval()
    rows = dataset(out).to_list()
    for row in rows:
        ids = tok.apply_chat_template(row["prompt"] + row["chosen"], tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        with torch.inference_mode():
            want = float(model(input_ids=torch.tensor([ids])).logits[0, 0])
        assert row["rm_chosen"] == pytest.approx(want, rel=1e-4, abs=1e-5)


def test_hub_adapter_with_revision_is_the_local_adapter(built, adapter_path, hub):
    """An adapter by Hub id (local fake Hub) at a commit: recorded with the resolved commit, and its hashes and
    values are the local folder's."""
    from prefkit.loading.model import weights_hash

    repo = hub.unique_id("me/tiny-sft-lora")
    files = {p.name: p.read_bytes() for p in adapter_path.iterdir() if p.is_file()}
    sha = hub.create_dataset_repo(repo, files, repo_type="model")
    hub.add_commit(repo, {"README.md": "newer commit"}, repo_type="model")
    local = score(built, adapter=str(adapter_path))
    local_adapter = dataset_manifest(built)["reflogps"]["adapter"]
    # (the same content is the same job: without resume=False the run would find the set complete)
    remote = score(built, adapter=repo, adapter_revision=sha, resume=False)
    adapter = dataset_manifest(built)["reflogps"]["adapter"]
    assert adapter["source"] == "hub" and adapter["revision"] == sha and adapter["adapter"] == repo
    assert adapter["weights_sha256"] == weights_hash(adapter_path) == local_adapter["weights_sha256"]
    assert adapter["tensors_sha256"] == local_adapter["tensors_sha256"]
    assert remote == local
