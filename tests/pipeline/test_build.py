"""prefkit build on local data: every family, every filter, the accounting identity, the output folder."""

from __future__ import annotations

import json

import datasets
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefkit import BuildOptions, build
from prefkit.errors import FormatError, OptionError, OutputError, SelectionError, SourceError
from prefkit.formats import detect
from prefkit.record import ARROW_SCHEMA, PreferenceRecord


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def msgs(*turns):
    return [{"role": r, "content": c} for r, c in turns]


def assert_counts_add_up(manifest):
    for split, c in manifest["splits"].items():
        assert c["read"] == c["kept"] + sum(c["dropped"].values()) + sum(c["invalid"].values()), split
    t = manifest["totals"]
    assert t["read"] == sum(c["read"] for c in manifest["splits"].values())


def kept_rows(out, split="train"):
    return pq.read_table(next((out / "data").glob(f"{split}-*.parquet"))).to_pylist()


# ---------------------------------------------------------------- families


def test_flat_with_aliases_and_system(tmp_path):
    rows = [
        {"system": "Be brief.", "question": "Q1", "chosen": "good", "rejected": "bad", "delta_score": 2.5},
        {"system": "", "question": "Q2", "chosen": "fine", "rejected": "worse", "delta_score": 1.0},
    ]
    res = build(write_jsonl(tmp_path / "a.jsonl", rows), tmp_path / "out")
    out = kept_rows(tmp_path / "out")
    assert out[0]["prompt"] == msgs(("system", "Be brief."), ("user", "Q1"))
    assert out[1]["prompt"] == msgs(("user", "Q2"))  # empty system is dropped, not an empty message
    assert out[0]["chosen"] == msgs(("assistant", "good")) and out[0]["rejected"] == msgs(
        ("assistant", "bad")
    )
    assert [r["margin"] for r in out] == [2.5, 1.0]
    fmt = res.manifest["sources"][0]["splits"]["train"]["format"]
    assert fmt == {
        "family": "flat",
        "prompt": "question",
        "chosen": "chosen",
        "rejected": "rejected",
        "system": "system",
        "margin": "delta_score",
    }


def test_flat_response_aliases_and_hyphenated_scores(tmp_path):
    rows = [
        {
            "instruction": "Q",
            "chosen_response": "x",
            "rejected_response": "y",
            "chosen-rating": 4.5,
            "rejected-rating": 2.0,
        }
    ]
    res = build(write_jsonl(tmp_path / "a.jsonl", rows), tmp_path / "out")
    (row,) = kept_rows(tmp_path / "out")
    assert (row["score_chosen"], row["score_rejected"], row["margin"]) == (4.5, 2.0, 2.5)
    fmt = res.manifest["sources"][0]["splits"]["train"]["format"]
    assert fmt["score_chosen"] == "chosen-rating" and fmt["prompt"] == "instruction"


def test_implicit_messages_multi_turn(tmp_path):
    hist = [("system", "S"), ("user", "u1"), ("assistant", "a1"), ("user", "u2")]
    rows = [
        {
            "prompt": "u1",
            "chosen": msgs(*hist, ("assistant", "good")),
            "rejected": msgs(*hist, ("assistant", "bad")),
            "score_chosen": 8.0,
            "score_rejected": 6.0,
        },
        # histories differ at turn 2: invalid, never silently taken from chosen
        {
            "prompt": "u1",
            "chosen": msgs(("user", "u1"), ("assistant", "A"), ("user", "u2"), ("assistant", "x")),
            "rejected": msgs(("user", "u1"), ("assistant", "B"), ("user", "u2"), ("assistant", "y")),
            "score_chosen": 8.0,
            "score_rejected": 6.0,
        },
        {
            "prompt": "u",
            "chosen": msgs(("assistant", "only")),
            "rejected": msgs(("assistant", "answer")),
            "score_chosen": 8.0,
            "score_rejected": 6.0,
        },
    ]
    res = build(write_jsonl(tmp_path / "b.jsonl", rows), tmp_path / "out")
    (row,) = kept_rows(tmp_path / "out")
    assert row["prompt"] == msgs(*hist)
    assert row["chosen"] == msgs(("assistant", "good")) and row["margin"] == 2.0
    assert res.manifest["splits"]["train"]["invalid"] == {"histories_differ": 1, "missing_prompt": 1}


def test_explicit_messages(tmp_path):
    rows = [
        {
            "prompt": msgs(("user", "hi"), ("assistant", "hello"), ("user", "how are you?")),
            "chosen": msgs(("assistant", "great")),
            "rejected": msgs(("assistant", "meh")),
        },
        {
            "prompt": msgs(("user", "q")),
            "chosen": msgs(("assistant", "a"), ("assistant", "b")),
            "rejected": msgs(("assistant", "c")),
        },
        {
            "prompt": msgs(("assistant", "q")),
            "chosen": msgs(("assistant", "a")),
            "rejected": msgs(("assistant", "c")),
        },
    ]
    res = build(write_jsonl(tmp_path / "c.jsonl", rows), tmp_path / "out")
    (row,) = kept_rows(tmp_path / "out")
    assert row["prompt"][-1] == {"role": "user", "content": "how are you?"}
    assert res.manifest["splits"]["train"]["invalid"] == {
        "answer_not_single_assistant": 1,
        "bad_prompt_roles": 1,
    }


def test_transcripts_split_at_turns(tmp_path):
    common = "\n\nHuman: What is 1+1?\n\nAssistant: 2\n\nHuman: And 2+2?\n\nAssistant:"
    rows = [
        # answers that start alike: a character-level prefix would eat "The answer is"
        {"chosen": common + " The answer is 4.", "rejected": common + " The answer is 5."},
        {"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"},
        {"chosen": "no markers at all", "rejected": "\n\nHuman: B\n\nAssistant: y"},
    ]
    res = build(write_jsonl(tmp_path / "d.jsonl", rows), tmp_path / "out")
    (row,) = kept_rows(tmp_path / "out")
    assert row["prompt"] == msgs(("user", "What is 1+1?"), ("assistant", "2"), ("user", "And 2+2?"))
    assert row["chosen"] == msgs(("assistant", "The answer is 4.")) and row["rejected"] == msgs(
        ("assistant", "The answer is 5.")
    )
    assert res.manifest["splits"]["train"]["invalid"] == {"bad_transcript": 1, "histories_differ": 1}


def test_column_overrides_and_forced_format(tmp_path):
    rows = [{"q": "Q", "good": "yes", "bad": "no", "pref": 3}]
    path = write_jsonl(tmp_path / "x.jsonl", rows)
    with pytest.raises(FormatError, match="no known preference-data shape matches the columns") as err:
        build(path, tmp_path / "out")
    assert "q (string)" in err.value.message and "--prompt-col" in err.value.hint
    build(
        path,
        tmp_path / "out",
        prompt_col="q",
        chosen_col="good",
        rejected_col="bad",
        margin_col="pref",
        format="flat",
    )
    (row,) = kept_rows(tmp_path / "out")
    assert row["prompt"] == msgs(("user", "Q")) and row["margin"] == 3.0


def test_override_naming_a_missing_column_lists_columns(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}])
    with pytest.raises(
        FormatError, match=r"column 'nope' not found; columns are \['prompt', 'chosen', 'rejected'\]"
    ):
        build(path, tmp_path / "out", prompt_col="nope")


def test_detect_prefers_explicit_over_implicit():
    table = pa.table(
        {
            "prompt": [msgs(("user", "q"))],
            "chosen": [msgs(("assistant", "a"))],
            "rejected": [msgs(("assistant", "b"))],
        }
    )
    assert detect(table).family == "explicit-messages"
    assert detect(table.drop(["prompt"])).family == "implicit-messages"


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"min_margin": 1}, "min_margin"),
        ({"top": 5, "dedup": True}, "dedup=..., top"),
        ({"options": BuildOptions.create(select={"test_size": 0.1})}, "test_size"),
    ],
)
def test_detect_refuses_the_options_it_does_not_read(tmp_path, given, named):
    """detect reads a source's shape: an option that chooses rows would change nothing, so it is refused (it was
    ignored), naming it; the options it does read are still taken."""
    from prefkit import detect as detect_source

    path = write_jsonl(tmp_path / "x.jsonl", [{"q": "p", "good": "c", "bad": "r"}])
    with pytest.raises(OptionError, match=rf"detect does not read {named}") as err:
        detect_source(path, **given)
    assert "detect reads split=..." in str(err.value.hint)
    found = detect_source(path, prompt_col="q", chosen_col="good", rejected_col="bad", format="flat")
    assert found.splits["train"]["mapping"]["prompt"] == "q"


def test_the_detect_command_has_a_flag_for_each_option_detect_reads():
    import click

    from prefkit.cli import cli
    from prefkit.pipeline import DETECT_OPTIONS

    ctx = click.Context(cli, **cli.context_settings)
    params = cli.get_command(ctx, "detect").params
    flags = [p.name for p in params if isinstance(p, click.Option) and p.name not in ("token", "sample", "as_json")]
    assert sorted(flags) == sorted(DETECT_OPTIONS)


# ---------------------------------------------------------------- filters


def flat_rows(margins, **extra):
    return [
        {"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}", "delta_score": m, **extra}
        for i, m in enumerate(margins)
    ]


def test_ties_dropped_by_default_and_kept_with_flag(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", flat_rows([1.0, 0.0, 2.0]))
    assert build(path).manifest["splits"]["train"]["dropped"] == {"tie": 1}
    assert build(path, keep_ties=True).manifest["splits"]["train"]["kept"] == 3


def test_identical_after_whitespace_normalisation_always_dropped(tmp_path):
    rows = [{"prompt": "p", "chosen": "same  text\n", "rejected": " same text", "delta_score": 1.0}]
    res = build(write_jsonl(tmp_path / "t.jsonl", rows), keep_ties=True, keep_residue=True)
    assert res.manifest["splits"]["train"]["dropped"] == {"identical": 1}


@pytest.mark.parametrize(
    ("text", "marker"),
    [
        ("<|im_start|>user", "<|im_start|>user"),
        ("ok<|eot_id|>", "<|eot_id|>"),
        ("[INST] hi [/INST]", "[INST] hi [/INST]"),
        ("a<extra_id_1>b", "<extra_id_1>"),
        ("Human: hi", "Human:"),
        ("Hello<|im_end|>\n<|im_start|>assistant\nSure", "<|im_end|>\n<|im_start|>assistant\n"),
        ("Sure.</s> [INST] more [/INST]", "</s> [INST]"),
        ("Hi<end_of_turn>\n<start_of_turn>model\nyes", "<end_of_turn>\n<start_of_turn>model\n"),
        (
            "q<|eot_id|><|start_header_id|>assistant<|end_header_id|>",
            "<|eot_id|><|start_header_id|>assistant<|end_header_id|>",
        ),
        ("a question\n<|user|>\nanother", "<|user|>\n"),
        ("Sure.</s>\n<|user|>", "</s>\n<|user|>"),  # Zephyr: end of turn, then the next turn's header
        ("ok\n<|assistant|>\nthe answer", "<|assistant|>\n"),  # a turn header opening a line
        ("Sure.<|end|>", "<|end|>"),  # Phi-3's end of turn closing the text
        ("<|begin_of_text|>Hello", "<|begin_of_text|>"),  # Llama 3's BOS opening the text
    ],
)
def test_template_residue(tmp_path, text, marker):
    import polars as pl

    rows = [{"prompt": text, "chosen": "c", "rejected": "r", "delta_score": 1.0}]
    rows.append(
        {"prompt": "clean", "chosen": "c", "rejected": "r", "delta_score": 1.0}
    )  # a set is never empty
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    assert build(path, tmp_path / "o").manifest["splits"]["train"]["dropped"] == {"template_residue": 1}
    rejects = pl.read_parquet(tmp_path / "o" / "rejects" / "train.parquet")
    assert rejects["detail"].to_list() == [marker]
    assert build(path, keep_residue=True).manifest["splits"]["train"]["kept"] == 2


@pytest.mark.parametrize(
    "text",
    [
        "The token `<|im_start|>` begins a turn in ChatML and `<|im_end|>` ends it.",
        "In ChatML, <|im_start|> begins a turn and <|im_end|> ends it.",
        "[INST] opens a user turn in the Llama 2 format.",
        "Here is a dialogue:\nHuman: hi\nAssistant: hello",
        "Use this:\n```\n<|im_start|>user\nhi<|im_end|>\n```",
        "Gemma wraps turns in <start_of_turn> and <end_of_turn> tags, e.g. <start_of_turn>user.",
        "A Jinja template writes {{ '<|eot_id|>' }} after each message.",
    ],
)
def test_text_about_template_markers_is_kept(tmp_path, text):
    rows = [{"prompt": "Explain chat templates", "chosen": text, "rejected": "no", "delta_score": 1.0}]
    assert build(write_jsonl(tmp_path / "t.jsonl", rows)).manifest["splits"]["train"]["kept"] == 1


def test_empty_and_null_are_invalid(tmp_path):
    rows = flat_rows([1.0, 1.0, 1.0])
    rows[0]["chosen"] = "  \n"
    rows[1]["prompt"] = None
    res = build(write_jsonl(tmp_path / "t.jsonl", rows))
    assert res.manifest["splits"]["train"]["invalid"] == {"empty_text": 1, "null_value": 1}


def test_top_is_stable_and_sorted_by_margin(tmp_path):
    margins = [1.0, 3.0, 2.0, 3.0, 0.5, 2.0]
    res = build(write_jsonl(tmp_path / "t.jsonl", flat_rows(margins)), tmp_path / "out", top=4)
    out = kept_rows(tmp_path / "out")
    # descending margin, ties in source order
    assert [r["source_index"] for r in out] == [1, 3, 2, 5]
    assert res.manifest["splits"]["train"]["dropped"] == {"not_in_top": 2}


def test_without_top_source_order_is_kept(tmp_path):
    build(write_jsonl(tmp_path / "t.jsonl", flat_rows([1.0, 3.0, 2.0])), tmp_path / "out")
    assert [r["source_index"] for r in kept_rows(tmp_path / "out")] == [0, 1, 2]


def test_min_margin(tmp_path):
    res = build(write_jsonl(tmp_path / "t.jsonl", flat_rows([0.5, 1.0, 2.0])), min_margin=1.0)
    c = res.manifest["splits"]["train"]
    assert c["kept"] == 2 and c["dropped"] == {"below_min_margin": 1}


def test_top_without_margin_is_an_error_with_hint(tmp_path):
    rows = [{"prompt": "p", "chosen": "c", "rejected": "r"}]
    with pytest.raises(SelectionError, match="--top needs a margin on every row") as err:
        build(write_jsonl(tmp_path / "t.jsonl", rows), top=1)
    assert "1 of 1 valid rows have none" in err.value.message and "margin_col=..." in err.value.hint


def test_max_rows_first_n_and_seeded_sample(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", flat_rows([1.0] * 10))
    first = build(path, max_rows=3)
    assert [r for r in first.splits["train"].column("source_index").to_pylist()] == [0, 1, 2]
    a = build(path, max_rows=3, seed=1).splits["train"].column("source_index").to_pylist()
    b = build(path, max_rows=3, seed=1).splits["train"].column("source_index").to_pylist()
    c = build(path, max_rows=3, seed=2).splits["train"].column("source_index").to_pylist()
    assert a == b and a == sorted(a) and len(a) == 3
    assert a != c or a != [0, 1, 2]
    assert first.manifest["splits"]["train"]["dropped"] == {"over_max_rows": 7}


# ---------------------------------------------------------------- output folder & accounting


def test_accounting_identity_and_rejects_hold_every_row(tmp_path):
    rows = flat_rows([2.0, 0.0, 1.0, 3.0, 0.2])
    rows.append({"prompt": None, "chosen": "c", "rejected": "r", "delta_score": 1.0})
    rows.append({"prompt": "p", "chosen": "<|im_end|>", "rejected": "r", "delta_score": 1.0})
    res = build(write_jsonl(tmp_path / "t.jsonl", rows), tmp_path / "out", top=2, min_margin=0.5)
    manifest = json.loads((tmp_path / "out" / "prefkit.json").read_text())
    assert_counts_add_up(manifest)
    rejects = pl.read_parquet(tmp_path / "out" / "rejects" / "train.parquet")
    kept = {r["source_index"] for r in kept_rows(tmp_path / "out")}
    assert kept | set(rejects["source_index"]) == set(range(len(rows)))
    assert not kept & set(rejects["source_index"])
    counted = rejects.group_by("stage", "reason").len()
    c = manifest["splits"]["train"]
    for stage, reason, n in counted.iter_rows():
        assert c[stage][reason] == n
    # original fields are kept next to the reason
    assert {"prompt", "chosen", "rejected", "delta_score"} <= set(rejects.columns)
    assert res.manifest == manifest | {"splits": res.manifest["splits"]}


def test_round_trip_load_dataset_and_plain_types(tmp_path):
    res = build(write_jsonl(tmp_path / "t.jsonl", flat_rows([1.0, 2.0])), tmp_path / "out")
    ds = datasets.load_dataset(str(tmp_path / "out"))
    assert ds["train"].num_rows == 2
    assert ds["train"].features == datasets.Features.from_arrow_schema(ARROW_SCHEMA)
    ds2 = datasets.load_dataset("parquet", data_files=str(tmp_path / "out" / "data" / "*.parquet"))
    assert ds2["train"].to_list() == ds["train"].to_list()
    schema = pq.read_schema(next((tmp_path / "out" / "data").glob("*.parquet")))
    assert "large" not in str(schema.remove_metadata())
    for row in ds["train"]:
        PreferenceRecord.model_validate(row)  # every written row satisfies the pydantic contract
    assert res.dataset["train"].num_rows == 2


def test_ids_are_stable_and_content_based(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", flat_rows([1.0, 2.0]))
    a = build(path).splits["train"].column("id").to_pylist()
    b = build(path).splits["train"].column("id").to_pylist()
    assert a == b and len(set(a)) == 2


def test_refuses_to_overwrite_and_is_atomic(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", flat_rows([1.0]))
    out = tmp_path / "out"
    build(path, out)
    before = (out / "prefkit.json").read_text()
    with pytest.raises(OutputError, match="already exists") as err:
        build(path, out)
    assert "overwrite=True" in err.value.hint and "--overwrite" in err.value.text("cli")[1]
    # a failing build leaves the old folder untouched and no staging folders behind
    with pytest.raises(SelectionError, match="1 of 1 valid rows have none"):
        build(
            write_jsonl(tmp_path / "n.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}]),
            out,
            top=1,
            overwrite=True,
        )
    assert (out / "prefkit.json").read_text() == before
    build(path, out, overwrite=True, top=1)
    assert json.loads((out / "prefkit.json").read_text())["parameters"]["top"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.jsonl", "out", "t.jsonl"]


# ---------------------------------------------------------------- local sources


def test_local_formats_parquet_csv_json_array(tmp_path):
    rows = flat_rows([1.0, 2.0])
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "x.parquet")
    pl.DataFrame(rows).write_csv(tmp_path / "x.csv")
    (tmp_path / "x.json").write_text(json.dumps(rows))
    for name in ("x.parquet", "x.csv", "x.json"):
        assert build(tmp_path / name).manifest["splits"]["train"]["kept"] == 2, name


def test_saved_and_hub_layout_folders(tmp_path):
    dd = datasets.DatasetDict(
        {
            "train_prefs": datasets.Dataset.from_list(flat_rows([1.0, 2.0])),
            "test_prefs": datasets.Dataset.from_list(flat_rows([1.0])),
        }
    )
    dd.save_to_disk(tmp_path / "saved")
    res = build(tmp_path / "saved", split="train_prefs")
    assert list(res.splits) == ["train_prefs"]
    (tmp_path / "hub" / "data").mkdir(parents=True)
    dd["train_prefs"].to_parquet(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet")
    assert build(tmp_path / "hub").manifest["splits"]["train"]["kept"] == 2


def test_local_split_not_found_lists_splits(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", flat_rows([1.0]))
    with pytest.raises(SourceError, match=r"split 'test' not found .*available splits: train"):
        build(path, split="test")


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"\nnot json\n')
    with pytest.raises(SourceError, match=r"cannot read .*bad\.jsonl"):
        build(bad)
    with pytest.raises(SourceError, match="neither an existing file"):
        build(tmp_path / "missing.jsonl")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(SourceError, match="unsupported file type"):
        build(tmp_path / "x.txt")


def test_example_dataset_builds(tmp_path):
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "prefkit" / "examples" / "ultrafeedback-mini.jsonl"
    res = build(example, tmp_path / "out", top=20)
    c = res.manifest["splits"]["train"]
    assert c["kept"] == 20 and c["invalid"] == {"empty_text": 1, "histories_differ": 1}
    assert c["dropped"] == {"identical": 1, "not_in_top": 8, "template_residue": 1, "tie": 1}


def test_selection_drops_listed_without_text_unless_full_rejects(tmp_path):
    rows = flat_rows([3.0, 2.0, 1.0, 0.0])
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    build(path, tmp_path / "a", top=1)
    rejects = pl.read_parquet(tmp_path / "a" / "rejects" / "train.parquet").sort("source_index")
    assert rejects["reason"].to_list() == ["not_in_top", "not_in_top", "tie"]
    assert rejects["margin"].to_list() == [2.0, 1.0, 0.0]
    assert rejects["chosen"].to_list() == [None, None, "c3"]  # the tie keeps its text; selection drops do not
    build(path, tmp_path / "b", top=1, full_rejects=True)
    full = pl.read_parquet(tmp_path / "b" / "rejects" / "train.parquet").sort("source_index")
    assert full["chosen"].to_list() == ["c1", "c2", "c3"]
