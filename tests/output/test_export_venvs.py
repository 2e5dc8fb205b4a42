"""Exports read by the consumers' own code, each in its own venv (tests/consumer_venv.py; skipped when
``PREFKIT_CONSUMER_VENVS`` has no venv for it): what the consumer makes of each exported row renders like the
source row does through TRL. The catalog is tests/export_catalog.py."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from prefkit import build
from tests import export_catalog as X
from tests.consumer_venv import run_consumer

NAMES = list(X.ROWS)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return X.write_source(tmp_path_factory.mktemp("src") / "catalog.jsonl")


@pytest.fixture(scope="module")
def qwen3():
    return X.qwen_tokenizer("qwen3")


def _export(source: Path, tmp_path: Path, export: str) -> tuple[Path, list[int]]:
    out = tmp_path / export
    res = build(source, out, export=export)
    return out, res.splits["train"].column("source_index").to_pylist()


def _from_llamafactory(messages: list[dict]) -> list[dict]:
    """LLaMA-Factory's aligned roles (user / assistant / function / observation, llamafactory.data.data_utils.Role)
    back as chat messages."""
    out = []
    for m in messages:
        if m["role"] == "function":
            calls = [{"type": "function", "function": c} for c in json.loads(m["content"])]
            out.append(X.msg("assistant", "", tool_calls=calls))
        else:
            out.append(X.msg({"observation": "tool"}.get(m["role"], m["role"]), m["content"]))
    return out


def test_llamafactory_loads_and_aligns_like_the_source(source, tmp_path, qwen3):
    out, order = _export(source, tmp_path, "llamafactory")
    rows = run_consumer("llamafactory", str(out))
    assert len(rows) == len(order)
    for row, index in zip(rows, order, strict=True):
        name = NAMES[index]
        prompt = ([X.msg("system", row["_system"])] if row["_system"] else []) + _from_llamafactory(
            row["_prompt"]
        )
        chosen, rejected = (_from_llamafactory([m]) for m in row["_response"])
        tools = json.loads(row["_tools"]) if row["_tools"] else None
        again = {"prompt": prompt, "chosen": chosen, "rejected": rejected, "tools": tools}
        assert X.trl_render(again, qwen3) == X.trl_render(X.ROWS[name], qwen3), name


def test_llamafactory_get_dataset_from_the_card_encodes_like_the_source_renders(source, tmp_path):
    """The card's LLaMA-Factory YAML (model and template filled in) parsed by LLaMA-Factory's own argument parser,
    then its ``get_dataset`` (stage ``rm``) with its ``qwen`` template encodes each exported pair to the same text
    TRL renders the source row to with Qwen2.5's own chat template, tool calls and answers included."""
    import yaml

    out, order = _export(source, tmp_path, "llamafactory")
    tok = X.qwen_tokenizer("qwen2.5")
    tok.save_pretrained(str(tmp_path / "tok"))
    config = yaml.safe_load(re.search(r"```yaml\n(.*?)```", (out / "README.md").read_text(), re.S).group(1))
    assert config["model_name_or_path"] == "MODEL" and config["template"] == "TEMPLATE"
    config |= {"model_name_or_path": str(tmp_path / "tok"), "template": "qwen", "dataset_dir": str(out)}
    config["output_dir"] = str(tmp_path / "dpo")
    (tmp_path / "dpo.yaml").write_text(yaml.safe_dump(config))
    result = run_consumer("llamafactory_rm", str(tmp_path / "dpo.yaml"), venv="llamafactory")
    assert (result["stage"], result["pref_beta"]) == ("dpo", 0.1)
    assert len(result["rows"]) == len(order)
    for row, index in zip(result["rows"], order, strict=True):
        render = X.trl_render(X.ROWS[NAMES[index]], tok)
        assert row["chosen"] == render["prompt"] + render["chosen"], NAMES[index]
        assert row["rejected"] == render["prompt"] + render["rejected"], NAMES[index]


def test_torchtune_preference_dataset_from_the_card_gets_the_source_messages(source, tmp_path):
    """The card's torchtune ``dataset`` section instantiated as a recipe does (``torchtune.config.instantiate``):
    ``ChosenRejectedToMessages`` hands the tokenizer the source's messages, the prompt masked."""
    out, order = _export(source, tmp_path, "torchtune")
    config = re.search(r"```yaml\n(.*?)```", (out / "README.md").read_text(), re.S).group(1)
    (tmp_path / "dpo.yaml").write_text(config.replace(f"- {out.name}/", f"- {out}/"))
    rows = run_consumer("torchtune", str(tmp_path / "dpo.yaml"))
    assert len(rows) == len(order)
    for row, index in zip(rows, order, strict=True):
        src = X.ROWS[NAMES[index]]
        for answer in ("chosen", "rejected"):
            want = [[m["role"], m["content"], m["role"] != "assistant"] for m in src["prompt"] + src[answer]]
            assert row[answer] == want, NAMES[index]


def test_openrlhf_reward_dataset_renders_like_the_source(source, tmp_path, qwen3):
    out, order = _export(source, tmp_path, "openrlhf")
    tokenizer = tmp_path / "tok"
    qwen3.save_pretrained(str(tokenizer))
    card = (out / "README.md").read_text()
    command = re.search(r"```bash\n(.*?)```", card, re.S).group(1)
    flags = [a for a in shlex.split(command.replace("\\\n", " ")) if a.startswith("--") and "." in a]
    result = run_consumer("openrlhf", str(out), str(tokenizer), *flags)
    assert result["flags"] and all(result["flags"].values()), result["flags"]
    assert len(result["rows"]) == len(order)
    for row in result["rows"]:
        name = NAMES[row["source_index"]]
        render = X.trl_render(X.ROWS[name], qwen3)
        chosen, rejected, _margin = row["rm"]
        assert [chosen, rejected] == [
            render["prompt"] + render["chosen"],
            render["prompt"] + render["rejected"],
        ]
        assert row["dpo"] == [render["prompt"], render["chosen"], render["rejected"]], name


def test_axolotl_chat_template_default_from_the_card_renders_like_the_source(source, tmp_path):
    """axolotl's strategy configured by the card's own YAML; with Qwen2.5's template (Qwen3's empty think block
    would be cut by the strategy's ``find(content)``, see tests/output/test_export_consumers.py)."""
    out, order = _export(source, tmp_path, "axolotl")
    tok = X.qwen_tokenizer("qwen2.5")
    tok.save_pretrained(str(tmp_path / "tok"))
    config = re.search(r"```yaml\n(.*?)```", (out / "README.md").read_text(), re.S).group(1)
    (tmp_path / "axolotl.yaml").write_text(config.replace(f"path: {out.name}", f"path: {out}"))
    rows = run_consumer("axolotl", str(out), str(tmp_path / "axolotl.yaml"), str(tmp_path / "tok"))
    assert sorted(r["source_index"] for r in rows) == sorted(order)
    for row in rows:
        name = NAMES[row["source_index"]]
        render = X.trl_render(X.ROWS[name], tok)
        assert row["prompt"] == render["prompt"], name
        assert [row["chosen"], row["rejected"]] == [render["chosen"].rstrip(), render["rejected"].rstrip()], (
            name
        )
