"""Token-length filters and text output: TRL's counts, boundaries, the build integration."""

from __future__ import annotations

import json
import random

import pyarrow.parquet as pq
import pytest

from prefkit.chat.lengths import message_token_lengths, text_token_lengths
from prefkit.chat.render import MessageRows
from prefkit.chat.target import Target
from prefkit.chat.templates import ChatRenderer, builtin_names, get_chat_template
from prefkit.chat.tokenize import tokenize_pairs
from prefkit.errors import SelectionError
from prefkit.filters.tokens import TokenFilterOptions, drop_reasons
from tests.builders import conversations, write_rows
from tests.family_tokenizers import family_tokenizer
from tests.tinymodel import random_text, tiny_model  # noqa: F401 (fixture)


def rows_as_dicts(rows):
    return [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in rows]


def _target(tok):
    """What counts with ``tok`` and its own chat template."""
    return Target(ChatRenderer.from_tokenizer(tok), "tokenizer", tok)


def trl_lengths(rows, tok):
    """Independent counts: prefkit.chat.tokenize.tokenize_pairs (checked against TRL in test_tokenize_trl.py)."""
    pairs = tokenize_pairs(rows, tok, None)
    return [(len(t.prompt_ids), len(t.chosen_ids), len(t.rejected_ids)) for t in pairs]


@pytest.mark.parametrize("name", builtin_names())
def test_message_lengths_equal_trl_rule(name):
    tok = family_tokenizer(name, get_chat_template(name))
    rows = conversations(2)
    lengths = message_token_lengths(_target(tok), MessageRows(*zip(*rows, strict=True)))
    expected = trl_lengths(rows_as_dicts(rows), tok)
    assert list(zip(lengths.prompt, lengths.chosen, lengths.rejected, strict=True)) == expected
    totals = message_token_lengths(_target(tok), MessageRows(*zip(*rows, strict=True)), need_prompt=False)
    assert totals.chosen_total == [p + c for p, c, _ in expected]
    assert totals.rejected_total == [p + r for p, _, r in expected]


def test_text_lengths_equal_trl_rule(tiny_model):  # noqa: F811
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    rng = random.Random(3)
    rows = [
        {
            "prompt": random_text(rng, 8),
            "chosen": random_text(rng, 5),
            "rejected": random_text(rng, 9) + tok.eos_token,
        }
        for _ in range(6)
    ]
    lengths = text_token_lengths(tok, *([r[k] for r in rows] for k in ("prompt", "chosen", "rejected")))
    assert list(zip(lengths.prompt, lengths.chosen, lengths.rejected, strict=True)) == trl_lengths(rows, tok)


def test_drop_reasons_order_and_bounds():
    from prefkit.chat.lengths import TokenLengths

    lengths = TokenLengths(chosen_total=[10, 11, 10, 10], rejected_total=[9, 9, 10, 6], prompt=[5, 5, 7, 5])
    opts = TokenFilterOptions(max_length=10, max_prompt_length=6, min_answer_tokens=2)
    assert drop_reasons(lengths, opts) == [
        None,
        "over_max_length",
        "over_max_prompt_length",
        "answer_too_short",
    ]
    assert drop_reasons(lengths, TokenFilterOptions(min_answer_tokens=1)) == [None] * 4


# ------------------------------------------------------------------------------------------------ through build


def kept_messages(result):
    (table,) = result.splits.values()
    return [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in table.to_pylist()]


def test_max_length_boundary_through_build(tiny_model, tmp_path):  # noqa: F811
    from transformers import AutoTokenizer

    from prefkit.pipeline import build

    data = write_rows(tmp_path / "d.jsonl")
    everything = build(str(data), keep_ties=True)
    rows = kept_messages(everything)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    lengths = trl_lengths(rows, tok)
    longest = [p + max(c, r) for p, c, r in lengths]
    limit = sorted(longest)[len(longest) // 2]
    for max_length, row_kept in ((limit, True), (limit - 1, False)):
        result = build(
            str(data),
            tmp_path / f"o{max_length}",
            keep_ties=True,
            tokenizer=str(tiny_model),
            max_length=max_length,
        )
        kept = kept_messages(result)
        assert len(kept) == sum(t <= max_length for t in longest)
        boundary_row = rows[longest.index(limit)]
        assert (boundary_row in kept) is row_kept
        counts = result.manifest["totals"]
        assert counts["dropped"].get("over_max_length", 0) == sum(t > max_length for t in longest)
        assert counts["read"] == counts["kept"] + sum(counts["dropped"].values()) + sum(
            counts["invalid"].values()
        )
        entry = json.loads((tmp_path / f"o{max_length}" / "prefkit.json").read_text())["tokenizer"]
        assert entry["max_length"] == max_length and len(entry["hash"]) == 64 and entry["chat_template_hash"]


def test_prompt_and_answer_bounds_through_build(tiny_model, tmp_path):  # noqa: F811
    from transformers import AutoTokenizer

    from prefkit.pipeline import build

    data = write_rows(tmp_path / "d.jsonl", seed=1)
    rows = kept_messages(build(str(data), keep_ties=True))
    lengths = trl_lengths(rows, AutoTokenizer.from_pretrained(tiny_model))
    prompt_limit = sorted(p for p, _, _ in lengths)[len(lengths) // 2]
    answer_min = sorted(min(c, r) for _, c, r in lengths)[len(lengths) // 2]
    result = build(
        str(data),
        keep_ties=True,
        tokenizer=str(tiny_model),
        max_prompt_length=prompt_limit,
        min_answer_tokens=answer_min,
    )
    expected_prompt = sum(p > prompt_limit for p, _, _ in lengths)
    expected_short = sum(p <= prompt_limit and min(c, r) < answer_min for p, c, r in lengths)
    dropped = result.manifest["totals"]["dropped"]
    assert dropped.get("over_max_prompt_length", 0) == expected_prompt > 0
    assert dropped.get("answer_too_short", 0) == expected_short > 0
    assert len(kept_messages(result)) == len(rows) - expected_prompt - expected_short


def test_text_output_matches_trl_and_message_tokens(tiny_model, tmp_path):  # noqa: F811
    from transformers import AutoTokenizer
    from trl.data_utils import apply_chat_template

    from prefkit.pipeline import build

    data = write_rows(tmp_path / "d.jsonl", n=12, seed=2)
    messages = kept_messages(build(str(data), keep_ties=True))
    result = build(
        str(data), tmp_path / "text", keep_ties=True, tokenizer=str(tiny_model), output_format="text"
    )
    text_rows = [
        {k: r[k] for k in ("prompt", "chosen", "rejected")}
        for r in pq.read_table(tmp_path / "text" / "data").to_pylist()
    ]
    assert result.manifest["tokenizer"]["output_format"] == "text"
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert text_rows == [apply_chat_template(r, tok) for r in messages]  # TRL's own helper
    # TRL's text rule on the text rows: the tokenizer's BOS before the template's (double BOS), EOS appended
    as_text = tokenize_pairs(text_rows, tok, None)
    as_messages = tokenize_pairs(messages, tok, None)
    for t, m in zip(as_text, as_messages, strict=True):
        assert t.chosen_ids == [*m.chosen_ids, tok.eos_token_id]
        assert t.rejected_ids == [*m.rejected_ids, tok.eos_token_id]
        assert t.prompt_ids == [tok.bos_token_id, *m.prompt_ids]


def test_template_only_text_output_and_errors(tmp_path):
    from prefkit.pipeline import build

    data = write_rows(tmp_path / "d.jsonl", n=5)
    result = build(str(data), keep_ties=True, chat_template="chatml", output_format="text")
    (table,) = result.splits.values()
    assert table.column("prompt")[0].as_py().startswith("<|im_start|>")
    assert result.manifest["tokenizer"]["hash"] is None
    with pytest.raises(SelectionError, match="--tokenizer"):
        build(str(data), chat_template="chatml", max_length=100)
    with pytest.raises(SelectionError, match="chat template"):
        build(str(data), output_format="text")


def test_shared_head_cut_skips_tokens_that_swallow_whitespace():
    """An added token with lstrip eats the whitespace before it: cutting there would change the ids."""
    import json as _json

    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from prefkit.chat.lengths import split_markers

    base = family_tokenizer("chatml", get_chat_template("chatml"))
    spec = _json.loads(base.backend_tokenizer.to_str())
    for added in spec["added_tokens"]:
        if added["content"] == "<|im_start|>":
            added["lstrip"] = True
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_json.dumps(spec)), eos_token="<|im_end|>", pad_token="<pad>"
    )
    tok.chat_template = get_chat_template("chatml")
    assert "<|im_start|>" not in split_markers(tok) and "<|im_end|>" in split_markers(tok)
    rows = conversations(4)
    lengths = message_token_lengths(_target(tok), MessageRows(*zip(*rows, strict=True)))
    expected = trl_lengths(rows_as_dicts(rows), tok)
    assert list(zip(lengths.prompt, lengths.chosen, lengths.rejected, strict=True)) == expected
    # cutting at the lstrip token would be wrong: the whitespace it swallows is counted as a token
    full = tok("<|im_end|>\n<|im_start|>user", add_special_tokens=False)["input_ids"]
    parts = (
        tok("<|im_end|>\n", add_special_tokens=False)["input_ids"]
        + tok("<|im_start|>user", add_special_tokens=False)["input_ids"]
    )
    assert len(full) != len(parts)
