"""Source rows for the export tests: one of each thing an export can lose (system prompt, multi-turn history,
reasoning, per-row template arguments, tools with a tool-calling answer, a chosen answer that is only a tool
call, tool calls in the prompt), and how TRL renders a row (what every consumer's rendering is compared with)."""

from __future__ import annotations

import json
from pathlib import Path

TIMER = {
    "type": "function",
    "function": {
        "name": "start_timer",
        "description": "Start a timer.",
        "parameters": {
            "type": "object",
            "properties": {"duration": {"type": "integer", "description": "seconds"}},
            "required": ["duration"],
        },
    },
}


def msg(role: str, content, **extra) -> dict:
    return {"role": role, "content": content, **extra}


def call(name: str, arguments: dict, **extra) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}, **extra}


#: name -> source row (TRL's conversational shape, as prefkit reads it)
ROWS: dict[str, dict] = {
    "system": {
        "prompt": [msg("system", "You are terse."), msg("user", "Capital of France?")],
        "chosen": [msg("assistant", "Paris.")],
        "rejected": [msg("assistant", "Lyon.")],
    },
    "multi_turn": {
        "prompt": [
            msg("user", "Hi"),
            msg("assistant", "Hello! How can I help?"),
            msg("user", "Name a prime."),
        ],
        "chosen": [msg("assistant", "7")],
        "rejected": [msg("assistant", "9")],
    },
    "reasoning": {
        "prompt": [msg("user", "Which planet is red?")],
        "chosen": [msg("assistant", "Mars.", reasoning_content="Red planet means Mars.")],
        "rejected": [msg("assistant", "Venus.", reasoning_content="Hot planet.")],
    },
    "template_kwargs": {
        "prompt": [msg("user", "Largest planet?")],
        "chosen": [msg("assistant", "Jupiter.")],
        "rejected": [msg("assistant", "Saturn.")],
        "chat_template_kwargs": {"enable_thinking": False},
    },
    "tool_answer": {  # TRL's tool-calling answer: assistant(tool_calls) -> tool -> assistant
        "prompt": [msg("user", "Set a timer for 10 minutes.")],
        "chosen": [
            msg("assistant", "", tool_calls=[call("start_timer", {"duration": 600})]),
            msg("tool", "600", name="start_timer"),
            msg("assistant", "Timer set for 10 minutes."),
        ],
        "rejected": [msg("assistant", "I cannot set timers.")],
        "tools": [TIMER],
    },
    "tool_call_only": {  # the chosen answer is only a tool call: never an empty message
        "prompt": [msg("user", "Start a 5 second timer.")],
        "chosen": [msg("assistant", "", tool_calls=[call("start_timer", {"duration": 5})])],
        "rejected": [msg("assistant", "Done!")],
        "tools": [TIMER],
    },
    "tool_history": {  # tool calls in the prompt, with ids
        "prompt": [
            msg("user", "Timer for 30 seconds."),
            msg("assistant", "", tool_calls=[call("start_timer", {"duration": 30}, id="c1")]),
            msg("tool", "30", name="start_timer", tool_call_id="c1"),
            msg("assistant", "Started."),
            msg("user", "Another for 60."),
        ],
        "chosen": [msg("assistant", "", tool_calls=[call("start_timer", {"duration": 60}, id="c2")])],
        "rejected": [msg("assistant", "No.")],
        "tools": [TIMER],
    },
}

#: a prompt that ends user -> assistant(tool_calls) -> tool -> user (the "integrity" change makes it valid);
#: the shapes are checked on it directly
TOOL_PROMPT = {
    "prompt": [
        msg("user", "Timer for 30 seconds."),
        msg("assistant", "", tool_calls=[call("start_timer", {"duration": 30})]),
        msg("tool", "30", name="start_timer"),
        msg("user", "Thanks. And one for 60?"),
    ],
    "chosen": [msg("assistant", "", tool_calls=[call("start_timer", {"duration": 60})])],
    "rejected": [msg("assistant", "No.")],
    "tools": [TIMER],
}


def write_source(path: Path) -> Path:
    """The catalog as a JSONL file, rows in :data:`ROWS` order (``source_index`` = position)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS.values()))
    return path


def by_index() -> list[dict]:
    return list(ROWS.values())


def trl_render(row: dict, tokenizer) -> dict[str, str]:
    """``row`` rendered by TRL (prompt with generation prompt, chosen, rejected), with its ``tools`` and
    ``chat_template_kwargs`` as TRL's DPOTrainer passes them."""
    from trl.data_utils import apply_chat_template

    return apply_chat_template(row, tokenizer, tools=row.get("tools"))


def qwen_tokenizer(family: str = "qwen3"):
    """A tokenizer with prefkit's built-in ``qwen3`` template (renders tools, tool calls, reasoning, and reads
    ``enable_thinking``), or with Qwen2.5's own template (``family="qwen2.5"``)."""
    from prefkit.chat.templates import get_chat_template
    from tests.family_tokenizers import family_tokenizer

    if family == "qwen2.5":
        template = (Path(__file__).parent / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text()
        return family_tokenizer("qwen3", template)
    return family_tokenizer("qwen3", get_chat_template("qwen3"))
