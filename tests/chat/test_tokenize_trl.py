"""prefkit's TRL-exact tokenization gives the ids TRL 1.16's DPOTrainer itself produces for the same rows."""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from prefkit.chat.tokenize import DROPPED_PROMPT_TOO_LONG, tokenize_pair, tokenize_pairs
from prefkit.errors import ModelError
from tests.builders import conversational_rows, text_rows
from tests.tinymodel import tiny_model_path

trl = pytest.importorskip("trl")


def _tok(**kw):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path(**kw))


def trl_ids(rows: list[dict], tokenizer, max_length: int | None) -> list[dict]:
    """TRL's own tokenization: DPOTrainer._prepare_dataset on a datasets.Dataset of the rows."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=os.path.join(tempfile.gettempdir(), "prefkit-trl-unused"), max_length=max_length, bf16=False, use_cpu=True, report_to=[])
    fake_self = object.__new__(DPOTrainer)  # only what _prepare_dataset reads (TRL < 1.8 also needs _is_vlm)
    fake_self._tokenizer, fake_self._is_vlm = tokenizer, False
    ds = DPOTrainer._prepare_dataset(fake_self, Dataset.from_list(rows), tokenizer, args, "train")
    return list(ds)


def assert_same_as_trl(rows: list[dict], tokenizer, max_length: int | None) -> list:
    ours = tokenize_pairs(rows, tokenizer, max_length)
    theirs = trl_ids(rows, tokenizer, max_length)
    kept = [p for p in ours if p.dropped is None]
    assert len(kept) == len(theirs)
    for mine, ref in zip(kept, theirs, strict=True):
        assert mine.prompt_ids == ref["prompt_ids"]
        # TRL keeps full completions and truncates in the collator: prompt+completion [:max_length]
        room = None if max_length is None else max_length - len(ref["prompt_ids"])
        assert mine.chosen_ids == ref["chosen_ids"][:room]
        assert mine.rejected_ids == ref["rejected_ids"][:room]
    # the per-row function agrees with the batched one
    for row, pair in zip(rows[:5], ours[:5], strict=True):
        assert tokenize_pair(row, tokenizer, max_length) == pair
    return ours


def test_conversational_single_multi_turn_system():
    tok = _tok()
    rows = conversational_rows(24)
    ours = assert_same_as_trl(rows, tok, None)
    # the template supplies one BOS, no EOS is added
    assert all(p.prompt_ids[0] == tok.bos_token_id and p.prompt_ids[1] != tok.bos_token_id for p in ours)
    assert all(p.chosen_ids[-1] != tok.eos_token_id for p in ours)


def test_text_rows_bos_eos():
    tok = _tok()
    rows = text_rows(24)
    ours = assert_same_as_trl(rows, tok, None)
    assert all(p.chosen_ids[-1] == tok.eos_token_id and p.rejected_ids[-1] == tok.eos_token_id for p in ours)
    assert all(p.chosen_ids.count(tok.eos_token_id) == 1 for p in ours)  # no double EOS
    # merges across the prompt/completion boundary shorten the common prefix in some rows
    assert any(len(p.prompt_ids) < p.prompt_tokens_full for p in ours)


def test_text_rows_tokenizer_without_bos():
    assert_same_as_trl(text_rows(12, seed=5), _tok(bos=False), None)


def test_implicit_prompt_text():
    rows = [
        {"chosen": r["prompt"] + " " + r["chosen"], "rejected": r["prompt"] + " " + r["rejected"]}
        for r in text_rows(8)
    ]
    assert_same_as_trl(rows, _tok(), None)


def test_truncation_and_prompt_too_long():
    tok = _tok()
    rows = conversational_rows(30, seed=3)
    lengths = [len(p.prompt_ids) for p in tokenize_pairs(rows, tok, None)]
    max_length = sorted(lengths)[len(lengths) // 2] + 5  # about half the prompts fit, most completions cut
    ours = assert_same_as_trl(rows, tok, max_length)
    dropped = [p for p in ours if p.dropped]
    assert dropped and all(p.dropped == DROPPED_PROMPT_TOO_LONG and not p.chosen_ids for p in dropped)
    kept = [p for p in ours if not p.dropped]
    assert any(p.truncated for p in kept)
    assert all(len(p.prompt_ids) + len(p.chosen_ids) <= max_length for p in kept)
    assert_same_as_trl(text_rows(20, seed=4), tok, 12)


def test_tools_and_chat_template_kwargs():
    tok = _tok()
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    rows = conversational_rows(6, seed=7)
    with_tools = [{**r, "tools": json.dumps([tool])} for r in rows]
    ours = assert_same_as_trl(with_tools, tok, None)
    plain = tokenize_pairs(rows, tok, None)
    assert all(
        len(a.prompt_ids) > len(b.prompt_ids) for a, b in zip(ours, plain, strict=True)
    )  # tools were rendered
    # enable_thinking=False changes the generation prompt only: the split moves to the common prefix
    thinking = [{**r, "chat_template_kwargs": {"enable_thinking": False}} for r in rows]
    ours = assert_same_as_trl(thinking, tok, None)
    assert all(p.prompt_tokens_full > len(p.prompt_ids) for p in ours)


def test_columns_input_and_missing_template():
    tok = _tok()
    rows = conversational_rows(4)
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    assert tokenize_pairs(columns, tok, 64) == tokenize_pairs(rows, tok, 64)
    with pytest.raises(ModelError, match="the tokenizer has no chat template") as err:
        tokenize_pairs(rows, _tok(chat_template=False), 64)
    assert err.value.hint and "--chat-template" in err.value.hint
