"""PrecomputedRefDPOTrainer knows what it is given: the trainer's model (quantization, base weights, reference
adapter) against what scored the set, by hashes; evaluation after training on the stored columns.

The real TRL 1.16 trainer, bitsandbytes (CPU backend) and peft on the tiny model. With the policy equal to the
reference, step 0's DPO loss is ln 2 exactly when the stored values are the trainer's own reference.
"""

from __future__ import annotations

import math
import shutil
import warnings

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")
pytest.importorskip("bitsandbytes")

from prefkit.reflogps.provenance import ReferenceMismatchError
from tests.reflogps.test_reflogps_setups import MAX_LENGTH, QLORA, dataset, dpo_args, load_base, lora_config
from tests.reflogps_data import build_set
from tests.tinymodel import tiny_model_path

LN2 = math.log(2)


def _score(out, model=None, **options):
    from prefkit.reflogps.job import reflogps

    model = model or tiny_model_path()
    reflogps(out, str(model), max_length=MAX_LENGTH, device="cpu", dtype="float32", overwrite=True, **options)
    return out


@pytest.fixture(scope="module")
def qlora_set(tmp_path_factory):
    return _score(build_set(tmp_path_factory.mktemp("qlora"), n=12), **QLORA)


@pytest.fixture(scope="module")
def full_set(tmp_path_factory):
    """Scored at full precision, with a test split."""
    return _score(build_set(tmp_path_factory.mktemp("full"), splits={"train": 12, "test": 8}))


def trainer(model, out, tmp_path, split="train", **kwargs):
    from prefkit.trl import PrecomputedRefDPOTrainer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_path()))
    train = dataset(out, split).filter(lambda r: r["ref_chosen_logps"] is not None)
    return PrecomputedRefDPOTrainer(
        model=model,
        ref_model=None,
        args=dpo_args(tmp_path),
        train_dataset=train,
        processing_class=tok,
        **kwargs,
    )


def first_loss(t) -> float:
    t.train()
    return next(entry["loss"] for entry in t.state.log_history if "loss" in entry)


def test_qlora_trains_on_the_4bit_set_without_a_reference_forward(qlora_set, tmp_path, monkeypatch):
    """Step 0's loss is ln 2 up to bitsandbytes' CPU 4-bit forward with gradients, which differs from its inference
    forward by ~5e-4 relative (rewards/chosen 0.011 here); the stored values equal TRL's precompute to 1e-4
    (test_reflogps_setups). It trains: TRL's own precompute on the CPU leaves grad_norm 0.0 at step 1 in this setup
    (its no-grad 4-bit forward switches bitsandbytes' CPU layers to a path without gradients), prefkit's does not
    run that forward."""
    from trl.trainer import dpo_trainer

    calls = []
    monkeypatch.setattr(dpo_trainer.DPOTrainer, "compute_ref_log_probs", lambda *a, **k: calls.append(1))
    t = trainer(load_base(QLORA), qlora_set, tmp_path, peft_config=lora_config(), prefkit_manifest=qlora_set)
    assert calls == [] and t.ref_model is None
    assert abs(first_loss(t) - LN2) < 0.01
    step = next(entry for entry in t.state.log_history if "loss" in entry)
    assert abs(step["rewards/chosen"]) < 0.05 and step["grad_norm"] > 0
    assert calls == [], "a reference forward ran during training"


def test_other_quantization_is_refused_naming_it_and_the_fix(qlora_set, full_set, tmp_path):
    with pytest.raises(
        ReferenceMismatchError, match=r"the quantization \(none: full precision\) differs"
    ) as err:
        trainer(load_base(None), qlora_set, tmp_path, peft_config=lora_config(), prefkit_manifest=qlora_set)
    assert "--load-in-4bit --bnb-4bit-quant-type nf4 --bnb-4bit-use-double-quant" in str(err.value)
    # the set scored at full precision, the trainer QLoRA: refused, unless chosen on purpose
    with pytest.raises(ReferenceMismatchError, match=r"the quantization \(4-bit nf4") as err:
        trainer(load_base(QLORA), full_set, tmp_path, peft_config=lora_config(), prefkit_manifest=full_set)
    assert "prefkit_full_precision_reference=True" in str(err.value)


def test_full_precision_references_for_qlora_are_a_recorded_choice(full_set, tmp_path):
    from prefkit.trl import FULL_PRECISION_TAG, PrefkitWarning

    with pytest.warns(PrefkitWarning, match="scored at full precision and this model is quantized"):
        t = trainer(
            load_base(QLORA),
            full_set,
            tmp_path,
            peft_config=lora_config(),
            prefkit_manifest=full_set,
            prefkit_full_precision_reference=True,
        )
    assert t.prefkit_reference["full_precision_choice"] is True
    assert FULL_PRECISION_TAG in t._tag_names and FULL_PRECISION_TAG in t.model.model_tags
    loss = first_loss(t)
    assert abs(loss - LN2) < 0.05  # near, not exactly, ln 2: the policy is 4-bit, the reference was not


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """Two LoRA adapters with random weights, and a copy of the first at another path."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("adapters")
    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(str(tiny_model_path()), dtype=torch.float32)
        config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        get_peft_model(base, config).save_pretrained(str(root / f"lora{seed}"))
        paths.append(root / f"lora{seed}")
    shutil.copytree(paths[0], root / "copy-of-lora1")
    return paths[0], paths[1], root / "copy-of-lora1"


def _peft(path):
    from peft import PeftModel

    return PeftModel.from_pretrained(load_base(None), str(path), is_trainable=True)


def test_adapter_compared_by_its_tensors_not_its_path(tmp_path_factory, adapters, tmp_path):
    first, second, copy = adapters
    out = _score(build_set(tmp_path_factory.mktemp("adapter"), n=12), adapter=str(first))
    t = trainer(_peft(copy), out, tmp_path, prefkit_manifest=out)  # the same adapter at another path
    assert abs(first_loss(t) - LN2) < 1e-4  # the policy starts as base + adapter = TRL's "ref" copy
    with pytest.raises(ReferenceMismatchError, match=r"the adapter \(none\) differs") as err:
        trainer(load_base(None), out, tmp_path, peft_config=lora_config(), prefkit_manifest=out)
    assert "--adapter" in str(err.value)
    with pytest.raises(ReferenceMismatchError, match=r"the adapter .* differs"):
        trainer(_peft(second), out, tmp_path, prefkit_manifest=out)


def test_base_weights_compared_by_hash_not_path(full_set, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    source = tiny_model_path()
    same = shutil.copytree(source, tmp_path / "same-weights-elsewhere")
    model = AutoModelForCausalLM.from_pretrained(str(same), dtype=torch.float32)
    from prefkit.trl import PrefkitWarning

    with warnings.catch_warnings():
        warnings.simplefilter(
            "error", PrefkitWarning
        )  # not even a warning: the files are the ones that scored it
        trainer(model, full_set, tmp_path, prefkit_manifest=full_set)
    other = shutil.copytree(
        source, tmp_path / "other-weights", ignore=shutil.ignore_patterns("*.safetensors")
    )
    changed = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    with torch.no_grad():
        changed.model.layers[0].mlp.up_proj.weight.mul_(1.01)
    changed.save_pretrained(str(other))
    model = AutoModelForCausalLM.from_pretrained(str(other), dtype=torch.float32)
    with pytest.raises(ReferenceMismatchError, match="the model's weights differs") as err:
        trainer(model, full_set, tmp_path, prefkit_manifest=full_set)
    assert "--overwrite" in str(err.value)


def _perturbed(ds, delta=3.0):
    return ds.map(lambda r: {"ref_chosen_logps": r["ref_chosen_logps"] + delta})


def test_evaluate_after_training_uses_the_stored_columns(full_set, tmp_path):
    """TRL raises "Cannot compute reference log-probs" here (full fine-tuning, no reference model kept)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_path()), dtype=torch.float32)
    t = trainer(model, full_set, tmp_path, prefkit_manifest=full_set)
    test = dataset(full_set, "test").filter(lambda r: r["ref_chosen_logps"] is not None)
    bare = test.remove_columns(["ref_chosen_logps", "ref_rejected_logps", "chosen_tokens", "rejected_tokens"])
    before_trl = t.evaluate(bare)["eval_loss"]  # step 0: TRL's own precompute with the policy as reference
    before = t.evaluate(test)["eval_loss"]
    assert abs(before - before_trl) < 1e-5 and abs(before - LN2) < 1e-4
    t.train()
    assert t.state.global_step == 1
    with pytest.raises(ValueError, match="Cannot compute reference log-probs"):
        t.evaluate(bare)  # TRL's own rule still applies where there are no columns
    after = t.evaluate(test)
    assert math.isfinite(after["eval_loss"])
    both = t.evaluate({"test": test, "shifted": _perturbed(test)})
    assert abs(both["eval_test_loss"] - after["eval_loss"]) < 1e-6
    assert abs(both["eval_shifted_loss"] - both["eval_test_loss"]) > 0.05  # the columns are what it uses
