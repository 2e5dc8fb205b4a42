"""Presets: how prefkit reads the known Hub preference datasets. Data, not code: one JSON file per dataset in
``prefkit/formats/presets_data/`` (package data, read with :mod:`prefkit.resources`).

A preset applies when a source's Hub id equals its ``id`` or one of its ``aliases`` (case-insensitive), or when
named with ``--preset``. It only supplies *defaults*: an option given explicitly (``--split``, ``--format``,
``--prompt-col``, ``--pairs`` …) always wins. Unknown datasets are detected from their columns as before.

Keys (all optional but ``id`` and ``family``):

``family``         the shape (a ``prefkit.formats.FAMILIES`` name); used as ``--format``
``columns``        column overrides: ``prompt``/``chosen``/``rejected``/``system``
``margin_col``     the native margin column
``options``        family options: ``pairs``, ``rating``, ``axis``, ``min_gap`` …
``default_split``  split(s) read when ``--split`` is not given
``split_names``    output names of source splits when mixing several sources (``train_prefs`` -> ``train``)
``data_dir`` / ``config``  where in the repo to read when not given
``group``          the column grouping rows of one prompt (leak-free splits)
``tie_when``       ``{column, values}``: rows whose label column holds one of ``values`` are ties
``score_scale``    ``{what, min, max}``: the scale of the scores the margin comes from (mixing normalises by it)
``license``, ``gated``, ``known_splits``, ``notes``: shown by ``prefkit presets`` and recorded in the manifest
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from functools import cache
from typing import Any

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # pragma: no cover - Python 3.10
    from importlib.abc import Traversable

import difflib
from dataclasses import asdict

from prefkit import formats
from prefkit.errors import PresetError
from prefkit.resources import data_files
from prefkit.results import Result

PRESETS_FOLDER = "presets_data"


@dataclass(frozen=True)
class Preset:
    """One known dataset and how it is read."""

    id: str
    family: str
    aliases: tuple[str, ...] = ()
    columns: dict = field(default_factory=dict)
    margin_col: str | None = None
    options: dict = field(default_factory=dict)
    default_split: tuple[str, ...] = ()
    split_names: dict = field(default_factory=dict)
    data_dir: str | None = None
    config: str | None = None
    group: str | None = None
    tie_when: dict | None = None
    score_scale: dict | None = None
    license: str | None = None
    gated: bool = False
    known_splits: tuple[str, ...] = ()
    #: columns the dataset carries that no mapping reads (source tags, model names, judge texts): counted in the
    #: manifest's ``unused_columns`` like any other, but a build does not warn about them
    metadata_columns: tuple[str, ...] = ()
    notes: str = ""
    file: str = ""

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)

    @property
    def scale_span(self) -> float | None:
        """max - min of the score scale, when both are known (what mixing divides margins by)."""
        s = self.score_scale or {}
        if s.get("min") is None or s.get("max") is None:
            return None
        return float(s["max"]) - float(s["min"])

    def to_dict(self) -> dict:
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}  # JSON-ready
        return {k: v for k, v in out.items() if v not in (None, {}, [], "", False) or k in ("license",)}


def _from_file(path: Traversable) -> Preset:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise PresetError(f"cannot read preset {path.name}: {err}", "fix or remove the file") from None
    if not isinstance(data, dict) or "id" not in data or data.get("family") not in formats.FAMILIES:
        raise PresetError(
            f"preset {path.name} needs an `id` and a `family` among {', '.join(formats.FAMILIES)}",
            "see docs/formats.md (Presets) for the keys",
        )
    known = set(Preset.__dataclass_fields__) - {"file"}
    unknown = set(data) - known
    if unknown:
        raise PresetError(f"preset {path.name} has unknown keys {sorted(unknown)}", f"use: {sorted(known)}")
    ds = data.get("default_split") or ()
    data["default_split"] = (ds,) if isinstance(ds, str) else tuple(ds)
    data["aliases"] = tuple(data.get("aliases") or ())
    data["known_splits"] = tuple(data.get("known_splits") or ())
    data["metadata_columns"] = tuple(data.get("metadata_columns") or ())
    return Preset(**{k: v for k, v in data.items() if v is not None or k == "license"}, file=path.name)


@cache
def all_presets() -> tuple[Preset, ...]:
    """Every preset (the package's ``presets_data/*.json``), sorted by id."""
    files = data_files(__package__ or "prefkit.formats", PRESETS_FOLDER, ".json")
    return tuple(sorted((_from_file(p) for p in files), key=lambda p: p.id.lower()))


def find_preset(source_id: str) -> Preset | None:
    """The preset whose id or alias is ``source_id`` (case-insensitive), or None."""
    key = source_id.strip().lower()
    for preset in all_presets():
        if key in (i.lower() for i in preset.ids):
            return preset
    return None


def get_preset(name: str) -> Preset:
    """The preset named ``name`` (a dataset id or alias); an error listing them when unknown."""
    found = find_preset(name)
    if found is None:
        near = similar_presets(name)
        raise PresetError(
            f"no preset named {name!r}" + (f"; did you mean {' or '.join(near)}?" if near else ""),
            f"`prefkit presets {near[0]}` shows it"
            if near
            else "`prefkit presets` lists them (a source with no preset is read by detecting its shape)",
        )
    return found


def presets(name: str | None = None) -> PresetsResult:
    """`prefkit presets`: every known Hub dataset and how prefkit reads it, or only the preset ``name`` (a dataset
    id or alias). Returns a :class:`PresetsResult` (``presets``: :class:`Preset` objects;
    ``summary()``: the table `prefkit presets` prints). Raises :class:`~prefkit.errors.PresetError` for an unknown
    ``name``.

    >>> presets("stanfordnlp/SHP").presets[0].family  # doctest: +SKIP
    'pairwise'
    """
    return PresetsResult([get_preset(name)] if name else list(all_presets()), name=name)


def similar_presets(name: str, n: int = 3) -> list[str]:
    """Preset ids that ``name`` is part of (``nectar`` -> ``berkeley-nest/Nectar``) or is close to."""

    key = name.strip().lower()
    ids = [p.ids[0] for p in all_presets()]
    parts = [i for i in ids if key and (key in i.lower() or i.lower().rsplit("/", 1)[-1] == key)]
    close = difflib.get_close_matches(key, [i.lower() for i in ids], n=n, cutoff=0.6)
    names = {i.lower(): i for i in ids}
    return list(dict.fromkeys([*parts, *(names[c] for c in close)]))[:n]


@dataclass
class PresetsResult(Result):
    """The presets ``presets`` lists (one when it was given a ``name``)."""

    presets: list[Preset]
    name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"presets": [p.to_dict() for p in self.presets], **self.extra}

    def summary(self) -> str:
        if self.name:
            p = self.presets[0]
            lines = [f"{p.id}  (family {formats.FAMILIES[p.family].letter}: {p.family})"]
            for key, value in p.to_dict().items():
                if key not in ("id", "family", "file"):
                    lines.append(f"  {key:<14} {value}")
            return "\n".join(lines)
        header = f"{'dataset':<52} {'fam':<4} {'licence':<14} reads"
        lines = [header, "-" * len(header)]
        for p in self.presets:
            reads = []
            if p.data_dir:
                reads.append(f"data_dir={p.data_dir}")
            if p.default_split:
                reads.append(f"split={','.join(p.default_split)}")
            if p.options:
                reads += [f"{k}={v}" for k, v in p.options.items()]
            letter = formats.FAMILIES[p.family].letter
            lines.append(f"{p.id:<52} {letter:<4} {p.license or 'unknown':<14} {' '.join(reads) or '-'}")
        return "\n".join(lines)
