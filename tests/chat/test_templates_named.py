"""Built-in chat templates: rendering equals transformers' apply_chat_template, TRL can split them, errors."""

from __future__ import annotations

import hashlib

import pytest

from prefkit.chat.templates import BUILTIN_TEMPLATES, ChatRenderer, get_chat_template, resolve_chat_template
from prefkit.errors import ModelError
from tests.builders import conversations
from tests.family_tokenizers import family_tokenizer
from tests.tinymodel import random_text, tiny_model, tiny_model_no_template  # noqa: F401 (fixtures)

NAMES = list(BUILTIN_TEMPLATES)


@pytest.mark.parametrize("name", NAMES)
def test_rendering_equals_apply_chat_template(name):
    tok = family_tokenizer(name, get_chat_template(name))
    renderer = ChatRenderer.from_tokenizer(tok)
    rows = conversations()
    for gen in (True, False):
        convs = [p if gen else p + c for p, c, _ in rows]
        expected = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=gen) for c in convs]
        assert renderer.render(convs, add_generation_prompt=gen) == expected
    # messages with extra keys go through transformers' general path and still agree
    odd = [[{**m, "name": None} for m in rows[0][0]]]
    assert renderer.render(odd, True) == [
        tok.apply_chat_template(odd[0], tokenize=False, add_generation_prompt=True)
    ]


@pytest.mark.parametrize("name", NAMES)
def test_prompt_is_prefix_of_prompt_plus_answer(name):
    """TRL splits prompt and answer at the rendered prompt: it must prefix prompt + answer (system rows too)."""
    renderer = ChatRenderer.from_tokenizer(family_tokenizer(name, get_chat_template(name)))
    rows = conversations(1)
    prompts = renderer.render([p for p, _, _ in rows], add_generation_prompt=True)
    full = renderer.render([p + c for p, c, _ in rows])
    for p, pc, (prompt, _, _) in zip(prompts, full, rows, strict=True):
        assert pc.startswith(p)
        assert all(m["content"].strip() in pc for m in prompt)  # no turn (system included) is lost


def test_family_formats():
    """The templates produce each family's format (not just whatever the template says)."""
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]
    render = lambda name: ChatRenderer.from_tokenizer(  # noqa: E731
        family_tokenizer(name, get_chat_template(name))
    ).render([msgs], add_generation_prompt=True)[0]
    assert (
        render("chatml")
        == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render("llama-3") == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert render("mistral") == "<s> [INST] S\n\nHi [/INST]"
    assert render("gemma") == "<bos><start_of_turn>user\nS\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    # zephyr-7b-beta's own template writes a newline after every end of turn and after <|assistant|>
    assert render("zephyr") == "<|system|>\nS</s>\n<|user|>\nHi</s>\n<|assistant|>\n"
    assert render("phi-3") == "<|system|>\nS<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n"
    assert render("qwen").startswith("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi")
    no_system = ChatRenderer.from_tokenizer(family_tokenizer("qwen", get_chat_template("qwen"))).render(
        [msgs[1:]], True
    )[0]
    assert no_system.startswith("<|im_start|>system\nYou are Qwen")


def test_resolve_names_files_and_errors(tmp_path):
    assert resolve_chat_template("chatml")[1] == "builtin:chatml"
    assert resolve_chat_template("Llama3")[1] == "builtin:llama-3"
    f = tmp_path / "t.jinja"
    f.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    source, origin = resolve_chat_template(str(f))
    assert source == f.read_text() and origin.startswith("file:")
    with pytest.raises(ModelError, match="unknown chat template 'chatmlx'") as err:
        resolve_chat_template("chatmlx")
    assert "chatml" in err.value.hint and "llama-3" in err.value.hint
    with pytest.raises(ModelError, match=r"missing\.jinja' does not exist"):
        resolve_chat_template(str(tmp_path / "missing.jinja"))
    with pytest.raises(ModelError, match="failed"):
        ChatRenderer("{% for m in messages %}{{ raise_exception('no') }}{% endfor %}").render(
            [[{"role": "u", "content": "x"}]]
        )


def test_load_target_errors_and_hashes(tiny_model, tiny_model_no_template, tmp_path):  # noqa: F811
    from prefkit.chat.tokenizer import tokenizer_hash

    def chat_template_hash(text: str) -> str:  # independent of prefkit: sha256 of the source
        return hashlib.sha256(text.encode()).hexdigest()

    from prefkit.chat.target import load_target

    with pytest.raises(ModelError, match="no chat template") as err:
        load_target(str(tiny_model_no_template))
    assert "--chat-template" in err.value.hint
    target = load_target(str(tiny_model_no_template), "zephyr")
    entry = target.manifest_entry(max_length=7)
    assert entry["chat_template"] == "builtin:zephyr"
    assert entry["hash"] == tokenizer_hash(target.tokenizer)
    assert entry["chat_template_hash"] == chat_template_hash(get_chat_template("zephyr"))
    assert entry["max_length"] == 7
    own = load_target(str(tiny_model))
    assert own.manifest_entry()["chat_template_hash"] == chat_template_hash(own.tokenizer.chat_template)
    with pytest.raises(ModelError, match="does not exist"):
        load_target(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no tokenizer files"):
        load_target(str(tmp_path / "empty"))
    # template only (no tokenizer): the family's special tokens
    only = load_target(None, "llama-3")
    assert only.tokenizer is None
    assert only.renderer.render([[{"role": "user", "content": "x"}]])[0].startswith("<|begin_of_text|>")


def test_cli_errors_are_one_line(tiny_model_no_template, tmp_path, capsys):  # noqa: F811
    from prefkit.cli import main

    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a b", "chosen": "c", "rejected": "d"}\n')
    for extra, message in (
        (["--tokenizer", str(tiny_model_no_template)], "has no chat template"),
        (["--chat-template", "nosuch"], "unknown chat template"),
        (["--max-length", "10"], "--tokenizer"),
    ):
        with pytest.raises(SystemExit, match=r"^1$") as exit_:
            main(["build", str(data), "-o", str(tmp_path / "out"), *extra])
        assert exit_.value.code == 1
        err = capsys.readouterr().err
        assert message in err and "Hint:" in err and "Traceback" not in err


def test_template_hash_of_named_templates_is_the_default_one():
    """Tokenizers may carry a dict of named templates; the hash is the one that renders rows (``default``)."""
    import hashlib

    from prefkit.chat.templates import template_hash

    default, tools = get_chat_template("chatml"), get_chat_template("zephyr")
    assert (
        template_hash({"default": default, "tool_use": tools}) == hashlib.sha256(default.encode()).hexdigest()
    )
    assert template_hash(default) != template_hash(tools) and template_hash(None) is None
