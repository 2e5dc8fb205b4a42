"""The typed manifest (:mod:`prefkit.store.manifest_model`): a build's ``prefkit.json`` reads into the model and
writes back to the same bytes, older manifests read, keys the model does not know are kept, a wrong type is one
error, and the JSON Schema in ``schemas/`` is the model's."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest

from prefkit import build
from prefkit.errors import OutputError
from prefkit.output import read_output, write_manifest
from prefkit.output.card import render_card
from prefkit.store.manifest_model import Manifest, Report, json_schema
from tests.builders import conversational_rows

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "manifest.schema.json"


def _source(tmp_path: Path, n: int = 40) -> Path:
    rows = conversational_rows(n)
    rng = random.Random(0)
    for row in rows:
        row["score_chosen"], row["score_rejected"] = rng.randint(5, 9), rng.randint(0, 4)
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A set whose manifest has most sections a build writes: sources with formats and counts, options, recipe,
    splits with files, totals, a test split, the tokenizer entry, statistics."""
    tmp = tmp_path_factory.mktemp("manifest")
    out = tmp / "set"
    build([str(_source(tmp))], out, dedup=True, test_size=0.2, seed=0, chat_template="chatml")
    return out


def test_schema_file_is_in_sync():
    on_disk = json.loads(SCHEMA_PATH.read_text())
    assert on_disk == json_schema(), "run `python scripts/export_schemas.py`"


def test_a_builds_manifest_is_byte_identical_through_the_model(built):
    text = (built / "prefkit.json").read_text(encoding="utf-8")
    manifest = Manifest.model_validate(json.loads(text))
    assert manifest.to_json() == text
    assert {"sources", "recipe", "splits", "totals", "test_split", "tokenizer", "stats"} <= manifest.model_fields_set
    assert manifest.tokenizer is not None and manifest.tokenizer.chat_template == "builtin:chatml"
    assert manifest.test_split is not None and manifest.test_split.test_size == 0.2
    assert set(manifest.split_entries) == {"train", "test"}


@pytest.mark.parametrize("export", ["kto", "openai"])
def test_an_exported_sets_manifest_is_byte_identical_through_the_model(export, tmp_path):
    out = tmp_path / "set"
    build([str(_source(tmp_path))], out, export=export)
    text = (out / "prefkit.json").read_text(encoding="utf-8")
    manifest = Manifest.model_validate(json.loads(text))
    assert manifest.to_json() == text
    assert manifest.export_shape == export and manifest.export is not None and manifest.export.splits


def test_a_manifest_validates_against_the_exported_schema(built):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads((built / "prefkit.json").read_text()), json.loads(SCHEMA_PATH.read_text()))
    broken = json.loads((built / "prefkit.json").read_text())
    broken["splits"]["train"]["kept"] = "many"
    with pytest.raises(jsonschema.ValidationError, match="'many' is not valid"):
        jsonschema.validate(broken, json.loads(SCHEMA_PATH.read_text()))


#: what prefkit 0.1 did not write: recipes, totals, statistics, test-split details, the tokenizer entry, the
#: quality pass, split file lists, unused columns (the keys and sections later releases added)
ADDED_AFTER_0_1 = ("recipe", "totals", "stats", "test_split", "tokenizer", "decontamination", "report", "push")
#: what prefkit 0.2 did not write: split file lists (readers found shards by name), reports, push records
ADDED_AFTER_0_2 = ("report", "push")


def _as_older(manifest: dict, version: str) -> dict:
    older = copy.deepcopy(manifest)
    older["prefkit_version"] = version
    for key in ADDED_AFTER_0_1 if version == "0.1.0" else ADDED_AFTER_0_2:
        older.pop(key, None)
    for entry in older["splits"].values():
        entry.pop("files", None)
    for src in older["sources"]:
        for split in src["splits"].values():
            split.pop("unused_columns", None)
    return older


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_manifests_older_prefkit_versions_wrote_still_read(version, built, tmp_path):
    older = _as_older(json.loads((built / "prefkit.json").read_text()), version)
    manifest = Manifest.model_validate(older)
    assert manifest.to_dict() == older
    assert manifest.stats is None if version == "0.1.0" else manifest.stats is not None
    assert all(entry.files is None for entry in manifest.split_entries.values())
    # a folder with such a manifest still opens (its shards found by name), and its card renders
    copy_dir = tmp_path / "older"
    copy_dir.mkdir()
    for path in built.rglob("*"):
        if path.is_file():
            target = copy_dir / path.relative_to(built)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    (copy_dir / "prefkit.json").write_text(json.dumps(older, indent=2) + "\n")
    folder = read_output(copy_dir)
    assert set(folder.splits) == {"train", "test"}
    assert folder.typed_manifest.built_max_length is None
    card = render_card(older, {}, name="older")
    assert f"prefkit {version}, built {older['created']}." in card


def test_keys_the_model_does_not_know_are_kept_in_their_place(built):
    data = json.loads((built / "prefkit.json").read_text())
    data = {"future_section": {"b": 1, "a": [1, 2]}, **data}
    data["splits"]["train"]["future_count"] = 3
    data["sources"][0]["splits"]["train"]["format"]["future_key"] = None
    manifest = Manifest.model_validate(data)
    assert manifest.to_dict() == data
    assert list(manifest.to_dict()) == list(data)
    assert list(manifest.to_dict()["splits"]["train"]) == list(data["splits"]["train"])
    assert manifest.get("future_section") == {"b": 1, "a": [1, 2]} and manifest.has("future_section")
    assert manifest.split_entries["train"].get("future_count") == 3


def test_a_section_set_later_goes_last_and_a_replaced_one_keeps_its_place(built, tmp_path):
    data = json.loads((built / "prefkit.json").read_text())
    manifest = Manifest.model_validate(data)
    manifest.report = Report(path="report.html", created="2026-01-01T00:00:00+00:00", seed=0)
    manifest.stats = manifest.stats  # replaced: stays where it was
    assert list(manifest.to_dict()) == [*data, "report"]
    assert list(manifest.to_dict()["report"]) == ["path", "created", "seed"]
    write_manifest(tmp_path, manifest)
    expected = json.dumps({**data, "report": manifest.report.to_dict()}, indent=2) + "\n"
    assert (tmp_path / "prefkit.json").read_text() == expected


def test_values_are_not_converted():
    data = {"splits": {"train": {"read": 3, "kept": 3}}, "test_split": {"test_size": 1, "seed": 0}}
    manifest = Manifest.model_validate(data)
    assert manifest.test_split is not None and type(manifest.test_split.test_size) is int
    assert manifest.to_dict() == data
    with pytest.raises(ValueError, match="kept\n  Input should be a valid integer"):
        Manifest.model_validate({"splits": {"train": {"kept": "3"}}})


def test_a_manifest_with_a_wrongly_typed_section_is_one_error(built, tmp_path):
    data = json.loads((built / "prefkit.json").read_text())
    data["tokenizer"] = "chatml"
    out = tmp_path / "set"
    out.mkdir()
    for path in built.rglob("*"):
        if path.is_file():
            target = out / path.relative_to(built)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    (out / "prefkit.json").write_text(json.dumps(data))
    with pytest.raises(OutputError, match=r"is not a prefkit manifest \(tokenizer: Input should be a valid"):
        read_output(out)
    with pytest.raises(ValueError, match="tokenizer"):
        write_manifest(tmp_path, data)  # a writer's mistake is caught before the file is written
