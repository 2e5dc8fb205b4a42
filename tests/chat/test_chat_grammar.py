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


# ------------------------------------------------------------------------------- implicit text rows

IMPLICIT = [
    {"chosen": "The capital of France is Paris.", "rejected": "The capital of France is Rome."},
    {"chosen": "2 + 2 = 4", "rejected": "2 + 2 = 5"},
    {"chosen": "Hello there.\nYes", "rejected": "Hello there.\nNo"},
    {"chosen": "The sky.", "rejected": "The sky is"},
    {"chosen": "The sky", "rejected": "The sky is blue"},  # a prefix: TRL cuts "The sk" / "y"
    {"chosen": "The cat sat", "rejected": "The car sat"},  # differ inside a word: TRL cuts "The ca" / "t sat"
    {"chosen": "Sky", "rejected": "Sky is blue"},  # no word boundary to cut at: no prompt
]


def test_implicit_split_cuts_at_a_word_boundary():
    """Where TRL's extract_prompt cuts at a word boundary the split is TRL's; where it cuts inside a word or
    leaves an answer one letter long, the prompt ends at the last whitespace of the common prefix."""
    from trl.data_utils import extract_prompt

    from prefkit.formats.implicit_text import split_implicit

    for row in IMPLICIT[:4]:
        theirs = extract_prompt(dict(row))
        assert split_implicit(row["chosen"], row["rejected"]) == (
            theirs["prompt"], theirs["chosen"], theirs["rejected"],
        )  # fmt: skip
    assert extract_prompt(dict(IMPLICIT[4]))["prompt"] == "The sk"  # the bug this avoids
    assert split_implicit("The sky", "The sky is blue") == ("The", " sky", " sky is blue")
    assert split_implicit("The cat sat", "The car sat") == ("The", " cat sat", " car sat")
    assert split_implicit("Sky", "Sky is blue") == ("", "Sky", "Sky is blue")


def test_implicit_text_stays_in_trl_standard_text_format(tmp_path, capsys):
    """A text source gives TRL's standard text format (strings TRL trains on as text), not chat messages;
    --output-format messages still turns it into a conversation."""
    import datasets
    from trl.data_utils import is_conversational

    from prefkit.output.stats import compute_stats

    source = tmp_path / "implicit.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in IMPLICIT))
    result = build(source, tmp_path / "out")
    assert result.manifest["splits"]["train"]["invalid"] == {"missing_prompt": 1}
    rows = datasets.load_dataset(str(tmp_path / "out"))["train"].to_list()
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows[:2]] == [
        ("The capital of France is", " Paris.", " Rome."), ("2 + 2 =", " 4", " 5"),
    ]  # fmt: skip
    assert rows[4]["prompt"] == "The" and rows[5]["chosen"] == " cat sat"
    assert not any(is_conversational(r) for r in rows)
    assert compute_stats(tmp_path / "out")["splits"]["train"]["rows"] == 6
    messages = build(source, output_format="messages").dataset["train"][0]
    assert messages["prompt"] == [{"role": "user", "content": "The capital of France is"}]
    with pytest.raises(Exception, match="only implicit-text sources"):
        build(_flat(tmp_path), output_format="plain")


def _flat(tmp_path: Path) -> Path:
    path = tmp_path / "flat.jsonl"
    path.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    return path
