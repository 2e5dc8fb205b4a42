"""Presets (data in prefkit/formats/presets_data/): every catalog dataset builds from a Hub-shaped test repo into correct pairs;
`prefkit presets` lists them; an explicit option always wins; unknown datasets are still detected."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from prefkit import build
from prefkit.cli import cli
from prefkit.formats import FAMILIES
from prefkit.formats.presets import all_presets, find_preset
from tests import catalog as C
from tests.catalog import publish

CATALOG = C.catalog()

#: catalog id -> (split, chosen content of its first kept row, kept rows in that split)
EXPECTED = {
    "mlabonne/chatml-OpenHermes2.5-dpo-binarized-alpha": ("train", "Sure, here is the script 0", 4),
    "yuvraj17/chatml-OpenHermes2.5-dpo-binarized-alpha-2k": ("train", "Sure, here is the script 0", 4),
    "mlabonne/orpo-dpo-mix-40k": ("train", "good answer 0", 4),
    "argilla/dpo-mix-7k": ("train", "good 0", 4),
    "argilla/distilabel-intel-orca-dpo-pairs": ("train", "answer 0", 3),  # status "tie" row dropped
    "Intel/orca_dpo_pairs": ("train", "Trans 0", 4),
    "HuggingFaceH4/ultrafeedback_binarized": ("train_prefs", "Like this 1", 3),  # row 0 is a tie
    "argilla/ultrafeedback-binarized-preferences-cleaned": ("train", "best 0", 4),
    "openbmb/UltraFeedback": ("train", "great 0", 4),
    "Anthropic/hh-rlhf": ("train", "Y is 0", 4),
    "trl-lib/ultrafeedback_binarized": ("train", "c0", 4),
    "trl-lib/hh-rlhf-helpful-base": ("train", "Here is 0", 4),
    "stanfordnlp/SHP": ("train", "comment A 0", 4),
    "berkeley-nest/Nectar": ("train", "answer 0 rank 1.0", 4),
    "PKU-Alignment/PKU-SafeRLHF": ("train", "resp0 0", 4),
    "nvidia/HelpSteer2": ("train", "C# is 0", 4),
    "jondurbin/truthy-dpo-v0.1": ("train", "As an AI, I don't have a body 0", 4),
    "Skywork/Skywork-Reward-Preference-80K-v0.2": ("train", "good 0", 4),
    "allenai/llama-3.1-tulu-3-8b-preference-mixture": ("train", "c0", 4),
    "argilla/Capybara-Preferences": ("train", "better 0", 4),
    "lmsys/chatbot_arena_conversations": ("train", "B says 0", 2),  # two ties dropped
}


def test_a_preset_for_every_catalog_dataset():
    assert len(all_presets()) >= 21
    for repo_id, (_, _, _, family) in CATALOG.items():
        preset = find_preset(repo_id)
        assert preset is not None, repo_id
        assert preset.family == family and preset.family in FAMILIES
        assert "license" in preset.to_dict() and preset.notes


@pytest.mark.parametrize("repo_id", list(CATALOG))
def test_catalog_dataset_builds_from_the_hub(hub, tmp_path, repo_id):
    publish(hub, repo_id)
    _, _, kwargs, family = CATALOG[repo_id]
    res = build(repo_id, tmp_path / "out", **kwargs)
    split, first_chosen, kept = EXPECTED[repo_id]
    src = res.manifest["sources"][0]
    assert src["preset"] == repo_id and src["sha"]
    assert src["splits"][split]["format"]["family"] == family
    assert res.splits[split].column("chosen").to_pylist()[0] == C.msgs(("assistant", first_chosen))
    assert res.manifest["splits"][split]["kept"] == kept
    for c in res.manifest["splits"].values():
        added = sum(c.get("added", {}).values())
        assert c["read"] + added == c["kept"] + sum(c["dropped"].values()) + sum(c["invalid"].values())
    if repo_id == "HuggingFaceH4/ultrafeedback_binarized":  # the preset reads the *_prefs splits only
        assert set(res.splits) == {"train_prefs", "test_prefs"}
    if repo_id == "nvidia/HelpSteer2":  # the preset reads data_dir "preference"
        assert src["data_dir"] == "preference"


@pytest.fixture(scope="module")
def qwen3():
    """A tokenizer with Qwen3's template (tools, reasoning, chat-template keyword arguments)."""
    from prefkit.chat.templates import get_chat_template
    from tests.family_tokenizers import family_tokenizer

    return family_tokenizer("qwen3", get_chat_template("qwen3"))


CONVERSATIONAL = [
    r for r, (_, _, _, family) in CATALOG.items() if family in ("explicit-messages", "implicit-messages")
]


@pytest.mark.parametrize("repo_id", CONVERSATIONAL)
def test_catalog_rows_render_as_the_source_through_trl(hub, tmp_path, repo_id, qwen3):
    """For every catalog dataset TRL reads as it is (conversational rows), each kept output row renders through
    TRL's own ``maybe_extract_prompt`` + ``apply_chat_template`` with a tools- and reasoning-aware template
    exactly as its source row does: nothing the template sees was lost or changed."""
    from trl.data_utils import apply_chat_template, maybe_extract_prompt

    from prefkit.record import decode_row

    layout, files, kwargs, _ = CATALOG[repo_id]
    if layout != "dict":
        pytest.skip("rows laid out as files")
    publish(hub, repo_id)
    res = build(repo_id, tmp_path / "out", **kwargs)
    checked = 0
    for split, table in res.splits.items():
        source = files[split]
        for row in table.to_pylist():
            original = {
                k: source[row["source_index"]][k]
                for k in ("prompt", "chosen", "rejected")
                if k in source[row["source_index"]]
            }
            if not isinstance(original.get("chosen"), list):
                continue  # string answers next to a message prompt: TRL would not read them as a conversation
            expected = apply_chat_template(maybe_extract_prompt(original), qwen3)
            mine = decode_row({k: row[k] for k in ("prompt", "chosen", "rejected")})
            assert apply_chat_template(mine, qwen3) == expected, (repo_id, row["source_index"])
            checked += 1
    assert checked


def test_explicit_options_win_over_the_preset(hub, tmp_path):
    publish(hub, "HuggingFaceH4/ultrafeedback_binarized")
    res = build("HuggingFaceH4/ultrafeedback_binarized", split="train_sft")
    assert set(res.splits) == {"train_sft"}
    publish(hub, "openbmb/UltraFeedback")
    res = build("openbmb/UltraFeedback", pairs="best-vs-worst")
    assert res.manifest["sources"][0]["splits"]["train"]["format"]["extra"]["pairs"] == "best-vs-worst"
    assert res.splits["train"].column("rejected").to_pylist()[0] == C.msgs(("assistant", "poor 0"))


def test_preset_by_name_for_a_local_copy_and_detection_without_one(tmp_path):
    path = tmp_path / "orca.jsonl"
    path.write_text("".join(json.dumps(C.distilabel_orca(i)) + "\n" for i in range(3)))
    plain = build(path)  # no preset: detected as flat, the status column means nothing
    assert plain.manifest["splits"]["train"]["kept"] == 3 and "preset" not in plain.manifest["sources"][0]
    named = build(path, preset="argilla/distilabel-intel-orca-dpo-pairs")
    assert named.manifest["splits"]["train"]["dropped"] == {"tie": 1}
    assert named.manifest["sources"][0]["license"] == "apache-2.0"


def test_presets_command_lists_and_prints_json():
    runner = CliRunner()
    out = runner.invoke(cli, ["presets"])
    assert out.exit_code == 0
    for preset in all_presets():
        assert preset.id in out.output
    data = json.loads(runner.invoke(cli, ["presets", "--json"]).output)
    assert {p["id"] for p in data["presets"]} >= set(CATALOG)
    one = runner.invoke(cli, ["presets", "berkeley-nest/Nectar"])
    assert "rank" in one.output and "best-vs-worst" in one.output
