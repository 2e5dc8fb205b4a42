"""Eval sets for decontamination (:mod:`.decontaminate`): the built-in ones (``prefkit/select/evalsets.json``: Hub id,
config, split, text columns, licence, source) and ``--decontaminate`` values that name a file or a Hub dataset.
Items are read as lists of strings (:func:`prefkit.select.decontaminate.item_texts`)."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from prefkit.errors import PrefkitError, SelectionError
from prefkit.hub_client import hub_token, looks_like_path
from prefkit.resources import read_text
from prefkit.secrets import public_path
from prefkit.select.decontaminate import item_texts
from prefkit.sources import load_source

EVALSETS_FILE = "evalsets.json"


@cache
def evalset_presets() -> dict[str, dict[str, Any]]:
    """The built-in eval sets (``prefkit/select/evalsets.json``): name -> ``hub_id``, ``config`` (a name, a list of
    names whose splits are concatenated, or null), ``split``, ``data_files`` (or null), ``columns``,
    ``items`` (expected count), ``licence``, ``notes``, ``source``."""
    data = json.loads(read_text(__package__ or "prefkit.select", EVALSETS_FILE))
    return {name: spec for name, spec in data.items() if not name.startswith("$")}


_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def _load(spec: Mapping[str, Any], config: str | None, revision: str | None) -> Any:
    """``datasets.load_dataset`` of one config; a ``data_files`` entry is read with the builder of its
    extension straight from ``hf://`` (so a repo's legacy loading script, which datasets >= 4 refuses, is
    never involved)."""
    import datasets


    hub_token(None)  # refuse a token with a newline, bound the requests
    data_file = spec.get("data_files")
    if not data_file:
        return datasets.load_dataset(spec["hub_id"], config, split=spec["split"], revision=revision)
    builder = _BUILDERS.get(Path(data_file).suffix)
    if builder is None:
        raise SelectionError(
            f"data_files {data_file!r}: no builder for this extension", f"one of {list(_BUILDERS)}"
        )
    at = f"@{revision}" if revision else ""
    url = f"hf://datasets/{spec['hub_id']}{at}/{data_file}"
    return datasets.load_dataset(builder, data_files=url, split=spec["split"])


def load_evalset(spec: str | Mapping[str, Any], *, revision: str | None = None) -> list[list[str]]:
    """The items of an eval set from the Hub, each a list of strings (:func:`item_texts` of its columns).

    ``spec``: a preset name (:func:`evalset_presets`) or a mapping with the same keys. Downloads through
    ``datasets.load_dataset`` (cached, honours ``HF_ENDPOINT`` / ``HF_TOKEN``). Raises SelectionError for an
    unknown name and PrefkitError when the set cannot be loaded."""
    if isinstance(spec, str):
        presets = evalset_presets()
        if spec not in presets:
            raise SelectionError(f"unknown eval set {spec!r}", f"built-in eval sets: {', '.join(presets)}")
        spec = presets[spec]
    configs = spec.get("config")
    items: list[list[str]] = []
    for config in configs if isinstance(configs, list) else [configs]:
        try:
            ds = _load(spec, config, revision)
        except PrefkitError:
            raise
        except Exception as err:
            raise PrefkitError(
                f"eval set {spec['hub_id']} ({config or 'default'}/{spec['split']}) "
                f"could not be loaded: {err}",
                "check the network / HF_TOKEN, or pass a local file of the items (--decontaminate ./items.jsonl)",
            ) from err
        missing = [c for c in spec["columns"] if c not in ds.column_names]
        if missing:
            raise PrefkitError(
                f"eval set {spec['hub_id']} has no column {missing[0]!r}", f"has {ds.column_names}"
            )
        columns = [ds[c] for c in spec["columns"]]
        items += [[t for value in row for t in item_texts(value)] for row in zip(*columns, strict=True)]
    return items


#: columns read from an eval set that is not a built-in one, the first present wins
EVAL_TEXT_COLUMNS = ("prompt", "turns", "question", "instruction", "problem", "input", "messages", "text")


def _pick_text_column(columns: Sequence[str], where: str) -> str:
    found = next((c for c in EVAL_TEXT_COLUMNS if c in columns), None)
    if found is None:
        raise SelectionError(
            f"eval set {where} has none of the columns prefkit reads eval items from ({', '.join(EVAL_TEXT_COLUMNS)})",
            f"it has {', '.join(columns)}: rename the item column to `prompt`",
        )
    return found


def pinned_evalsets(specs: tuple[str, ...], sets: list[dict[str, Any]]) -> list[str]:
    """The ``--decontaminate`` values a recipe records: each built-in name pinned to the commit it was read at
    (``NAME@COMMIT``, from the manifest's ``decontamination.sets``), other values as given."""
    presets = evalset_presets()
    revisions = {s["name"]: s.get("revision") for s in sets}
    out = []
    for spec in specs:
        name = spec.partition("@")[0]
        rev = revisions.get(name)
        out.append(f"{name}@{rev}" if name in presets and rev else spec)
    return out


def hub_revision(repo_id: str, token: str | None = None) -> str | None:
    """The commit a Hub dataset's main branch is at now (what a built-in eval set is read at, and recorded as
    ``revision``); None when the Hub cannot be asked (offline: ``datasets`` then reads its cache)."""
    from huggingface_hub import HfApi

    try:
        return HfApi(token=token).dataset_info(repo_id).sha
    except Exception:  # offline or unreachable: the load reports what matters
        return None


def resolve_evalset(spec: str, *, token: str | None = None) -> tuple[str, list[list[str]], dict[str, Any]]:
    """``(name, items, description)`` of one ``--decontaminate`` value: a built-in name (:func:`evalset_presets`;
    read at the Hub commit it resolves to now, or at ``NAME@COMMIT``, and recorded as ``revision``),
    or a local file / folder / Hub dataset id read like a source (its ``test`` split, else its only split). The
    items are the first of :data:`EVAL_TEXT_COLUMNS` present (strings, lists of turns or messages).
    ``description`` is what the manifest records. Raises SelectionError / SourceError with a hint."""
    presets = evalset_presets()
    name, _, pinned = spec.partition("@")
    if name in presets:  # ``NAME@COMMIT``: a rebuild's recipe reads the commit the first build recorded
        preset = presets[name]
        revision = pinned or hub_revision(preset["hub_id"], token)
        where = {"hub_id": preset["hub_id"], "split": preset["split"], "revision": revision}
        return name, load_evalset(name, revision=revision), where

    exists = Path(spec).expanduser().exists()
    if not exists and (looks_like_path(spec) or "/" not in spec):  # a Hub dataset id has a namespace
        near = difflib.get_close_matches(spec.lower(), list(presets), n=1, cutoff=0.6)
        raise SelectionError(
            f"eval set {spec!r} is neither a built-in name nor an existing file"
            + (f"; did you mean {near[0]!r}?" if near else ""),
            f"built-in eval sets: {', '.join(presets)}; or a local file or a Hub dataset id (namespace/name)",
        )
    src = load_source(spec, token=token)
    split = "test" if "test" in src.splits else next(iter(src.splits), None)
    if split is None or (split != "test" and len(src.splits) > 1):
        raise SelectionError(
            f"eval set {spec!r} has splits {', '.join(src.splits) or '(none)'} and no `test` split",
            "pass one split's file (prefkit reads the items of one split)",
        )
    table = src.splits[split]
    column = _pick_text_column(table.column_names, repr(spec))
    values = table.select([column]).column(column).to_pylist()
    name = spec if src.kind == "hub" else Path(spec).name
    where = {"hub_id": spec, "revision": src.sha} if src.kind == "hub" else {"path": public_path(spec)}
    return name, [item_texts(v) for v in values], {**where, "split": split, "column": column}
