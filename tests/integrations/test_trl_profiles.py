"""TRL release profiles (`reflogps --trl-rule`): values equal that release's own precompute, and
PrecomputedRefDPOTrainer trains one step at ln 2 on them, under that release installed in its own environment.

The tests marked with a release run only where that TRL is installed (CI: one environment per release, see
docs/reflogps.md "Other TRL releases"); the rest run everywhere.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("trl")

from tests.reflogps_data import build_set
from tests.tinymodel import tiny_model_path

MAX_LENGTH = 96
LN2 = math.log(2)


def _trl_release() -> tuple[int, ...]:
    import trl

    from prefkit.chat.tokenize import _release

    return _release(trl.__version__)[:2]


def needs_trl(major_minor: tuple[int, int]):
    """Skip unless the installed TRL is that release (its profile is checked against it)."""
    return pytest.mark.skipif(
        _trl_release() != major_minor, reason=f"needs TRL {major_minor[0]}.{major_minor[1]}"
    )


def _config(tmp_path, **kwargs):
    from trl import DPOConfig

    return DPOConfig(
        output_dir=str(tmp_path / "run"),
        precompute_ref_log_probs=True,
        max_length=MAX_LENGTH,
        per_device_train_batch_size=8,
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


def _trainer(cls, model_path, dataset, tmp_path, **kwargs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy = AutoModelForCausalLM.from_pretrained(str(model_path))
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    return cls(
        model=policy,
        ref_model=None,
        args=_config(tmp_path),
        train_dataset=dataset,
        processing_class=tokenizer,
        **kwargs,
    )


@pytest.fixture(scope="module")
def scored_18(tmp_path_factory):
    from prefkit.reflogps.job import reflogps

    model = tiny_model_path()
    out = build_set(tmp_path_factory.mktemp("trl18"), n=24)
    reflogps(out, str(model), max_length=MAX_LENGTH, device="cpu", trl_rule="trl-1.8")
    return out, model


def test_profile_is_recorded_and_other_trl_refused(scored_18, tmp_path):
    """Everywhere: the set records TRL 1.0 - 1.8's rule; rows whose prompt fills max_length get 0.0 (TRL 1.8 keeps
    them); a TRL that tokenizes by another rule is refused by the trainer."""
    import datasets

    from prefkit.chat.tokenize import check_trl_rule

    out, _ = scored_18
    section = json.loads((out / "prefkit.json").read_text())["reflogps"]
    assert (
        section["trl_tokenization_rule"]
        == "trl-dpo-1.0..1.8:prompt-length-split,keep_start,keep-prompt>=max_length"
    )
    assert section["trl_releases"] == "1.0..1.8"
    rows = datasets.load_dataset(str(out))["train"]
    assert None not in rows["ref_chosen_logps"] and 0.0 in rows["ref_chosen_logps"]
    assert check_trl_rule(section["trl_tokenization_rule"], "1.16.0")[0] == "error"
    assert check_trl_rule(section["trl_tokenization_rule"], "1.8.0") is None


def test_unknown_profile_is_refused():
    from prefkit.chat.trl_rules import resolve_profile
    from prefkit.errors import OptionError

    with pytest.raises(OptionError, match=r"trl-0\.24"):  # the hint lists the profiles
        resolve_profile("trl-0.28")
    assert resolve_profile("trl-1.8").split.__name__ == "split_prompt_length"


@needs_trl((1, 8))
def test_trl_18_values_equal_its_precompute(scored_18, tmp_path):
    import datasets
    from trl import DPOTrainer

    out, model = scored_18
    ours = datasets.load_dataset(str(out))["train"]
    bare = ours.remove_columns(["ref_chosen_logps", "ref_rejected_logps", "chosen_tokens", "rejected_tokens"])
    theirs = _trainer(DPOTrainer, model, bare, tmp_path).train_dataset
    assert len(theirs) == len(ours)  # TRL 1.8 keeps every row
    for key in ("ref_chosen_logps", "ref_rejected_logps"):
        np.testing.assert_allclose(
            np.array(ours[key], dtype=np.float64),
            np.array(theirs[key], dtype=np.float64),
            rtol=1e-5,
            atol=1e-4,
        )


@needs_trl((1, 8))
def test_trl_18_trainer_first_step_is_ln2(scored_18, tmp_path):
    import datasets
    from prefkit.trl import PrecomputedRefDPOTrainer

    out, model = scored_18
    trainer = _trainer(
        PrecomputedRefDPOTrainer,
        model,
        datasets.load_dataset(str(out))["train"],
        tmp_path,
        prefkit_manifest=out,
    )
    assert trainer.ref_model is None
    trainer.train()
    loss = next(e["loss"] for e in trainer.state.log_history if "loss" in e)
    assert abs(loss - LN2) < 1e-4


@pytest.fixture(scope="module")
def scored_024(tmp_path_factory):
    from prefkit.reflogps.job import reflogps

    model = tiny_model_path()
    out = build_set(tmp_path_factory.mktemp("trl024"), n=24)
    reflogps(out, str(model), max_length=MAX_LENGTH, device="cpu", trl_rule="trl-0.24")
    return out, model


def test_legacy_profile_is_recorded(scored_024):
    """Everywhere: TRL 0.24's rule and its DPOConfig defaults are recorded; every row has values (0.24 keeps them)."""
    import datasets

    out, _ = scored_024
    section = json.loads((out / "prefkit.json").read_text())["reflogps"]
    assert section["trl_tokenization_rule"].startswith("trl-dpo-0.24..0.24:text-render")
    assert (section["truncation_mode"], section["max_prompt_length"]) == ("keep_end", 512)
    rows = datasets.load_dataset(str(out))["train"]
    assert None not in rows["ref_chosen_logps"] and None not in rows["ref_rejected_logps"]


@needs_trl((0, 24))
def test_trl_024_values_equal_its_precompute(scored_024, tmp_path):
    import datasets
    from trl import DPOTrainer

    out, model = scored_024
    ours = datasets.load_dataset(str(out))["train"]
    bare = ours.remove_columns(["ref_chosen_logps", "ref_rejected_logps", "chosen_tokens", "rejected_tokens"])
    trainer = _trainer(DPOTrainer, model, bare, tmp_path)
    trainer.get_train_dataloader()  # TRL <= 0.28 precomputes here
    theirs = trainer.train_dataset
    assert len(theirs) == len(ours)
    for key in ("ref_chosen_logps", "ref_rejected_logps"):
        np.testing.assert_allclose(
            np.array(ours[key], dtype=np.float64),
            np.array(theirs[key], dtype=np.float64),
            rtol=1e-5,
            atol=1e-4,
        )


@needs_trl((0, 24))
def test_trl_024_trainer_first_step_is_ln2_without_reference_forward(scored_024, tmp_path, monkeypatch):
    import datasets
    from prefkit.trl import PrecomputedRefDPOTrainer
    from trl import DPOTrainer

    out, model = scored_024
    calls = []
    monkeypatch.setattr(DPOTrainer, "compute_ref_log_probs", lambda *a, **k: calls.append(1))
    trainer = _trainer(
        PrecomputedRefDPOTrainer,
        model,
        datasets.load_dataset(str(out))["train"],
        tmp_path,
        prefkit_manifest=out,
    )
    assert trainer.ref_model is None
    trainer.train()
    loss = next(e["loss"] for e in trainer.state.log_history if "loss" in e)
    assert calls == [] and abs(loss - LN2) < 1e-4
