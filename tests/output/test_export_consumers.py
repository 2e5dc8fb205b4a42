"""Every export, every source shape of the catalog (tests/export_catalog.py): each row is either written and what
the consumer's loader makes of it renders like the source row does through TRL, or it is dropped as
``export_unsupported`` with a reason. Consumers that do not install here are checked by a transcription of their
rule, with the source file named; tests/output/test_export_venvs.py runs the ones that install in their own venvs."""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path

import datasets
import polars as pl
import pytest
import yaml

from prefkit import build
from prefkit.output.exports import EXPORTS
from prefkit.output.shapes import check_openai_line, openai_row, sharegpt_row
from tests import export_catalog as X

NAMES = list(X.ROWS)
#: the catalog rows each consumer has no place for (by hand, from each consumer's code)
REFUSED = {
    "trl": set(),
    "kto": set(),
    "openrlhf": {"template_kwargs", "tool_answer", "tool_call_only", "tool_history"},
    "llamafactory": {"reasoning", "template_kwargs", "tool_answer"},
    "openai": {"reasoning", "template_kwargs", "tool_answer"},
    "axolotl": set(NAMES) - {"system", "multi_turn"},
    "torchtune": set(NAMES) - {"system", "multi_turn"},
    "nemo-rl": {"template_kwargs", "tool_answer", "tool_call_only", "tool_history"},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("exports")
    source = X.write_source(tmp / "catalog.jsonl")
    out = {}
    for name in EXPORTS:
        out[name] = tmp / name
        build(source, out[name], export=name)
    return out


@pytest.fixture(scope="module")
def qwen3():
    return X.qwen_tokenizer("qwen3")


def _written(folder: Path) -> dict[str, dict]:
    """The exported rows by catalog name (``source_index`` -> name), as ``load_dataset`` gives them."""
    rows = datasets.load_dataset(str(folder), split="train")
    return {NAMES[r["source_index"]]: r for r in rows}


def _refused(folder: Path) -> dict[str, str]:
    path = folder / "rejects" / "train.parquet"
    rows = pl.read_parquet(path).to_dicts() if path.exists() else []
    return {NAMES[r["source_index"]]: r for r in rows}


@pytest.mark.parametrize("export", list(EXPORTS))
def test_each_row_is_written_or_refused_with_a_reason(built, export):
    folder = built[export]
    manifest = json.loads((folder / "prefkit.json").read_text())
    refused = _refused(folder)
    assert set(refused) == REFUSED[export]
    assert {r["reason"] for r in refused.values()} <= {"export_unsupported"}
    assert all(r["detail"] and "has no place for" in r["detail"] for r in refused.values())
    assert manifest["splits"]["train"]["dropped"] == (
        {"export_unsupported": len(REFUSED[export])} if REFUSED[export] else {}
    )
    written = {NAMES[i] for i in datasets.load_dataset(str(folder), split="train")["source_index"]}
    assert written == set(NAMES) - REFUSED[export]


def _full(render: dict[str, str], answer: str = "chosen") -> str:
    return render["prompt"] + render[answer]


def test_openrlhf_renders_like_the_source(built, qwen3):
    """OpenRLHF ``openrlhf/datasets/reward_dataset.py`` ``preprocess_data`` with ``--apply_chat_template`` and no
    prompt key: ``chosen = apply_chat_template(data["chosen"], tokenize=False)``; for DPO the prompt is
    ``apply_chat_template(data["chosen"][:-1], tokenize=False, add_generation_prompt=True)``."""
    for name, row in _written(built["openrlhf"]).items():
        source = X.trl_render(X.ROWS[name], qwen3)
        for answer in ("chosen", "rejected"):
            assert qwen3.apply_chat_template(row[answer], tokenize=False) == _full(source, answer), name
        prompt = qwen3.apply_chat_template(row["chosen"][:-1], tokenize=False, add_generation_prompt=True)
        assert prompt == source["prompt"], name


def _messages_from_sharegpt(turns: list[dict], system: str) -> list[dict]:
    """LLaMA-Factory's roles back as chat messages (``function_call`` -> assistant tool calls, ``observation`` ->
    tool), to render them with the source's template."""
    out = [X.msg("system", system)] if system else []
    back = {"human": "user", "gpt": "assistant", "observation": "tool"}
    for t in turns:
        if t["from"] == "function_call":
            calls = [{"type": "function", "function": c} for c in json.loads(t["value"])]
            out.append(X.msg("assistant", "", tool_calls=calls))
        else:
            out.append(X.msg(back[t["from"]], t["value"]))
    return out


def test_llamafactory_turns_render_like_the_source(built, qwen3):
    """LLaMA-Factory ``src/llamafactory/data/converter.py`` ``SharegptDatasetConverter``: system from the
    ``system`` column, turns alternating human|observation / gpt|function_call, an odd count for ranking, and
    ``chosen`` / ``rejected`` one gpt|function_call turn; tools from the ``tools`` column (JSON text)."""
    info = json.loads((built["llamafactory"] / "dataset_info.json").read_text())
    (entry,) = info.values()
    assert entry["columns"]["tools"] == "tools_json"
    for name, row in _written(built["llamafactory"]).items():
        turns = row["conversations"]
        assert len(turns) % 2 == 1
        for i, t in enumerate([*turns, row["chosen"]]):
            assert t["from"] in (("human", "observation") if i % 2 == 0 else ("gpt", "function_call"))
        prompt = _messages_from_sharegpt(turns, row["system"])
        tools = json.loads(row["tools_json"]) if row["tools_json"] else None
        rebuilt = {"prompt": prompt, "chosen": _messages_from_sharegpt([row["chosen"]], "")}
        rebuilt["rejected"] = _messages_from_sharegpt([row["rejected"]], "")
        assert X.trl_render({**rebuilt, "tools": tools}, qwen3) == X.trl_render(X.ROWS[name], qwen3), name
    only_call = _written(built["llamafactory"])["tool_call_only"]["chosen"]
    assert only_call["from"] == "function_call" and json.loads(only_call["value"]) == [
        {"name": "start_timer", "arguments": {"duration": 5}}
    ]


def _from_openai(messages: list[dict]) -> list[dict]:
    out = []
    for m in messages:
        m = dict(m)
        m.pop("tool_call_id", None)
        if "tool_calls" in m:
            m["tool_calls"] = [
                {
                    "type": "function",
                    "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])},
                }
                for c in m["tool_calls"]
            ]
            m.setdefault("content", "")
        out.append(m)
    return out


def test_openai_lines_follow_the_published_rules_and_render_like_the_source(built, qwen3):
    """OpenAI's DPO format (Direct preference optimization guide; Azure OpenAI, Together and Fireworks take the
    same lines): ``input.messages`` ending with a user turn, one assistant message per output, ``tools`` and
    ``parallel_tool_calls`` in ``input``."""
    folder = built["openai"]
    lines = [json.loads(s) for s in (folder / "openai" / "train.jsonl").read_text().splitlines()]
    written = _written(folder)
    assert len(lines) == len(written)
    for line, (name, _) in zip(
        lines, sorted(written.items(), key=lambda kv: NAMES.index(kv[0])), strict=True
    ):
        assert set(line) == {"input", "preferred_output", "non_preferred_output"}
        assert check_openai_line(line) == [], name
        back = {
            "prompt": _from_openai(line["input"]["messages"]),
            "chosen": _from_openai(line["preferred_output"]),
            "rejected": _from_openai(line["non_preferred_output"]),
            "tools": line["input"].get("tools"),
        }
        assert X.trl_render(back, qwen3) == X.trl_render(X.ROWS[name], qwen3), name
    only_call = next(
        ln for ln in lines if ln["input"]["messages"][-1]["content"] == "Start a 5 second timer."
    )
    (preferred,) = only_call["preferred_output"]
    assert (
        "content" not in preferred
        and preferred["tool_calls"][0]["function"]["arguments"] == '{"duration": 5}'
    )
    assert only_call["input"]["parallel_tool_calls"] is False


def test_openai_rules_catch_what_the_service_refuses():
    good = {
        "input": {"messages": [{"role": "user", "content": "Hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello"}],
        "non_preferred_output": [{"role": "assistant", "content": "Go"}],
    }
    assert check_openai_line(good) == []
    two = {**good, "preferred_output": good["preferred_output"] * 2}
    assert check_openai_line(two) == ["preferred_output must be exactly one assistant message"]
    ends_with_assistant = {
        **good,
        "input": {"messages": [*good["input"]["messages"], good["preferred_output"][0]]},
    }
    assert check_openai_line(ends_with_assistant) == ["input.messages must end with a user message"]
    empty = {**good, "non_preferred_output": [{"role": "assistant", "content": ""}]}
    assert check_openai_line(empty) == ["non_preferred_output is an empty message"]


def test_tool_call_prompts_ending_with_a_user_turn(qwen3):
    """A prompt user -> assistant(tool_calls) -> tool -> user (valid once tool-call prompts are): OpenAI gets ids
    and the tool answer the id of its call; LLaMA-Factory cannot alternate it and says so."""
    line, why = openai_row(X.TOOL_PROMPT)
    assert why is None and check_openai_line(line) == []
    call, answer = line["input"]["messages"][1:3]
    assert answer["tool_call_id"] == call["tool_calls"][0]["id"] == "call_0"
    assert line["preferred_output"][0]["tool_calls"][0]["id"] == "call_1"
    shaped, why = sharegpt_row(X.TOOL_PROMPT)
    assert shaped is None and "alternate" in why
    assert EXPORTS["nemo-rl"].cannot(X.TOOL_PROMPT) is not None  # tools: NeMo-RL's preprocessor passes none
    assert EXPORTS["axolotl"].cannot(X.TOOL_PROMPT) is not None


def test_axolotl_chat_template_default_renders_like_the_source(built):
    """axolotl ``src/axolotl/prompt_strategies/dpo/chat_template.py`` ``default``: the prompt is
    ``apply_chat_template(messages, add_generation_prompt=True)``; an answer is rendered after a dummy user turn
    and cut at ``find(content)``, then ``rstrip``ped. (With Qwen3's template the cut would drop the empty think
    block TRL renders, so the comparison uses Qwen2.5's.)"""
    tok = X.qwen_tokenizer("qwen2.5")
    for name, row in _written(built["axolotl"]).items():
        source = X.trl_render(X.ROWS[name], tok)
        prompt = tok.apply_chat_template(row["messages"], add_generation_prompt=True, tokenize=False)
        assert prompt == source["prompt"], name
        for answer in ("chosen", "rejected"):
            dummy = [{"role": "user", "content": "[[dummy_message]]"}, row[answer]]
            text = tok.apply_chat_template(dummy, add_generation_prompt=False, tokenize=False)
            text = text[text.find(row[answer]["content"]) :].rstrip()
            assert text == source[answer].rstrip(), name


def test_nemo_rl_preference_preprocessor_renders_like_the_source(built, qwen3):
    """NeMo-RL ``nemo_rl/data/datasets/preference_datasets/preference_dataset.py`` reads JSON lines
    (``load_dataset("json")``); ``nemo_rl/data/processors.py`` ``preference_preprocessor`` takes the lower rank
    as chosen and renders ``context + completion`` (``get_formatted_message_log``, no tools)."""
    path = built["nemo-rl"] / "nemo-rl" / "train.jsonl"
    rows = datasets.load_dataset("json", data_files=str(path), split="train")
    assert len(rows) == len(_written(built["nemo-rl"]))
    for row in rows:
        name = NAMES[row["source_index"]]
        ranked = sorted(row["completions"], key=lambda c: c["rank"])
        assert [c["rank"] for c in ranked] == [0, 1]
        source = X.trl_render(X.ROWS[name], qwen3)
        for completion, answer in zip(ranked, ("chosen", "rejected"), strict=True):
            messages = [
                {k: v for k, v in m.items() if v is not None}
                for m in row["context"] + completion["completion"]
            ]
            assert qwen3.apply_chat_template(messages, tokenize=False) == _full(source, answer), name


def test_torchtune_chosen_rejected_messages(built):
    """torchtune ``torchtune/data/_messages.py`` ``ChosenRejectedToMessages``: each message of the ``chosen`` /
    ``rejected`` conversation becomes ``Message(role, content, masked=role != "assistant")``."""
    for name, row in _written(built["torchtune"]).items():
        source = X.ROWS[name]
        for answer in ("chosen", "rejected"):
            want = [{"role": m["role"], "content": m["content"]} for m in source["prompt"] + source[answer]]
            assert row[answer] == want, name


@pytest.mark.parametrize("export", [e for e in EXPORTS if EXPORTS[e].train is not None])
def test_card_says_how_to_train_and_the_snippet_parses(built, export):
    card = (built[export] / "README.md").read_text()
    found = re.search(r"## Train with (.+?)\n\n```(\w+)\n(.*?)```", card, re.S)
    assert found, card
    consumer, language, text = found.groups()
    assert consumer == EXPORTS[export].consumer
    columns = set(datasets.load_dataset(str(built[export]), split="train").column_names)
    if language == "yaml":
        config = yaml.safe_load(text)
        assert isinstance(config, dict) and config
    elif language == "python":
        ast.parse(text)
        assert 'purpose="fine-tune"' in text and '"type": "dpo"' in text
        assert (built[export] / "openai" / "train.jsonl").exists()
    else:
        args = shlex.split(text.replace("\\\n", " "))
        assert args[args.index("--data.chosen_key") + 1] in columns
        assert args[args.index("--data.rejected_key") + 1] in columns
    if export == "kto":  # parsed by `trl kto`'s own parser (trl/scripts/kto.py), every key known
        from trl import DatasetMixtureConfig, KTOConfig, ModelConfig, ScriptArguments, TrlParser

        path = built[export].parent / "kto.yaml"
        path.write_text(text)
        parser = TrlParser((ScriptArguments, KTOConfig, ModelConfig, DatasetMixtureConfig))
        here = ["--use_cpu", "true", "--bf16", "false"]  # this machine has no GPU; the snippet is for one
        script, training, model, _ = parser.parse_args_and_config(["--config", str(path), *here])
        assert script.dataset_name == config["dataset_name"] and model.model_name_or_path == "MODEL"
        assert training.learning_rate == config["learning_rate"]
    if export == "axolotl":
        (ds,) = config["datasets"]
        assert ds["type"] == "chat_template.default"
        assert {ds["field_messages"], ds["field_chosen"], ds["field_rejected"]} <= columns
    if export == "llamafactory":
        info = json.loads((built[export] / "dataset_info.json").read_text())
        assert config["stage"] == "dpo" and set(config["dataset"].split(",")) <= set(info)
    if export == "nemo-rl":
        assert config["data"]["default"]["dataset_name"] == "PreferenceDataset"
    if export == "torchtune":
        assert config["dataset"]["_component_"] == "torchtune.datasets.preference_dataset"
        assert all(
            Path(f).name in {p.name for p in (built[export] / "data").iterdir()}
            for f in config["dataset"]["data_files"]
        )


# ------------------------------------------------------------------------------ every shape of tests/catalog.py


def _consumer_texts(export: str, row: dict, tok) -> dict[str, str]:
    """prompt / chosen / rejected as each consumer's rule renders an exported row (the rules named above)."""
    apply = tok.apply_chat_template
    if export == "openrlhf":
        prompt = apply(row["chosen"][:-1], tokenize=False, add_generation_prompt=True)
        return {
            "prompt": prompt,
            **{a: apply(row[a], tokenize=False)[len(prompt) :] for a in ("chosen", "rejected")},
        }
    if export in ("torchtune",):  # whole conversations, rendered by the model's own template
        prompt = apply(row["chosen"][:-1], tokenize=False, add_generation_prompt=True)
        return {
            "prompt": prompt,
            **{a: apply(row[a], tokenize=False)[len(prompt) :] for a in ("chosen", "rejected")},
        }
    if export == "nemo-rl":
        ranked = sorted(row["completions"], key=lambda c: c["rank"])
        prompt = apply(row["context"], tokenize=False, add_generation_prompt=True)
        full = [apply(row["context"] + c["completion"], tokenize=False) for c in ranked]
        return {"prompt": prompt, "chosen": full[0][len(prompt) :], "rejected": full[1][len(prompt) :]}
    if export == "axolotl":
        return {
            "prompt": apply(row["messages"], add_generation_prompt=True, tokenize=False),
            **{a: _axolotl_answer(row[a], tok) for a in ("chosen", "rejected")},
        }
    if export == "llamafactory":
        again = {"prompt": _messages_from_sharegpt(row["conversations"], row["system"])}
        again |= {a: _messages_from_sharegpt([row[a]], "") for a in ("chosen", "rejected")}
        return X.trl_render(again, tok)
    assert export == "openai"
    line = {k: json.loads(row[k]) for k in ("input", "preferred_output", "non_preferred_output")}
    again = {"prompt": _from_openai(line["input"]["messages"]), "tools": line["input"].get("tools")}
    again |= {
        "chosen": _from_openai(line["preferred_output"]),
        "rejected": _from_openai(line["non_preferred_output"]),
    }
    return X.trl_render(again, tok)


def _axolotl_answer(message: dict, tok) -> str:
    dummy = [{"role": "user", "content": "[[dummy_message]]"}, message]
    text = tok.apply_chat_template(dummy, add_generation_prompt=False, tokenize=False)
    return text[text.find(message["content"]) :]


@pytest.fixture(scope="module")
def catalog_sets(tmp_path_factory) -> dict[str, list[dict]]:
    """Each entry of tests/catalog.py (its first file or split) built as a ``trl`` set: the records, decoded."""
    from prefkit.record import decode_row
    from tests import catalog as C

    tmp = tmp_path_factory.mktemp("catalog")
    sets = {}
    for repo_id, (_, files, _, _) in C.catalog().items():
        rows = next(iter(files.values()))
        path = tmp / (re.sub(r"\W", "_", repo_id) + ".jsonl")
        path.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
        result = build(path)
        sets[repo_id] = [decode_row(r) for t in result.splits.values() for r in t.to_pylist()]
    return sets


@pytest.mark.parametrize("export", [e for e in EXPORTS if e not in ("trl", "kto")])
def test_every_catalog_shape_renders_alike_through_each_consumer(catalog_sets, export):
    """Every source shape of tests/catalog.py: each pair a consumer carries renders, by its rule, like the record
    through TRL (the prompt exactly, answers up to the trailing whitespace axolotl strips)."""
    import pyarrow as pa

    tok = X.qwen_tokenizer("qwen2.5")
    shape = EXPORTS[export]
    checked = 0
    for repo_id, records in catalog_sets.items():
        carried = [r for r in records if shape.cannot(r) is None]
        if not carried:
            continue
        table = pa.Table.from_pylist([_encoded(r) for r in carried])
        for record, row in zip(carried, shape.rows(table).to_pylist(), strict=True):
            want, got = X.trl_render(record, tok), _consumer_texts(export, _plain_row(row), tok)
            strip = str.rstrip if export == "axolotl" else (lambda s: s)
            assert got["prompt"] == want["prompt"], (repo_id, export)
            assert [strip(got["chosen"]), strip(got["rejected"])] == [
                strip(want["chosen"]),
                strip(want["rejected"]),
            ]
            checked += 1
    assert checked >= 40


def _encoded(record: dict) -> dict:
    """A decoded record as the data files hold it (JSON fields as text), for an export's table function."""
    from prefkit.record import to_json_text

    out = {k: v for k, v in record.items() if k not in ("tools", "chat_template_kwargs")}
    for column in ("prompt", "chosen", "rejected"):
        out[column] = [{"role": m["role"], "content": m.get("content")} for m in record[column]]
    for name in ("tools", "chat_template_kwargs"):
        if record.get(name):
            out[name] = to_json_text(record[name])
    return out


def _plain_row(row: dict) -> dict:
    """A row as ``datasets`` gives it (nulls of absent message fields left out)."""
    from prefkit.record import decode_messages

    return {
        k: decode_messages(v)
        if isinstance(v, list) and v and isinstance(v[0], dict) and "role" in v[0]
        else v
        for k, v in row.items()
    }


def test_openai_refuses_a_tool_answer_naming_no_call():
    row = {
        **X.ROWS["tool_history"],
        "prompt": [
            X.msg("user", "Timer for 30 seconds."),
            X.msg("assistant", "", tool_calls=[X.call("start_timer", {"duration": 30})]),  # no id: call_0
            X.msg("tool", "30", tool_call_id="elsewhere"),
            X.msg("assistant", "Started."),
            X.msg("user", "Another for 60."),
        ],
    }
    line, why = openai_row(row)
    assert line is None and "tool call id" in why
    assert EXPORTS["openai"].cannot(row) == why
