"""The TRL shapes read by TRL's own trainers (TRL is in the main environment): ``KTOTrainer`` tokenizes each KTO
row like the source pair renders (tools, tool calls, reasoning and per-row template arguments included), and the
reference-free trainers ORPO and CPO/SimPO train one step on the ``trl`` export as it is."""

from __future__ import annotations

import math

import datasets
import pytest

from prefkit import build
from tests import export_catalog as X
from tests.tinymodel import tiny_model_path

NAMES = list(X.ROWS)


def _tokenizer():
    from transformers import AutoTokenizer

    from prefkit.chat.templates import get_chat_template

    tok = AutoTokenizer.from_pretrained(str(tiny_model_path()))
    tok.chat_template = get_chat_template("qwen3")  # renders tools, tool calls, reasoning, enable_thinking
    return tok


def _common(**kwargs) -> dict:
    return dict(
        max_steps=1,
        per_device_train_batch_size=2,
        learning_rate=1e-6,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
        **kwargs,
    )


def test_kto_trainer_tokenizes_each_row_like_the_source_pair(tmp_path):
    import trl
    from packaging.version import Version
    from transformers import AutoModelForCausalLM
    from trl import KTOConfig, KTOTrainer

    if Version(trl.__version__) < Version("1.16"):
        pytest.skip("checked against TRL 1.16's KTOTrainer, which passes a row's tools to the template")

    out = tmp_path / "kto"
    build(X.write_source(tmp_path / "catalog.jsonl"), out, export="kto")
    dataset = datasets.load_dataset(str(out), split="train")
    assert len(dataset) == 2 * len(NAMES)  # nothing refused, nothing lost
    tok = _tokenizer()
    trainer = KTOTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(tiny_model_path())),
        args=KTOConfig(output_dir=str(tmp_path / "run"), max_length=None, **_common()),
        train_dataset=dataset,
        processing_class=tok,
    )
    for source, row in zip(dataset, trainer.train_dataset, strict=True):
        render = X.trl_render(X.ROWS[NAMES[source["source_index"]]], tok)
        answer = "chosen" if source["label"] else "rejected"
        assert tok.decode(row["prompt_ids"]) == render["prompt"]
        assert tok.decode(row["completion_ids"]) == render[answer]


@pytest.mark.parametrize("trainer_name", ["orpo", "cpo", "simpo"])
def test_reference_free_trainers_train_a_step_on_the_trl_export(tmp_path, trainer_name):
    """ORPO and CPO / SimPO (``trl.experimental``) take the ``trl`` export as ``load_dataset`` gives it. (Their data
    path, ``maybe_apply_chat_template(example, tokenizer)``, passes ``chat_template_kwargs`` but not ``tools``.)"""
    from transformers import AutoModelForCausalLM
    from trl.experimental.cpo import CPOConfig, CPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    rows = {n: X.ROWS[n] for n in ("system", "multi_turn", "reasoning", "template_kwargs")}
    source = tmp_path / "plain.jsonl"
    X.ROWS, saved = rows, X.ROWS
    try:
        X.write_source(source)
    finally:
        X.ROWS = saved
    build(source, tmp_path / "set")
    dataset = datasets.load_dataset(str(tmp_path / "set"), split="train")
    common = _common(output_dir=str(tmp_path / "run"), max_length=256)
    if trainer_name == "orpo":
        trainer_cls, args = ORPOTrainer, ORPOConfig(**common)
    else:
        extra = {"loss_type": "simpo", "cpo_alpha": 0.0} if trainer_name == "simpo" else {}
        trainer_cls, args = CPOTrainer, CPOConfig(**common, **extra)
    trainer = trainer_cls(
        model=AutoModelForCausalLM.from_pretrained(str(tiny_model_path())),
        args=args,
        train_dataset=dataset,
        processing_class=_tokenizer(),
    )
    trainer.train()
    loss = next(e["loss"] for e in trainer.state.log_history if "loss" in e)
    assert math.isfinite(loss), loss
