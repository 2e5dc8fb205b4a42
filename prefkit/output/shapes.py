"""What each export's trainer can carry of a record, and the row conversions that need more than column moves.

A record (decoded as TRL sees it: :func:`prefkit.record.decode_row`) may use fields that a trainer has no place
for. Each ``cannot_<shape>(row)`` returns why the shape's trainer would lose part of the row (``None`` when it
carries all of it); the build drops such a row as ``export_unsupported`` with that sentence as its detail
(:mod:`prefkit.filters.exportable`), so no field is stripped in silence and no answer becomes an empty message.

The rules, each from the consumer's own code:

=============  ==========================================================================================
trainer        what it reads
=============  ==========================================================================================
TRL (DPO, KTO) every field: ``tools`` and ``chat_template_kwargs`` per row, every message field
               (``trl/trainer/dpo_trainer.py``, ``trl/trainer/kto_trainer.py``)
OpenRLHF       messages as they are, no ``tools`` / template arguments (``openrlhf/datasets/reward_dataset.py``
               ``preprocess_data``: ``apply_chat_template(data[chosen_key], tokenize=False)``); with ``--prompt_key``
               unset its DPO prompt is ``chosen[:-1]``, so an answer must be one message
LLaMA-Factory  ShareGPT: ``human`` / ``gpt`` / ``function_call`` / ``observation`` alternating, a ``system``
               and a ``tools`` JSON text column; ``chosen`` / ``rejected`` one ``gpt`` or ``function_call`` turn
               (``src/llamafactory/data/converter.py`` ``SharegptDatasetConverter``); no reasoning field
OpenAI DPO     ``input.messages`` (system / user / assistant with ``tool_calls`` / tool with ``tool_call_id``),
               ``tools``, ``parallel_tool_calls``; each output one assistant message; text only (OpenAI's
               "Direct preference optimization" guide; Azure OpenAI, Together, Fireworks take the same lines)
axolotl        ``chat_template.default``: ``role`` / ``content`` only, chosen / rejected one message
               (``src/axolotl/prompt_strategies/dpo/chat_template.py``)
NeMo-RL        ``context`` + two ``completions`` (``rank`` 0 preferred), messages passed to the template as they
               are, no tools (``nemo_rl/data/processors.py`` ``preference_preprocessor``)
torchtune      ``chosen`` / ``rejected`` conversations of ``role`` / ``content`` (``torchtune/data/
               _messages.py`` ``ChosenRejectedToMessages``)
=============  ==========================================================================================
"""

from __future__ import annotations

import json
from typing import Any

#: ShareGPT role names LLaMA-Factory reads (its ``dataset_info.json`` defaults)
SHAREGPT_FROM = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation"}


def _messages(row: dict) -> list[dict]:
    return [*row["prompt"], *row["chosen"], *row["rejected"]]


def _text(message: dict) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else ""


def _uses(row: dict) -> dict[str, bool]:
    """Which optional parts of TRL's shape a decoded record uses."""
    messages = _messages(row)
    return {
        "tools": bool(row.get("tools")),
        "chat_template_kwargs": bool(row.get("chat_template_kwargs")),
        "reasoning_content": any(m.get("reasoning_content") for m in messages),
        "tool_calls": any(m.get("tool_calls") for m in messages),
        "tool turns": any(m.get("role") == "tool" for m in messages),
        "multi-message answers": len(row["chosen"]) > 1 or len(row["rejected"]) > 1,
    }


#: the parts of TRL's shape (:func:`_uses`) each trainer has no place for
EVERYTHING = (
    "tools",
    "chat_template_kwargs",
    "reasoning_content",
    "tool_calls",
    "tool turns",
    "multi-message answers",
)
UNSUPPORTED: dict[str, tuple[str, ...]] = {
    "openrlhf": ("tools", "chat_template_kwargs", "multi-message answers"),
    "llamafactory": ("reasoning_content", "chat_template_kwargs", "multi-message answers"),
    "openai": ("reasoning_content", "chat_template_kwargs", "multi-message answers"),
    "axolotl": EVERYTHING,
    "nemo-rl": ("tools", "chat_template_kwargs"),
    "torchtune": EVERYTHING,
}


def _lacks(row: dict, trainer: str, unsupported: tuple[str, ...]) -> str | None:
    found = [name for name, used in _uses(row).items() if used and name in unsupported]
    if not found:
        return None
    return f"{trainer} has no place for {', '.join(found)}"


def cannot_openrlhf(row: dict) -> str | None:
    return _lacks(row, "OpenRLHF", UNSUPPORTED["openrlhf"])


def cannot_axolotl(row: dict) -> str | None:
    return _lacks(row, "axolotl's chat_template.default", UNSUPPORTED["axolotl"])


def cannot_torchtune(row: dict) -> str | None:
    return _lacks(row, "torchtune's preference_dataset", UNSUPPORTED["torchtune"])


def cannot_nemo_rl(row: dict) -> str | None:
    return _lacks(row, "NeMo-RL's preference_preprocessor", UNSUPPORTED["nemo-rl"])


# ------------------------------------------------------------------------------------------- LLaMA-Factory


def _function_call(message: dict) -> str:
    """LLaMA-Factory's ``function_call`` value: a JSON list of ``{name, arguments}`` (its ``FunctionFormatter``)."""
    calls = [c.get("function", c) for c in message["tool_calls"]]
    return json.dumps(
        [{"name": c["name"], "arguments": c.get("arguments", {})} for c in calls], ensure_ascii=False
    )


def _sharegpt_turn(message: dict) -> tuple[dict | None, str | None]:
    """One message as a ShareGPT turn, or why it cannot be one."""
    if message.get("tool_calls"):
        if _text(message).strip():
            return (
                None,
                "an assistant turn with both text and tool calls (a function_call turn holds calls only)",
            )
        return {"from": "function_call", "value": _function_call(message)}, None
    return {"from": SHAREGPT_FROM[message["role"]], "value": _text(message)}, None


def sharegpt_row(row: dict) -> tuple[dict | None, str | None]:
    """A decoded record as LLaMA-Factory's ShareGPT ranking example (``conversations``, ``system``,
    ``tools_json``, ``chosen``, ``rejected``), or why it cannot be one."""
    lacks = _lacks(row, "LLaMA-Factory", UNSUPPORTED["llamafactory"])
    if lacks:
        return None, lacks
    prompt = list(row["prompt"])
    system = ""
    if prompt and prompt[0]["role"] == "system":
        system, prompt = _text(prompt[0]), prompt[1:]
    turns = []
    for message in [*prompt, row["chosen"][0], row["rejected"][0]]:
        turn, why = _sharegpt_turn(message)
        if turn is None:
            return None, f"LLaMA-Factory has no place for {why}"
        turns.append(turn)
    *conversation, chosen, rejected = turns
    # SharegptDatasetConverter: human/observation at even positions, gpt/function_call at odd, an odd count
    for i, turn in enumerate([*conversation, chosen]):
        allowed = ("human", "observation") if i % 2 == 0 else ("gpt", "function_call")
        if turn["from"] not in allowed:
            return (
                None,
                "LLaMA-Factory needs turns that alternate user/tool with assistant (two tool turns in a row?)",
            )
    tools = row.get("tools")
    out = {
        "conversations": conversation,
        "system": system,
        "tools_json": json.dumps(tools, ensure_ascii=False) if tools else "",
        "chosen": chosen,
        "rejected": rejected,
    }
    return out, None


def cannot_llamafactory(row: dict) -> str | None:
    return sharegpt_row(row)[1]


# ------------------------------------------------------------------------------------------------ OpenAI


def _openai_calls(calls: list[dict], ids: list[str]) -> list[dict]:
    out = []
    for call in calls:
        function = call.get("function", call)
        arguments = function.get("arguments", {})
        call_id = call.get("id") or f"call_{len(ids)}"
        ids.append(call_id)
        out.append(
            {
                "id": call_id,
                "type": "function",
                "function": {
                    "name": function["name"],
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
    return out


def _openai_messages(messages: list[dict], ids: list[str]) -> tuple[list[dict], str | None]:
    """Messages in the Chat Completions shape: ``tool_calls`` with ids and JSON-text arguments, tool answers with
    the ``tool_call_id`` of the call they answer (a missing id: the call at the same place in the turn before)."""
    out: list[dict] = []
    turn_calls: list[str] = []
    answered = 0
    for m in messages:
        role = m["role"]
        if role == "tool":
            call_id = m.get("tool_call_id")
            if call_id is None:
                if answered >= len(turn_calls):
                    return [], "a tool answer without a tool call to answer"
                call_id = turn_calls[answered]
            answered += 1
            out.append({"role": "tool", "tool_call_id": call_id, "content": _text(m)})
            continue
        message: dict[str, Any] = {"role": role}
        if role != "assistant" or _text(m) or not m.get("tool_calls"):
            message["content"] = _text(m)
        if m.get("tool_calls"):
            start = len(ids)
            message["tool_calls"] = _openai_calls(m["tool_calls"], ids)
            turn_calls, answered = ids[start:], 0
        out.append(message)
    return out, None


def openai_row(row: dict) -> tuple[dict | None, str | None]:
    """A decoded record as one line of OpenAI's preference fine-tuning file, or why it cannot be one."""
    lacks = _lacks(row, "OpenAI's DPO format", UNSUPPORTED["openai"])
    if lacks:
        return None, lacks
    if row["prompt"][-1]["role"] != "user":
        return None, "OpenAI's DPO format needs the input's last message to be a user turn"
    ids: list[str] = []
    messages, why = _openai_messages(row["prompt"], ids)
    preferred, why_c = _openai_messages(row["chosen"], ids)
    rejected, why_r = _openai_messages(row["rejected"], ids)
    if why or why_c or why_r:
        return None, f"OpenAI's DPO format: {why or why_c or why_r}"
    line: dict[str, Any] = {"input": {"messages": messages}}
    if row.get("tools"):
        several = any(len(m.get("tool_calls") or []) > 1 for m in _messages(row))
        line["input"]["tools"] = row["tools"]
        line["input"]["parallel_tool_calls"] = several
    line["preferred_output"] = preferred
    line["non_preferred_output"] = rejected
    problems = check_openai_line(line)
    if problems:  # e.g. a tool answer naming an id no call has
        return None, f"OpenAI's DPO format: {'; '.join(problems)}"
    return line, None


def cannot_openai(row: dict) -> str | None:
    return openai_row(row)[1]


def check_openai_line(line: dict) -> list[str]:
    """The problems OpenAI's published DPO rules find in one line (empty when none): ``input.messages`` ending with
    a user turn, each output exactly one assistant message with text or tool calls, tool calls with ids and JSON
    text arguments, tool answers naming a call, ``tools`` a list of function schemas."""
    problems = []
    messages = line.get("input", {}).get("messages") or []
    if not messages or messages[-1].get("role") != "user":
        problems.append("input.messages must end with a user message")
    calls = set()
    for m in messages:
        if m.get("role") not in ("system", "developer", "user", "assistant", "tool"):
            problems.append(f"unknown role {m.get('role')!r}")
        for call in m.get("tool_calls") or []:
            calls.add(call.get("id"))
            if not isinstance(call.get("function", {}).get("arguments"), str):
                problems.append("tool call arguments must be JSON text")
        if m.get("role") == "tool" and m.get("tool_call_id") not in calls:
            problems.append("a tool message must answer an earlier tool call id")
    for key in ("preferred_output", "non_preferred_output"):
        output = line.get(key) or []
        if len(output) != 1 or output[0].get("role") != "assistant":
            problems.append(f"{key} must be exactly one assistant message")
        elif not (output[0].get("content") or output[0].get("tool_calls")):
            problems.append(f"{key} is an empty message")
    tools = line.get("input", {}).get("tools")
    if tools is not None and not all(t.get("type") == "function" and "function" in t for t in tools):
        problems.append("tools must be function schemas")
    return problems


def dataset_info(name: str, files: dict[str, list[str]]) -> dict:
    """LLaMA-Factory ``dataset_info.json`` entries for the written split files (one entry per file)."""
    entries = {}
    for split, paths in files.items():
        for i, path in enumerate(paths):
            key = f"{name}_{split}" if len(paths) == 1 else f"{name}_{split}_{i}"
            entries[key] = {
                "file_name": path,
                "formatting": "sharegpt",
                "ranking": True,
                "columns": {
                    "messages": "conversations",
                    "system": "system",
                    "tools": "tools_json",
                    "chosen": "chosen",
                    "rejected": "rejected",
                },
            }
    return entries
