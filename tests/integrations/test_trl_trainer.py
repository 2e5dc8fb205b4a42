"""prefkit.trl.PrecomputedRefDPOTrainer on a tiny model: TRL uses prefkit's columns, without a reference model.

With the policy equal to the reference (same weights), TRL's first-step DPO loss is ln 2 exactly when the
reference columns are right; with perturbed columns it is not, which proves they are used.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

pytest.importorskip("trl")

from prefkit.reflogps.provenance import ReferenceMismatchError
from tests.reflogps_data import build_set
from tests.tinymodel import tiny_model_path

MAX_LENGTH = 96
LN2 = math.log(2)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A built set of 24 rows (some too long for MAX_LENGTH) with prefkit's reference columns."""
    from prefkit.reflogps.job import reflogps

    model = tiny_model_path()
    out = build_set(tmp_path_factory.mktemp("trl"), n=24)
    reflogps(out, str(model), max_length=MAX_LENGTH, device="cpu")
    return out, model


def _load(out):
    import datasets

    return datasets.load_dataset(str(out))["train"]


def _trainer(model_path, dataset, tmp_path, **kwargs):
    from prefkit.trl import PrecomputedRefDPOTrainer
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig

    extra = {k: kwargs.pop(k) for k in ("ld_alpha",) if k in kwargs}
    policy = AutoModelForCausalLM.from_pretrained(str(model_path))
    tokenizer = kwargs.pop("processing_class", None) or AutoTokenizer.from_pretrained(str(model_path))
    args = DPOConfig(
        output_dir=str(tmp_path / "run"),
        precompute_ref_log_probs=True,
        max_length=kwargs.pop("max_length", MAX_LENGTH),
        per_device_train_batch_size=8,
        max_steps=1,
        logging_steps=1,
        learning_rate=1e-6,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,  # TRL defaults to bf16 autocast (even on CPU); the set was scored in fp32
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
        **extra,
    )
    return PrecomputedRefDPOTrainer(
        model=policy, ref_model=None, args=args, train_dataset=dataset, processing_class=tokenizer, **kwargs
    )


def _first_loss(trainer) -> float:
    trainer.train()
    return next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)


def _count_model_inits(monkeypatch) -> list:
    from transformers import PreTrainedModel

    created = []
    original = PreTrainedModel.__init__

    def counting(self, *args, **kwargs):
        created.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "__init__", counting)
    return created


def test_columns_used_first_loss_is_ln2_and_no_reference_model(scored, tmp_path, monkeypatch):
    from trl.trainer import dpo_trainer

    out, model = scored
    dataset = _load(out)
    calls = []
    monkeypatch.setattr(dpo_trainer.DPOTrainer, "compute_ref_log_probs", lambda *a, **k: calls.append(1))
    hashed = []
    real_hash = dpo_trainer.hash_module
    monkeypatch.setattr(dpo_trainer, "hash_module", lambda m: hashed.append(1) or real_hash(m))

    from transformers import AutoModelForCausalLM

    policy_count_before = _count_model_inits(monkeypatch)
    trainer = _trainer(model, dataset, tmp_path, prefkit_manifest=out)
    # the policy itself was created inside _trainer (LlamaForCausalLM + its LlamaModel); nothing else
    assert policy_count_before == ["LlamaForCausalLM", "LlamaModel"]
    assert trainer.ref_model is None
    assert calls == [], "TRL recomputed the reference log-probs"
    assert hashed == [], "TRL hashed the weights although nothing is precomputed"
    assert isinstance(trainer.model, AutoModelForCausalLM._model_mapping[type(trainer.model.config)])
    assert abs(_first_loss(trainer) - LN2) < 1e-4


def test_perturbed_columns_change_first_loss(scored, tmp_path):
    out, model = scored
    dataset = _load(out).map(
        lambda r: {"ref_chosen_logps": None if r["ref_chosen_logps"] is None else r["ref_chosen_logps"] + 5.0}
    )
    loss = _first_loss(_trainer(model, dataset, tmp_path))
    assert abs(loss - LN2) > 0.05, loss


def test_fallback_without_columns_matches_trl_and_prefkit(scored, tmp_path):
    """No columns: TRL's own precompute runs (like plain DPOTrainer) and agrees with prefkit's values."""
    out, model = scored
    full = _load(out)
    bare = full.remove_columns(["ref_chosen_logps", "ref_rejected_logps", "chosen_tokens", "rejected_tokens"])
    trainer = _trainer(model, bare, tmp_path)
    assert trainer.ref_model is None
    trl_rows = {r["id"]: r for r in trainer.train_dataset}
    ours = {r["id"]: r for r in full}
    assert trl_rows, "TRL kept no rows"
    # TRL drops the rows whose prompt alone fills max_length; prefkit leaves exactly those null
    assert set(trl_rows) == {i for i, r in ours.items() if r["ref_chosen_logps"] is not None}
    for key in ("ref_chosen_logps", "ref_rejected_logps"):
        theirs = np.array([trl_rows[i][key] for i in trl_rows], dtype=np.float64)
        mine = np.array([ours[i][key] for i in trl_rows], dtype=np.float64)
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-4)
    for i, r in trl_rows.items():  # TRL's collator cuts prompt+completion to max_length (keep_start)
        room = MAX_LENGTH - len(r["prompt_ids"])
        assert ours[i]["chosen_tokens"] == min(len(r["chosen_ids"]), room)
        assert ours[i]["rejected_tokens"] == min(len(r["rejected_ids"]), room)
    assert abs(_first_loss(trainer) - LN2) < 1e-4


def test_manifest_mismatch_warns(scored, tmp_path):
    from prefkit.trl import PrefkitWarning

    out, model = scored
    dataset = _load(out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _trainer(model, dataset, tmp_path, prefkit_manifest=out)
    assert not [w for w in caught if issubclass(w.category, PrefkitWarning)]
    # a larger max_length keeps a row whose prompt filled the scoring max_length: refused, with the count and fixes
    with pytest.raises(ReferenceMismatchError, match=r"1 of 21 rows have no reference values") as err:
        _trainer(model, dataset, tmp_path, prefkit_manifest=out, max_length=MAX_LENGTH + 8)
    assert "--max-length 104" in str(err.value) and "dataset.filter" in str(err.value)
    # without the strict check the same differences are warnings (the values are the user's responsibility)
    with pytest.warns(PrefkitWarning, match="max_length"):
        _trainer(
            model, dataset, tmp_path, prefkit_manifest=out, max_length=MAX_LENGTH + 8, prefkit_strict=False
        )
    other = tiny_model_path(seed=1)  # another model with its own tokenizer: its token counts differ too
    with pytest.raises(ReferenceMismatchError):
        _trainer(other, dataset, tmp_path, prefkit_manifest=out)
    with pytest.warns(PrefkitWarning, match="model"):
        _trainer(other, dataset, tmp_path, prefkit_manifest=out, prefkit_strict=False)


def test_no_truncation_in_the_trainer_is_refused_without_a_manifest(scored, tmp_path):
    """Scored with max_length 96, trained with max_length=None: rows truncated at scoring would get values that
    belong to other tokens (step-0 loss 19.6 instead of ln 2): refused from the stored token counts alone."""
    out, model = scored
    dataset = _load(out).filter(lambda r: r["ref_chosen_logps"] is not None)
    with pytest.raises(ReferenceMismatchError, match=r"rows are tokenized differently .* max_length=None"):
        _trainer(model, dataset, tmp_path, max_length=None)


def test_other_chat_template_is_caught_by_the_token_counts_and_the_manifest(scored, tmp_path):
    from prefkit.trl import PrefkitWarning
    from transformers import AutoTokenizer

    from prefkit.chat.templates import get_chat_template

    out, model = scored
    dataset = _load(out).filter(lambda r: r["ref_chosen_logps"] is not None)
    tokenizer = AutoTokenizer.from_pretrained(str(model))
    tokenizer.chat_template = get_chat_template("zephyr")  # another template: other token counts
    with pytest.raises(ReferenceMismatchError, match="tokenized differently"):
        _trainer(model, dataset, tmp_path, processing_class=tokenizer)
    with pytest.warns(PrefkitWarning, match="the chat template differs"):
        _trainer(
            model, dataset, tmp_path, processing_class=tokenizer, prefkit_manifest=out, prefkit_strict=False
        )


def test_ld_alpha_recomputes_with_trl(scored, tmp_path):
    """LD-DPO length-weights the reference values inside TRL: plain-sum columns must not be used."""
    from prefkit.trl import PrefkitWarning

    out, model = scored
    dataset = _load(out)
    with pytest.warns(PrefkitWarning, match="ld_alpha"):
        trainer = _trainer(model, dataset, tmp_path, ld_alpha=0.5)
    theirs = {r["id"]: r["ref_chosen_logps"] for r in trainer.train_dataset}
    ours = {r["id"]: r["ref_chosen_logps"] for r in dataset}
    assert any(abs(theirs[i] - ours[i]) > 1e-2 for i in theirs)  # TRL's length-weighted values were computed


# ------------------------------------------------------------------------------ plain DPOTrainer on tool use

_TIMER_TOOL = {
    "type": "function",
    "function": {
        "name": "start_timer",
        "description": "Start a timer.",
        "parameters": {
            "type": "object",
            "properties": {"duration": {"type": "integer"}},
            "required": ["duration"],
        },
    },
}


def _tool_rows(n: int) -> list[dict]:
    """TRL's tool-calling preference shape: a ``tools`` column, tool calls in the prompt, and answers of
    assistant(tool_calls) -> tool -> assistant."""
    rows = []
    for i in range(n):
        call = {
            "type": "function",
            "function": {"name": "start_timer", "arguments": {"duration": 60 * (i + 1)}},
        }
        earlier = {"type": "function", "function": {"name": "start_timer", "arguments": {"duration": 30}}}
        rows.append(
            {
                "prompt": [
                    {"role": "user", "content": "Set a timer for half a minute."},
                    {"role": "assistant", "content": "", "tool_calls": [earlier]},
                    {"role": "tool", "content": "30", "name": "start_timer"},
                    {"role": "assistant", "content": "Done."},
                    {"role": "user", "content": f"Now one for {i + 1} minutes."},
                ],
                "chosen": [
                    {"role": "assistant", "content": "", "tool_calls": [call]},
                    {"role": "tool", "content": str(60 * (i + 1)), "name": "start_timer"},
                    {"role": "assistant", "content": f"Timer set for {i + 1} minutes."},
                ],
                "rejected": [{"role": "assistant", "content": "I cannot set timers."}],
                "tools": [_TIMER_TOOL],
                **({"chat_template_kwargs": {"enable_thinking": False}} if i == 1 else {}),  # some rows only
            }
        )
    return rows


@pytest.mark.skipif(
    tuple(int(p) for p in __import__("datasets").__version__.split(".")[:2]) < (5, 0),
    reason="datasets < 5.0 loads Json inside message lists (tool_calls) as text; the build warns about it",
)
def test_plain_dpo_trainer_trains_on_a_built_tool_use_set(tmp_path):
    """trl.DPOTrainer (reference model, no precompute) takes a built tool-use set as ``load_dataset`` gives it:
    the ``Json`` fields come back as objects, TRL renders tools, calls and tool answers, and one step's loss is
    finite."""
    import json

    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from prefkit import build
    from prefkit.chat.templates import get_chat_template

    source = tmp_path / "tools.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in _tool_rows(4)))
    out = tmp_path / "set"
    result = build(source, out)
    assert result.manifest["splits"]["train"]["kept"] == 4
    dataset = datasets.load_dataset(str(out))["train"]
    assert dataset[0]["tools"] == [_TIMER_TOOL]  # decoded by datasets, not JSON text
    assert dataset[0]["chosen"][0]["tool_calls"][0]["function"]["arguments"] == {"duration": 60}
    assert [r["chat_template_kwargs"] for r in dataset] == [{}, {"enable_thinking": False}, {}, {}]

    model_path = tiny_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    tokenizer.chat_template = get_chat_template("qwen3")  # a template that renders tools and tool calls
    args = DPOConfig(
        output_dir=str(tmp_path / "run"),
        precompute_ref_log_probs=False,
        max_length=None,
        per_device_train_batch_size=4,
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
    )
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(model_path)),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    assert trainer.ref_model is not None
    first = trainer.train_dataset[0]
    prompt_text = tokenizer.decode(first["prompt_ids"])
    chosen_text = tokenizer.decode(first["chosen_ids"])
    assert '"name": "start_timer"' in prompt_text and "<tool_response>\n30\n</tool_response>" in prompt_text
    assert chosen_text.startswith('<tool_call>\n{"name": "start_timer", "arguments": {"duration": 60}}')
    assert "<tool_response>\n60\n</tool_response>" in chosen_text
    loss = _first_loss(trainer)
    assert math.isfinite(loss), loss


def test_a_trl_with_another_tokenization_rule_is_refused(scored, tmp_path):
    """The manifest records the TRL rule the values follow; a trainer whose TRL tokenizes by another rule (here:
    the manifest says TRL 1.9 - 1.14.1's prompt-length split, the installed TRL splits at the common prefix) is
    refused, or warned about with prefkit_strict=False."""
    from prefkit.trl import PrefkitWarning

    from prefkit.chat.tokenize import TRL_RULES, TRL_TOKENIZATION_RULE, check_trl_rule, trl_rule_for

    out, model = scored
    manifest = json.loads((out / "prefkit.json").read_text())
    assert manifest["reflogps"]["trl_tokenization_rule"] == TRL_TOKENIZATION_RULE
    assert manifest["reflogps"]["trl_releases"] == "1.14.2..1.16"
    older = "trl-dpo-1.9..1.14.1:" + TRL_RULES[1][2]
    manifest["reflogps"]["trl_tokenization_rule"] = older
    dataset = _load(out)
    with pytest.raises(ReferenceMismatchError, match="tokenizes by 'common-prefix-split"):
        _trainer(model, dataset, tmp_path, prefkit_manifest=manifest)
    with pytest.warns(PrefkitWarning, match="prompt-length-split"):
        _trainer(model, dataset, tmp_path, prefkit_manifest=manifest, prefkit_strict=False)
    # the release table: 1.9.0 began dropping full prompts, 1.14.2 the common-prefix split, 1.16 last checked
    assert [trl_rule_for(v) for v in ("1.8.0", "1.9.0", "1.14.1", "1.14.2", "1.16.2")] == [
        TRL_RULES[0][2],
        TRL_RULES[1][2],
        TRL_RULES[1][2],
        TRL_RULES[2][2],
        TRL_RULES[2][2],
    ]
    assert check_trl_rule(None, "1.17.0")[0] == "warning" and check_trl_rule(None, "1.13.0")[0] == "error"
