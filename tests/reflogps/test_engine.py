"""The scoring engine gives TRL 1.16's own precomputed reference log-probs, and its fast paths equal the plain one."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

from prefkit.chat.tokenize import tokenize_pairs
from prefkit.errors import ModelError
from prefkit.reflogps import engine_settings, score_pairs, score_pairs_plain, self_test
from tests.builders import conversational_rows, text_rows
from tests.tinymodel import tiny_model_path

trl = pytest.importorskip("trl")

RTOL = 1e-4


def _load(**kw):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_model_path(**kw)
    return AutoModelForCausalLM.from_pretrained(path, dtype="float32"), AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def model_tok():
    return _load()


def trl_precompute(model, tok, rows, max_length):
    """TRL's own values: DPOTrainer(precompute_ref_log_probs=True) on the rows; returns its train dataset."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        output_dir=os.path.join(tempfile.gettempdir(), "prefkit-trl-unused"),
        max_length=max_length,
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=8,
        bf16=False,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
    )
    trainer = DPOTrainer(
        model=model, ref_model=None, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok
    )
    assert trainer.ref_model is None
    return trainer.train_dataset


def assert_close(ours, theirs):
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=1e-4)


def check_against_trl(model, tok, rows, max_length):
    pairs = tokenize_pairs(rows, tok, max_length)
    ds = trl_precompute(model, tok, rows, max_length)
    kept = [i for i, p in enumerate(pairs) if not p.dropped]
    assert len(kept) == len(ds)
    assert [pairs[i].prompt_ids for i in kept] == ds["prompt_ids"]  # same rows, same order
    chosen, rejected = score_pairs(model, pairs)
    assert np.isnan(chosen[[i for i, p in enumerate(pairs) if p.dropped]]).all()
    assert_close(chosen[kept], ds["ref_chosen_logps"])
    assert_close(rejected[kept], ds["ref_rejected_logps"])
    # a wrong value would be caught: the values differ between rows by far more than the tolerance
    assert np.ptp(chosen[kept]) > 100 * RTOL * np.abs(chosen[kept]).max()
    return pairs, chosen, rejected


def test_conversational_multiturn_system_truncated_equal_trl(model_tok):
    model, tok = model_tok
    rows = conversational_rows(20, seed=11)  # single-turn, multi-turn, system messages
    lengths = sorted(len(p.prompt_ids) for p in tokenize_pairs(rows, tok, None))
    max_length = lengths[-3] + 8  # the longest prompts are dropped, many completions cut
    pairs, _, _ = check_against_trl(model, tok, rows, max_length)
    assert any(p.truncated for p in pairs if not p.dropped)
    assert any(p.dropped for p in pairs)


def test_text_rows_equal_trl(model_tok):
    model, tok = model_tok
    check_against_trl(model, tok, text_rows(16, seed=12), 40)


def _fast_vs_plain(model, pairs):
    ref_c, ref_r = score_pairs_plain(model, pairs)
    for sharing in (True, False):
        for budget in (64, 300, 100_000):  # many small batches (padding), mixed, one batch
            c, r = score_pairs(model, pairs, token_budget=budget, prefix_sharing=sharing, lm_head_chunk=13)
            assert_close(c, ref_c)
            assert_close(r, ref_r)


def test_prefix_sharing_and_packing_equal_plain(model_tok):
    model, tok = model_tok
    _fast_vs_plain(model, tokenize_pairs(conversational_rows(12, seed=13), tok, 60))


def test_tied_embeddings_eager_attention():
    from transformers import AutoModelForCausalLM

    _, tok = _load()
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_path(tie_word_embeddings=True), attn_implementation="eager", dtype="float32"
    )
    _fast_vs_plain(model, tokenize_pairs(conversational_rows(6, seed=14), tok, None))


def test_oom_halves_budget_and_retries(model_tok):
    import torch

    model, tok = model_tok
    pairs = tokenize_pairs(conversational_rows(10, seed=15), tok, None)
    expected = score_pairs(model, pairs, token_budget=4096)
    backbone = model.base_model
    original = backbone.forward
    seen: list[int] = []

    def limited(*args, **kwargs):
        tokens = kwargs["input_ids"].numel()
        seen.append(tokens)
        if tokens > 400:
            raise torch.OutOfMemoryError("simulated: budget-limited device")
        return original(*args, **kwargs)

    backbone.forward = limited
    try:
        got = score_pairs(model, pairs, token_budget=4096)
        with pytest.raises(ModelError, match="out of memory on a single sequence"):  # not a loop
            backbone.forward = lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError("simulated"))
            score_pairs(model, pairs, token_budget=4096)
    finally:
        del backbone.forward
    assert max(seen) > 400 and len(seen) > 2  # failed once, then ran smaller batches
    assert_close(got[0], expected[0])
    assert_close(got[1], expected[1])


def test_self_test_passes_and_detects_leaking_packing(model_tok):
    model, _ = model_tok
    result = self_test(model)
    assert set(result) == {"prefix_sharing", "packed"} and max(result.values()) < 1e-3
    backbone = model.base_model
    original = backbone.forward

    def no_mask(*args, **kwargs):  # a broken packing: the 4D mask is lost, answers see each other
        kwargs.pop("attention_mask", None)
        kwargs.pop("position_ids", None)
        return original(*args, **kwargs)

    backbone.forward = no_mask
    try:
        with pytest.raises(ModelError, match="self-test"):
            self_test(model)
    finally:
        del backbone.forward


def test_progress_and_settings(model_tok):
    model, tok = model_tok
    pairs = tokenize_pairs(conversational_rows(7, seed=16), tok, None)
    for sharing in (True, False):
        done = []
        score_pairs(
            model,
            pairs,
            prefix_sharing=sharing,
            token_budget=200,
            progress=lambda n, t, done=done: done.append((n, t)),
        )
        assert sum(n for n, _ in done) == pytest.approx(len(pairs))
        assert sum(t for _, t in done) > 0
    settings = engine_settings(model, prefix_sharing=True)
    assert settings["dtype"] == "float32" and settings["prefix_sharing"] is True
    assert settings["token_budget"] > 0 and settings["lm_head_chunk"] > 0
    assert engine_settings()["engine_version"]
