"""Rows shaped like real preference data: Alpaca / LLaMA-Factory rows, tool use, reasoning, template kwargs,
content parts, unused columns, TRL's implicit-prompt text, mixed answer kinds, scores that are not plain numbers,
negative margins and rows a target template refuses.

Every expected value is computed here independently: by hand from the documented rule, by LLaMA-Factory's
``AlpacaDatasetConverter`` rule (mirrored below), or by TRL's own functions (``trl.data_utils.extract_prompt``,
``trl.data_utils.apply_chat_template``) run on the *source* row.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from prefkit import build
from prefkit.chat.templates import get_chat_template
from prefkit.record import decode_row
from tests.family_tokenizers import family_tokenizer

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def msg(role: str, content, **extra) -> dict:
    return {"role": role, "content": content, **extra}


def plain(messages: list[dict]) -> list[dict]:
    """Messages as ``{role, content}`` only (the record's optional fields left out)."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def train(result) -> list[dict]:
    return result.splits["train"].to_pylist()


def counts(result, split: str = "train") -> dict:
    return result.manifest["splits"][split]


def rejects(out: Path, split: str = "train") -> list[dict]:
    return pl.read_parquet(out / "rejects" / f"{split}.parquet").to_dicts()


# ------------------------------------------------------------------------------ 1. Alpaca / LLaMA-Factory


def llamafactory_prompt(row: dict) -> list[dict]:
    """The prompt LLaMA-Factory's ``AlpacaDatasetConverter`` builds (src/llamafactory/data/converter.py): each
    ``history`` pair as a user and an assistant turn, then one user turn ``"\\n".join`` of the non-empty
    ``instruction`` and ``input``; its ``_system`` (here: a leading system message when non-empty)."""
    prompt = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    for old_prompt, old_response in row.get("history") or []:
        prompt += [{"role": "user", "content": old_prompt}, {"role": "assistant", "content": old_response}]
    query = [row[k] for k in ("instruction", "input") if row.get(k)]
    return [*prompt, {"role": "user", "content": "\n".join(query)}]


ALPACA = [
    {
        "instruction": "Translate to French",
        "input": "good morning",
        "chosen": "bonjour",
        "rejected": "bonsoir",
    },
    {"instruction": "Translate to French", "input": "", "chosen": "merci", "rejected": "bonne nuit"},
    {
        "instruction": "And now to Spanish",
        "input": "thank you",
        "chosen": "gracias",
        "rejected": "de nada",
        "history": [["Translate to French: yes", "oui"], ["Translate to French: no", "non"]],
        "system": "You are a translator.",
    },
]


def test_alpaca_rows_build_the_llamafactory_prompt(tmp_path):
    res = build(write_jsonl(tmp_path / "alpaca.jsonl", ALPACA))
    rows = train(res)
    assert counts(res)["kept"] == 3
    # by hand: the examples
    assert plain(rows[0]["prompt"]) == [msg("user", "Translate to French\ngood morning")]
    assert plain(rows[1]["prompt"]) == [msg("user", "Translate to French")]  # empty input left out
    assert plain(rows[2]["prompt"]) == [
        msg("system", "You are a translator."),
        msg("user", "Translate to French: yes"),
        msg("assistant", "oui"),
        msg("user", "Translate to French: no"),
        msg("assistant", "non"),
        msg("user", "And now to Spanish\nthank you"),
    ]
    # and by LLaMA-Factory's rule, row for row
    for source, row in zip(ALPACA, rows, strict=True):
        assert plain(row["prompt"]) == llamafactory_prompt(source)
        assert plain(row["chosen"]) == [msg("assistant", source["chosen"])]
        assert plain(row["rejected"]) == [msg("assistant", source["rejected"])]


@pytest.mark.parametrize(
    "history",
    [
        [["only the question"]],  # LLaMA-Factory cannot unpack it either
        [["question", "answer", "and more"]],
        [["fine", "pair"], ["half a pair"]],
        [["question", None]],  # not two strings
    ],
)
def test_alpaca_malformed_history_is_bad_history(tmp_path, history):
    good = {**ALPACA[0], "history": [["Hi", "Hello"]]}
    bad = {**ALPACA[1], "history": history}
    out = tmp_path / "o"
    res = build(write_jsonl(tmp_path / "alpaca.jsonl", [good, bad]), out)
    assert counts(res)["kept"] == 1 and counts(res)["invalid"] == {"bad_history": 1}
    assert plain(train(res)[0]["prompt"]) == llamafactory_prompt(good)
    (reject,) = rejects(out)
    assert (reject["source_index"], reject["reason"]) == (1, "bad_history")


@pytest.mark.parametrize("history", [["Hi", "Hello"], "Hi\nHello", [[1, 2]]])
def test_alpaca_history_of_another_type_is_bad_history(tmp_path, history):
    """A ``history`` column that is not lists of two strings is not silently left out of the prompt."""
    out = tmp_path / "o"
    res = build(write_jsonl(tmp_path / "alpaca.jsonl", [ALPACA[0], {**ALPACA[1], "history": history}]), out)
    assert counts(res)["kept"] == 1 and counts(res)["invalid"] == {"bad_history": 1}
    assert plain(train(res)[0]["prompt"]) == llamafactory_prompt(ALPACA[0])
    assert [(r["source_index"], r["reason"]) for r in rejects(out)] == [(1, "bad_history")]
    assert not any("history" in w for w in res.warnings)  # read, so not an unused column


def test_alpaca_empty_history_is_no_history(tmp_path):
    rows = [{**ALPACA[0], "history": []}, {**ALPACA[1], "history": None}]
    res = build(write_jsonl(tmp_path / "alpaca.jsonl", rows))
    assert [plain(r["prompt"]) for r in train(res)] == [llamafactory_prompt(r) for r in rows]
    res = build(write_jsonl(tmp_path / "alpaca_text.jsonl", [{**ALPACA[0], "history": ""}]))
    assert [plain(r["prompt"]) for r in train(res)] == [llamafactory_prompt(ALPACA[0])]


# ------------------------------------------------------------------------------ TRL rendering helpers


@pytest.fixture(scope="module", params=["builtin-qwen3", "Qwen-Qwen3-8B"])
def qwen3(request):
    """A Qwen3-shaped tokenizer with prefkit's built-in qwen3 template, or Qwen3-8B's own template."""
    if request.param == "builtin-qwen3":
        template = get_chat_template("qwen3")
    else:
        template = (TEMPLATES / f"{request.param}.jinja").read_text()
    return family_tokenizer("qwen3", template)


def _datasets_decodes_nested_json() -> bool:
    import datasets

    from prefkit.store.folder import NESTED_JSON_DATASETS

    return tuple(int(p) for p in datasets.__version__.split(".")[:2]) >= NESTED_JSON_DATASETS


NESTED_JSON = _datasets_decodes_nested_json()


def trl_render(row: dict, tokenizer) -> dict[str, str]:
    """``row`` rendered by TRL (prompt with generation prompt, chosen, rejected), with the row's ``tools`` and
    ``chat_template_kwargs`` as TRL's DPOTrainer passes them."""
    from trl.data_utils import apply_chat_template

    return apply_chat_template(row, tokenizer, tools=row.get("tools"))  # the row as is, like the trainer


# ------------------------------------------------------------------------------ 2. tool use

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
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
            "required": ["city"],
        },
    },
}


def call(name: str, arguments: dict, **extra) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}, **extra}


TOOL_ROWS = [
    {  # the answer is TRL's tool-calling shape: assistant(tool_calls) -> tool -> assistant
        "prompt": [msg("user", "Set a timer for 10 minutes.")],
        "chosen": [
            {"role": "assistant", "content": "", "tool_calls": [call("start_timer", {"duration": 600})]},
            msg("tool", "600", name="start_timer"),
            msg("assistant", "Timer set for 10 minutes."),
        ],
        "rejected": [msg("assistant", "I cannot set timers.")],
        "tools": [TIMER],
    },
    {  # tool calls in the prompt too (with ids), two tools, a tool-call message without content
        "prompt": [
            msg("system", "You are a weather bot."),
            msg("user", "Weather in Paris?"),
            {"role": "assistant", "tool_calls": [call("get_weather", {"city": "Paris"}, id="c1")]},
            msg("tool", '{"temp": 20}', name="get_weather", tool_call_id="c1"),
            msg("assistant", "20 degrees in Paris."),
            msg("user", "And in Rome, in Fahrenheit?"),
        ],
        "chosen": [
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [call("get_weather", {"city": "Rome", "unit": "F"}, id="c2")],
            },
            msg("tool", '{"temp": 77}', name="get_weather", tool_call_id="c2"),
            msg("assistant", "77 F in Rome."),
        ],
        "rejected": [msg("assistant", "Probably warm.")],
        "tools": [WEATHER, TIMER],
    },
    {  # a row without tools in the same set
        "prompt": [msg("user", "Hi")],
        "chosen": [msg("assistant", "Hello!")],
        "rejected": [msg("assistant", "Go away.")],
    },
]


def test_tool_use_rows_render_as_the_source_through_trl(tmp_path, qwen3):
    import datasets

    out = tmp_path / "o"
    res = build(write_jsonl(tmp_path / "tools.jsonl", TOOL_ROWS), out)
    assert counts(res)["kept"] == 3 and counts(res)["invalid"] == {}
    rows = [decode_row(r) for r in train(res)]
    loaded = list(datasets.load_dataset(str(out))["train"])  # what a trainer gets: JSON fields decoded
    nested = NESTED_JSON  # datasets < 5.0 leaves Json inside message lists as text (the build warns)
    assert any("tool_calls" in w and "datasets" in w for w in res.warnings) == (not nested)
    for source, row, via_datasets in zip(TOOL_ROWS, rows, loaded, strict=True):
        expected = trl_render(source, qwen3)
        assert trl_render(row, qwen3) == expected
        if nested:
            assert trl_render(via_datasets, qwen3) == expected
        assert row.get("tools") == source.get("tools")
    # the renderings hold what the template makes of tools, calls and tool answers (so dropping one would show)
    first = trl_render(rows[0], qwen3)
    assert '"name": "start_timer"' in first["prompt"]  # the tool schema in the system block
    assert first["chosen"].startswith('<tool_call>\n{"name": "start_timer", "arguments": {"duration": 600}}')
    assert "<tool_response>\n600\n</tool_response>" in first["chosen"]
    second = trl_render(rows[1], qwen3)
    assert '"arguments": {"city": "Paris"}' in second["prompt"]
    assert '<tool_response>\n{"temp": 20}\n</tool_response>' in second["prompt"]
    assert second["chosen"].endswith("77 F in Rome.<|im_end|>\n")
    assert "# Tools" not in trl_render(rows[2], qwen3)["prompt"]


def test_tool_json_keeps_each_rows_key_order(tmp_path, qwen3):
    swapped = {
        **WEATHER,
        "function": {
            **WEATHER["function"],
            "parameters": {
                "type": "object",
                "properties": {"unit": {"type": "string"}, "city": {"type": "string"}},  # unit first
                "required": ["city"],
            },
        },
    }
    rows = [
        {
            "prompt": [msg("user", f"Weather in {city}?")],
            "chosen": [
                {"role": "assistant", "content": "", "tool_calls": [call("get_weather", args)]},
                msg("tool", "20", name="get_weather"),
                msg("assistant", "20 degrees."),
            ],
            "rejected": [msg("assistant", "No idea.")],
            "tools": [tool],
        }
        for city, args, tool in (
            ("Paris", {"city": "Paris", "unit": "C"}, WEATHER),
            ("Rome", {"unit": "F", "city": "Rome"}, swapped),
        )
    ]
    res = build(write_jsonl(tmp_path / "order.jsonl", rows))
    for source, row in zip(rows, train(res), strict=True):
        assert trl_render(decode_row(row), qwen3) == trl_render(source, qwen3)


# ------------------------------------------------------------------------------ 3. reasoning

THINK = "Red planet means Mars."


@pytest.mark.parametrize("field", ["reasoning_content", "thinking", "reasoning"])
def test_reasoning_renders_in_a_think_block(tmp_path, field, qwen3):
    rows = [
        {
            "prompt": [msg("user", "Which planet is red?")],
            "chosen": [msg("assistant", "Mars.", **{field: THINK})],
            "rejected": [msg("assistant", "Venus.", **{field: "Hot planet."})],
        }
    ]
    res = build(write_jsonl(tmp_path / "think.jsonl", rows))
    (row,) = [decode_row(r) for r in train(res)]
    assert row["chosen"] == [msg("assistant", "Mars.", reasoning_content=THINK)]
    rendered = trl_render(row, qwen3)
    # Qwen3 puts the last answer's reasoning in a <think> block: '<think>\n' + r.strip() + '\n</think>\n\n' + content
    assert rendered["chosen"] == f"<think>\n{THINK}\n</think>\n\nMars.<|im_end|>\n"
    assert rendered["rejected"] == "<think>\nHot planet.\n</think>\n\nVenus.<|im_end|>\n"
    # the source as the template reads it (Qwen3 reads `reasoning_content`, whatever the source called it)
    source = {**rows[0], "chosen": [msg("assistant", "Mars.", reasoning_content=THINK)]}
    source["rejected"] = [msg("assistant", "Venus.", reasoning_content="Hot planet.")]
    assert rendered == trl_render(source, qwen3)


# ------------------------------------------------------------------------------ 4. chat_template_kwargs


def test_chat_template_kwargs_are_carried_per_row(tmp_path, qwen3):
    rows = [
        {
            "prompt": [msg("user", "Which planet is red?")],
            "chosen": [msg("assistant", "Mars.")],
            "rejected": [msg("assistant", "Venus.")],
            "chat_template_kwargs": {"enable_thinking": False},
        },
        {
            "prompt": [msg("user", "Which planet is largest?")],
            "chosen": [msg("assistant", "Jupiter.")],
            "rejected": [msg("assistant", "Mars.")],
        },
    ]
    res = build(write_jsonl(tmp_path / "kwargs.jsonl", rows))
    off, default = [decode_row(r) for r in train(res)]
    assert off["chat_template_kwargs"] == {"enable_thinking": False}
    assert default["chat_template_kwargs"] == {}  # not null: TRL unpacks it with **
    rendered_off, rendered_default = trl_render(off, qwen3), trl_render(default, qwen3)
    assert rendered_off == trl_render(rows[0], qwen3)
    assert rendered_default == trl_render(rows[1], qwen3)
    # enable_thinking=False: the generation prompt closes an empty think block (Qwen3's template)
    user = "<|im_start|>user\nWhich planet is red?<|im_end|>\n"
    assert rendered_off["prompt"] == user + "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert rendered_off["chosen"] == "Mars.<|im_end|>\n"
    assert rendered_default["prompt"].endswith("<|im_start|>assistant\n")
    assert rendered_default["chosen"] == "<think>\n\n</think>\n\nJupiter.<|im_end|>\n"


def test_rows_without_chat_template_kwargs_load_for_trl(tmp_path, qwen3):
    """A set where only some rows carry ``chat_template_kwargs``, loaded with ``load_dataset``: TRL unpacks each
    row's value with ``**`` (``apply_chat_template``, ``DPOTrainer``'s tokenize step), so none may be null."""
    import datasets

    rows = [
        {
            "prompt": [msg("user", f"q{i}")],
            "chosen": [msg("assistant", f"a{i}")],
            "rejected": [msg("assistant", f"b{i}")],
            **({"chat_template_kwargs": {"enable_thinking": False}} if i == 0 else {}),
        }
        for i in range(2)
    ]
    out = tmp_path / "o"
    build(write_jsonl(tmp_path / "kwargs.jsonl", rows), out)
    loaded = list(datasets.load_dataset(str(out))["train"])
    assert [r["chat_template_kwargs"] for r in loaded] == [{"enable_thinking": False}, {}]
    for source, row in zip(rows, loaded, strict=True):
        assert trl_render(row, qwen3) == trl_render(source, qwen3)


# ------------------------------------------------------------------------------ 5. content parts


def parts(*texts: str) -> list[dict]:
    return [{"type": "text", "text": t} for t in texts]


def test_text_content_parts_are_joined_and_images_are_invalid(tmp_path):
    rows = [
        {
            "prompt": [msg("user", parts("Hello ", "world"))],
            "chosen": [msg("assistant", parts("Hi", " there."))],
            "rejected": [msg("assistant", parts("Bye."))],
        },
        {
            "prompt": [msg("user", [*parts("What is this?"), {"type": "image", "image": "cat.png"}])],
            "chosen": [msg("assistant", parts("A cat."))],
            "rejected": [msg("assistant", parts("A dog."))],
        },
    ]
    out = tmp_path / "o"
    res = build(write_jsonl(tmp_path / "parts.jsonl", rows), out)
    assert counts(res)["kept"] == 1 and counts(res)["invalid"] == {"non_text_content": 1}
    (row,) = train(res)
    assert plain(row["prompt"]) == [msg("user", "Hello world")]  # parts joined with ""
    assert plain(row["chosen"]) == [msg("assistant", "Hi there.")]
    (reject,) = rejects(out)
    assert (reject["source_index"], reject["reason"]) == (1, "non_text_content")


def test_string_content_next_to_content_parts(tmp_path):
    rows = [
        {
            "prompt": [msg("system", "Be brief."), msg("user", parts("Hello ", "world"))],
            "chosen": [msg("assistant", "Hi.")],
            "rejected": [msg("assistant", "Bye.")],
        }
    ]
    (row,) = train(build(write_jsonl(tmp_path / "mixed.jsonl", rows)))
    assert plain(row["prompt"]) == [msg("system", "Be brief."), msg("user", "Hello world")]


# ------------------------------------------------------------------------------ 6. unused columns


def test_unused_columns_are_named_with_their_non_null_counts(tmp_path):
    rows = [
        {"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}", "model": model, "notes": None}
        for i, model in enumerate(["gpt-4", None, "llama-2", "mistral"])
    ]
    res = build(write_jsonl(tmp_path / "extra.jsonl", rows))
    assert counts(res)["kept"] == 4
    model_count = sum(r["model"] is not None for r in rows)  # 3 of 4
    unused = res.manifest["sources"][0]["splits"]["train"]["unused_columns"]
    assert unused == {"model": model_count}  # the all-null `notes` is not listed
    (warning,) = [w for w in res.warnings if "model" in w]
    assert f"model ({model_count} non-null)" in warning and "notes" not in warning
    assert "model" not in res.splits["train"].column_names


def test_unused_nested_parquet_columns_count_rows_not_items(tmp_path):
    """A parquet file answers non-null counts from its statistics, which for a nested column count list items
    and null elements, not rows: every kind of nested column is counted by its rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    struct = pa.struct([("x", pa.string()), ("y", pa.int64())])
    n = 5
    table = pa.table(
        {
            "prompt": [f"p{i}" for i in range(n)],
            "chosen": [f"c{i}" for i in range(n)],
            "rejected": [f"r{i}" for i in range(n)],
            "tags": pa.array([["a"], None, None, [], ["b", None]]),
            "turns": pa.array([[{"x": "1", "y": 2}], None, [], [None], None], pa.list_(struct)),
            "nested": pa.array([[[1]], None, [[]], [None], None], pa.list_(pa.list_(pa.int64()))),
            "meta": pa.array(
                [{"k": [1]}, None, {"k": None}, None, None], pa.struct([("k", pa.list_(pa.int64()))])
            ),
            "extra": pa.array([{"a": 1}, None, {}, None, None], pa.map_(pa.string(), pa.int64())),
            "score": pa.array([1.0, None, 3.0, None, None]),
        }
    )
    path = tmp_path / "nested.parquet"
    pq.write_table(table, path, row_group_size=2)
    res = build(path)
    unused = res.manifest["sources"][0]["splits"]["train"]["unused_columns"]
    expected = {
        c: len(table[c]) - table[c].null_count for c in ("tags", "turns", "nested", "meta", "extra", "score")
    }
    assert unused == expected


def test_folder_files_datasets_leaves_out_are_reported(tmp_path):
    """A folder source is read by `datasets`, which takes only split-named files when there are any and one file
    type: every data file it leaves out is named in a warning and the manifest, never dropped in silence."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}", "delta_score": 1.0} for i in range(4)]
    split_named = tmp_path / "split_named"
    split_named.mkdir()
    for name in ("train.jsonl", "test.jsonl", "extra.jsonl"):
        write_jsonl(split_named / name, rows)
    (split_named / "notes").mkdir()
    write_jsonl(split_named / "notes" / "more.jsonl", rows)
    res = build(split_named)
    assert res.manifest["sources"][0]["unread"] == ["extra.jsonl", "notes/more.jsonl"]
    assert any("2 data file(s) in the folder were not read" in w and "extra.jsonl" in w for w in res.warnings)

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_jsonl(mixed / "a.jsonl", rows)
    for name in ("b.parquet", "c.parquet"):
        pq.write_table(pa.Table.from_pylist(rows), mixed / name)
    res = build(mixed)
    assert sum(counts(res, s)["read"] for s in res.manifest["splits"]) == 8  # b and c
    assert res.manifest["sources"][0]["unread"] == ["a.jsonl"]

    plain = tmp_path / "plain"
    plain.mkdir()
    write_jsonl(plain / "train.jsonl", rows)
    res = build(plain)
    assert "unread" not in res.manifest["sources"][0]
    assert not any("not read" in w for w in res.warnings)


# ------------------------------------------------------------------------------ 7. implicit-prompt text


def test_implicit_prompt_text_is_split_as_trl_extract_prompt(tmp_path):
    from trl.data_utils import extract_prompt

    rows = [
        {"chosen": "The capital of France is Paris.", "rejected": "The capital of France is Rome."},
        {"chosen": "2 + 2 = 4", "rejected": "2 + 2 = 5"},
    ]
    res = build(write_jsonl(tmp_path / "implicit.jsonl", rows))
    assert res.manifest["sources"][0]["splits"]["train"]["format"]["family"] == "implicit-text"
    out = train(res)
    assert (out[0]["prompt"], out[0]["chosen"], out[0]["rejected"]) == (
        "The capital of France is",
        " Paris.",
        " Rome.",
    )
    for source, row in zip(rows, out, strict=True):  # TRL's standard text format, split as TRL splits it
        theirs = extract_prompt(dict(source))
        assert {k: row[k] for k in ("prompt", "chosen", "rejected")} == theirs


# ------------------------------------------------------------------------------ 8. mixed answer kinds


@pytest.mark.parametrize("prompt_kind", ["string", "messages"])
def test_string_and_message_answers_in_one_file(tmp_path, prompt_kind):
    def prompt(text):
        return text if prompt_kind == "string" else [msg("user", text)]

    rows = [
        {"prompt": prompt("q0"), "chosen": "a0", "rejected": "b0"},
        {"prompt": prompt("q1"), "chosen": [msg("assistant", "a1")], "rejected": [msg("assistant", "b1")]},
        {"prompt": prompt("q2"), "chosen": "a2", "rejected": [msg("assistant", "b2")]},
        {  # a tool-using answer next to string answers
            "prompt": prompt("q3"),
            "chosen": [
                {"role": "assistant", "content": "", "tool_calls": [call("start_timer", {"duration": 5})]},
                msg("tool", "5", name="start_timer"),
                msg("assistant", "a3"),
            ],
            "rejected": "b3",
        },
    ]
    res = build(write_jsonl(tmp_path / "mixed.jsonl", rows))
    assert counts(res)["kept"] == 4 and counts(res)["invalid"] == {} and counts(res)["dropped"] == {}
    out = [decode_row(r) for r in train(res)]
    for i, row in enumerate(out):
        assert plain(row["prompt"]) == [msg("user", f"q{i}")]
        assert plain(row["rejected"]) == [msg("assistant", f"b{i}")]
    assert [plain(r["chosen"]) for r in out[:3]] == [[msg("assistant", f"a{i}")] for i in range(3)]
    assert out[3]["chosen"] == [
        {"role": "assistant", "content": "", "tool_calls": [call("start_timer", {"duration": 5})]},
        msg("tool", "5", name="start_timer"),
        msg("assistant", "a3"),
    ]


# ------------------------------------------------------------------------------ 9. NaN and infinite scores


def cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prefkit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )


def flat(margins: list[float]) -> list[dict]:
    return [
        {"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}", "delta_score": m}
        for i, m in enumerate(margins)
    ]


def test_nan_margin_is_invalid_and_never_selected(tmp_path):
    path = write_jsonl(tmp_path / "nan.jsonl", flat([5.0, math.nan, 1.0]))  # json writes NaN
    assert "NaN" in path.read_text()
    res = build(path, top=1)
    (row,) = train(res)
    assert (row["margin"], row["source_index"]) == (5.0, 0)
    assert counts(res)["invalid"] == {"non_finite_score": 1}
    assert counts(res)["dropped"] == {"not_in_top": 1}
    res = build(path, min_margin=2.0)
    assert [r["margin"] for r in train(res)] == [5.0]
    assert counts(res)["invalid"] == {"non_finite_score": 1}
    assert counts(res)["dropped"] == {"below_min_margin": 1}
    out = tmp_path / "o"
    res = build(path, out)
    assert [r["margin"] for r in train(res)] == [5.0, 1.0]
    text = cli(["stats", str(out)])
    assert text.returncode == 0, text.stderr
    assert "nan" not in text.stdout.replace(str(out), "OUT").lower()
    assert "5" in text.stdout  # the margins are there
    as_json = cli(["stats", str(out), "--json"])
    assert as_json.returncode == 0, as_json.stderr

    def no_nan(constant):
        raise AssertionError(f"prefkit stats --json printed {constant}")

    stats = json.loads(as_json.stdout, parse_constant=no_nan)
    assert "nan" not in json.dumps(stats).replace(str(out), "OUT").lower()


def test_infinite_scores_are_invalid(tmp_path):
    margins = [5.0, math.inf, 1.0, -math.inf]
    res = build(write_jsonl(tmp_path / "inf.jsonl", flat(margins)), top=1)
    (row,) = train(res)  # +inf would sort first in --top
    assert row["margin"] == 5.0
    assert counts(res)["invalid"] == {"non_finite_score": 2}
    scores = [
        {"prompt": "p0", "chosen": "c0", "rejected": "r0", "score_chosen": 8.0, "score_rejected": 2.0},
        {"prompt": "p1", "chosen": "c1", "rejected": "r1", "score_chosen": math.nan, "score_rejected": 2.0},
        {"prompt": "p2", "chosen": "c2", "rejected": "r2", "score_chosen": 3.0, "score_rejected": math.inf},
    ]
    res = build(write_jsonl(tmp_path / "scores.jsonl", scores))
    assert [r["margin"] for r in train(res)] == [6.0]
    assert counts(res)["invalid"] == {"non_finite_score": 2}


# ------------------------------------------------------------------------------ 10. score strings


def test_score_strings_parse_fractions_and_flag_the_rest(tmp_path):
    rows = [
        {"prompt": "p0", "chosen": "c0", "rejected": "r0", "score_chosen": "7/10", "score_rejected": "3/10"},
        {"prompt": "p1", "chosen": "c1", "rejected": "r1", "score_chosen": "9/10", "score_rejected": "N/A"},
        {
            "prompt": "p2",
            "chosen": "c2",
            "rejected": "r2",
            "score_chosen": " 8/10",
            "score_rejected": "5 / 10",
        },
    ]
    res = build(write_jsonl(tmp_path / "scores.jsonl", rows))
    out = train(res)
    assert counts(res)["kept"] == 3
    assert [(r["score_chosen"], r["score_rejected"], r["margin"]) for r in out] == [
        (7.0, 3.0, 4.0),
        (9.0, None, None),  # "N/A" is null: no margin
        (8.0, 5.0, 3.0),
    ]
    assert counts(res)["flags"] == {"unparsed_score": 1}


def test_score_strings_plain_numbers_and_mixed_scales(tmp_path):
    rows = [
        {"prompt": "p0", "chosen": "c0", "rejected": "r0", "score_chosen": " 7.5 ", "score_rejected": "2"},
        {"prompt": "p1", "chosen": "c1", "rejected": "r1", "score_chosen": "7/10", "score_rejected": "1"},
        {"prompt": "p2", "chosen": "c2", "rejected": "r2", "score_chosen": "4/5", "score_rejected": "1"},
    ]
    res = build(write_jsonl(tmp_path / "scores.jsonl", rows))
    out = train(res)
    # "7/10" next to "4/5": two scales in one column, so neither is a number
    assert [(r["score_chosen"], r["margin"]) for r in out] == [(7.5, 5.5), (None, None), (None, None)]
    assert counts(res)["flags"] == {"unparsed_score": 2}


# ------------------------------------------------------------------------------ 11. negative margins

NEGATIVE = [
    {"prompt": "p0", "chosen": "good", "rejected": "bad", "score_chosen": 2.0, "score_rejected": 5.0},
    {"prompt": "p1", "chosen": "fine", "rejected": "worse", "score_chosen": 6.0, "score_rejected": 1.0},
]


def test_negative_margin_kept_by_default_and_counted(tmp_path):
    res = build(write_jsonl(tmp_path / "neg.jsonl", NEGATIVE))
    out = train(res)
    assert counts(res)["kept"] == 2 and counts(res)["flags"] == {"negative_margin": 1}
    assert (out[0]["margin"], plain(out[0]["chosen"])) == (2.0 - 5.0, [msg("assistant", "good")])


def test_negative_margin_drop(tmp_path):
    out = tmp_path / "o"
    res = build(write_jsonl(tmp_path / "neg.jsonl", NEGATIVE), out, negative_margin="drop")
    assert counts(res)["dropped"] == {"negative_margin": 1}
    assert [r["source_index"] for r in train(res)] == [1]
    (reject,) = rejects(out)
    assert (reject["source_index"], reject["reason"]) == (0, "negative_margin")


def test_negative_margin_flip(tmp_path):
    res = build(write_jsonl(tmp_path / "neg.jsonl", NEGATIVE), negative_margin="flip")
    flipped, untouched = train(res)
    assert plain(flipped["chosen"]) == [msg("assistant", "bad")]
    assert plain(flipped["rejected"]) == [msg("assistant", "good")]
    assert (flipped["score_chosen"], flipped["score_rejected"], flipped["margin"]) == (5.0, 2.0, 3.0)
    assert plain(untouched["chosen"]) == [msg("assistant", "fine")]
    assert (untouched["score_chosen"], untouched["score_rejected"], untouched["margin"]) == (6.0, 1.0, 5.0)
    assert counts(res)["kept"] == 2 and counts(res)["flags"].get("flipped") == 1


def test_negative_native_margin_flip(tmp_path):
    res = build(write_jsonl(tmp_path / "neg.jsonl", flat([-3.0, 2.0])), negative_margin="flip")
    flipped, untouched = train(res)
    assert (plain(flipped["chosen"]), flipped["margin"]) == ([msg("assistant", "r0")], 3.0)
    assert (plain(untouched["chosen"]), untouched["margin"]) == ([msg("assistant", "c1")], 2.0)
    assert counts(res)["flags"].get("flipped") == 1


# ------------------------------------------------------------------------------ 12. residue with --tokenizer


def test_tokenizer_special_token_at_line_start_is_residue(tmp_path):
    # `<|end|>` opening a line is not residue by the built-in rules (an end marker neither closing the text nor
    # followed by a turn header), but it is one of Phi-3's special tokens: with its tokenizer it counts
    tokenizer = family_tokenizer("phi-3", get_chat_template("phi-3"))
    tokenizer.save_pretrained(tmp_path / "tok")
    rows = [{"prompt": "Question\n<|end|> left over", "chosen": "c", "rejected": "r", "delta_score": 1.0}]
    rows.append({"prompt": "clean", "chosen": "c", "rejected": "r", "delta_score": 1.0})  # never an empty set
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    assert counts(build(path))["kept"] == 2
    out = tmp_path / "o"
    res = build(path, out, tokenizer=str(tmp_path / "tok"))
    assert counts(res)["dropped"] == {"template_residue": 1}
    assert [r["detail"] for r in rejects(out)] == ["<|end|>"]


# ------------------------------------------------------------------------------ 13. template refusal


def test_template_refusal_is_a_drop_with_the_templates_message(tmp_path):
    gemma2 = TEMPLATES / "google-gemma-2-9b-it.jinja"
    message = "System role not supported"
    assert f"raise_exception('{message}')" in gemma2.read_text()  # what the template says
    rows = [
        {"system": "Be brief.", "prompt": "Hi", "chosen": "Hello.", "rejected": "Go away."},
        {"prompt": "Bye", "chosen": "Goodbye.", "rejected": "Whatever."},
    ]
    path = write_jsonl(tmp_path / "sys.jsonl", rows)
    out = tmp_path / "o"
    res = build(path, out, chat_template=str(gemma2))
    assert counts(res)["kept"] == 1 and counts(res)["dropped"] == {"template_refused": 1}
    (reject,) = rejects(out)
    assert (reject["source_index"], reject["reason"]) == (0, "template_refused")
    assert reject["detail"].endswith(message)  # the template's own message, after what failed
    (warning,) = [w for w in res.warnings if "template_refused" in w]
    assert message in warning and "--system drop" in warning
    res = build(path, chat_template=str(gemma2), system="drop")
    assert counts(res)["kept"] == 2 and counts(res)["dropped"] == {}
    assert plain(train(res)[0]["prompt"]) == [msg("user", "Hi")]
