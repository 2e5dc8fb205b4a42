"""Every built-in chat template renders exactly as the model's own template (copies in tests/templates/, their
sources in tests/templates/SOURCES.md), on plain, system, multi-turn, tool-calling and reasoning conversations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefkit.chat.templates import ChatRenderer, builtin_names, builtin_templates, get_chat_template

REAL = Path(__file__).resolve().parents[1] / "templates"
#: built-in -> (the model template it reproduces, the one for conversations with a system message)
REPRODUCES = {
    "chatml": ("teknium-OpenHermes-2.5-Mistral-7B", None),
    "llama-3": ("meta-llama-Meta-Llama-3-8B-Instruct", None),
    "mistral": ("mistralai-Mistral-7B-Instruct-v0.2", None),
    "zephyr": ("HuggingFaceH4-zephyr-7b-beta", None),
    "gemma": ("google-gemma-2-9b-it", "google-gemma-3-it.via-axolotl"),  # gemma 2 has no system role
    "phi-3": ("microsoft-Phi-3-mini-4k-instruct", None),
    "qwen": ("Qwen-Qwen2.5-7B-Instruct", None),
    "qwen3": ("Qwen-Qwen3-8B", None),
}
TOOL_TEMPLATES = ("qwen", "qwen3")


def msg(role, content, **extra):
    return {"role": role, "content": content, **extra}


PLAIN = [
    [msg("user", "What is 2+2?")],
    [msg("user", "Hi"), msg("assistant", "Hello! How can I help?"), msg("user", "Tell me a joke.")],
    [msg("user", "  spaced  \n"), msg("assistant", "\nok "), msg("user", "again")],
    [msg("user", "Hi"), msg("assistant", "Hello."), msg("user", "Bye"), msg("assistant", "Goodbye.")],
]
SYSTEM = [[msg("system", "You are terse."), *conv] for conv in PLAIN]
CALL = {"type": "function", "function": {"name": "start_timer", "arguments": {"duration": 600}}}
TOOLS = [
    {
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
]
TOOL_USE = [
    [
        msg("user", "Set a timer for 10 minutes."),
        {"role": "assistant", "tool_calls": [CALL]},
        msg("tool", "600", name="start_timer"),
        msg("assistant", "Timer set."),
    ]
]
REASONING = [
    [
        msg("user", "Which planet is red?"),
        msg("assistant", "Mars.", reasoning_content="Red planet means Mars."),
    ],
    [
        msg("user", "Which planet is red?"),
        msg("assistant", "Mars.", reasoning_content="Red planet means Mars."),
        msg("user", "And the largest?"),
    ],
]


def _both(name: str, real: str, conversations, **extra) -> list[tuple[str, str]]:
    variables = dict(builtin_templates()[name].special_tokens)
    ours = ChatRenderer(get_chat_template(name), variables)
    theirs = ChatRenderer((REAL / f"{real}.jinja").read_text(), variables)
    out = []
    for add in (False, True):
        extras = [extra or None] * len(conversations)
        out += list(
            zip(
                ours.render(conversations, add, extras),
                theirs.render(conversations, add, extras),
                strict=True,
            )
        )
    return out


def test_every_builtin_has_its_model_template():
    assert set(REPRODUCES) == set(builtin_names())


@pytest.mark.parametrize("name", list(REPRODUCES))
def test_builtin_renders_like_the_model_template(name):
    real, with_system = REPRODUCES[name]
    pairs = _both(name, real, PLAIN) + _both(name, with_system or real, SYSTEM)
    for ours, theirs in pairs:
        assert ours == theirs


@pytest.mark.parametrize("name", TOOL_TEMPLATES)
def test_tool_calls_and_reasoning_render_like_the_model_template(name):
    real = REPRODUCES[name][0]
    pairs = _both(name, real, TOOL_USE, tools=TOOLS) + _both(name, real, REASONING)
    for ours, theirs in pairs:
        assert ours == theirs
    rendered = ChatRenderer(get_chat_template(name), {}).render(TOOL_USE, extras=[{"tools": TOOLS}])[0]
    assert json.dumps(CALL["function"]["arguments"]) in rendered and "start_timer" in rendered


def test_qwen3_renders_the_reasoning_of_the_last_turn():
    out = ChatRenderer(get_chat_template("qwen3"), {}).render([REASONING[0]])[0]
    assert out.endswith(
        "<|im_start|>assistant\n<think>\nRed planet means Mars.\n</think>\n\nMars.<|im_end|>\n"
    )
    earlier = ChatRenderer(get_chat_template("qwen3"), {}).render([REASONING[1]], True)[0]
    assert "Red planet" not in earlier  # reasoning of earlier turns is left out, as Qwen3 does
