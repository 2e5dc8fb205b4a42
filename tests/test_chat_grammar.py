"""Valid data kept, broken data refused: prompts holding tool calls and their results (the chat-message grammar
TRL and OpenAI document), with matching ``tool_call_id``s."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from prefkit import build
from prefkit.record import decode_row
from tests.tinymodel import tiny_model_path

CALL = {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": {"zone": "UTC"}}}


def _row(prompt_tail: list[dict], answer: str = "It is noon.") -> dict:
    return {
        "prompt": [
            {"role": "user", "content": "What time is it?"},
            {"role": "assistant", "content": "", "tool_calls": [CALL]},
            *prompt_tail,
        ],
        "chosen": [{"role": "assistant", "content": answer}],
        "rejected": [{"role": "assistant", "content": "I do not know."}],
    }


ROWS = {
    "ends_with_tool": _row([{"role": "tool", "content": "12:00", "tool_call_id": "call_1"}]),
    "tool_then_user": _row(
        [{"role": "tool", "content": "12:00", "tool_call_id": "call_1"}, {"role": "user", "content": "And?"}]
    ),
    "tool_without_id": _row([{"role": "tool", "content": "12:00", "name": "get_time"}]),
    "wrong_id": _row([{"role": "tool", "content": "12:00", "tool_call_id": "call_9"}]),
    "tool_without_call": {
        "prompt": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "tool", "content": "12:00", "tool_call_id": "call_1"},
        ],
        "chosen": [{"role": "assistant", "content": "a"}],
        "rejected": [{"role": "assistant", "content": "b"}],
    },
    "starts_with_tool": {
        "prompt": [{"role": "tool", "content": "12:00"}, {"role": "user", "content": "Hi"}],
        "chosen": [{"role": "assistant", "content": "a"}],
        "rejected": [{"role": "assistant", "content": "b"}],
    },
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("tools")
    source = folder / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in ROWS.values()))
    result = build(source, folder / "out", full_rejects=True)
    return folder / "out", result.manifest


def test_tool_call_prompts_are_kept_and_broken_ones_refused(built):
    out, manifest = built
    assert manifest["splits"]["train"]["kept"] == 3
    assert manifest["splits"]["train"]["invalid"] == {"tool_call_id_mismatch": 2, "bad_prompt_roles": 1}
    rejects = pq.read_table(out / "rejects" / "train.parquet").to_pylist()
    names = list(ROWS)
    assert {names[r["source_index"]]: r["reason"] for r in rejects} == {
        "wrong_id": "tool_call_id_mismatch",
        "tool_without_call": "tool_call_id_mismatch",
        "starts_with_tool": "bad_prompt_roles",
    }


def test_kept_tool_prompts_render_as_trl_renders_the_source(built):
    """TRL's own chat-template step gives the same prompt text for the built row as for the source row."""
    from transformers import AutoTokenizer
    from trl.data_utils import apply_chat_template

    from prefkit.chat.templates import get_chat_template

    out, _ = built
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_path()))
    tokenizer.chat_template = get_chat_template("qwen3")  # renders tool calls and tool results
    (data,) = (out / "data").glob("train-*.parquet")
    kept = [decode_row(r) for r in pq.read_table(data).to_pylist()]
    for row, name in zip(kept, ["ends_with_tool", "tool_then_user", "tool_without_id"], strict=True):
        source = ROWS[name]
        built_row = {k: row[k] for k in ("prompt", "chosen", "rejected")}
        ours = apply_chat_template(built_row, tokenizer)
        theirs = apply_chat_template(source, tokenizer)
        assert ours == theirs, name
        assert "12:00" in ours["prompt"] and source["chosen"][0]["content"] in ours["chosen"]
