"""Source specs: ``SOURCE[:WEIGHT]`` on the command line, or an entry of a recipe's ``sources`` list.

A weight applies to the rows of each of the source's splits that survive validation and filters (and
``--dedup``), so it says what ends up in the output (drawing: :mod:`prefkit.select.mix`):

* a fraction ``0 < w <= 1`` written with a dot (``0.5``, ``1.0``): that share of the rows, sampled without
  replacement, in source order;
* a row count (an integer, ``2000``): that many rows; more than the source has means every row once plus draws
  with replacement for the rest (LLaMA-Factory's ``num_samples``);
* an upsampling factor ``w > 1`` written with a dot (``2.0``): every row once plus ``round((w - 1) * n)`` draws
  with replacement.

In a recipe a source may also carry its own ``revision``, ``config``, ``data_dir`` and ``split`` (they win over
the build-wide options); the manifest's recipe pins every Hub source to the commit it was read at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefkit.errors import OptionError, SelectionError
from prefkit.values import names, text

_NUMBER = re.compile(r"^(\d+(\.\d*)?|\.\d+)$")
#: per-source settings a recipe entry may carry besides ``source`` and ``weight``
SOURCE_KEYS = ("revision", "config", "data_dir", "split")


@dataclass(frozen=True)
class Weight:
    """How much of a source to take: ``kind`` is ``fraction``, ``rows`` or ``upsample``."""

    kind: str
    value: float
    text: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value, "text": self.text}


@dataclass(frozen=True)
class SourceSpec:
    """One source of a build: where it is, its optional weight, and its own read settings (None = build-wide)."""

    source: str | Path
    weight: Weight | None = None
    revision: str | None = None
    config: str | None = None
    data_dir: str | None = None
    split: tuple[str, ...] | None = None
    #: a local source's data files when the recipe was recorded: path → size and sha256
    #: (:mod:`prefkit.sources.digest`); a rebuild checks it reads the same
    files: dict | None = field(default=None, compare=False, hash=False)

    def to_recipe(self) -> dict[str, Any] | str:
        """The recipe entry: a plain string when the spec has no settings of its own."""
        settings = {k: getattr(self, k) for k in SOURCE_KEYS if getattr(self, k) is not None}
        if "split" in settings:
            settings["split"] = list(settings["split"])
        if self.files is not None:
            settings["files"] = self.files
        if not settings:
            return str(self.source) + (f":{self.weight.text}" if self.weight else "")
        return {
            "source": str(self.source),
            **({"weight": self.weight.text} if self.weight else {}),
            **settings,
        }


def parse_weight(text: str | int | float) -> Weight:
    """``"0.5"`` -> fraction, ``"2000"`` / ``2000`` -> rows, ``"2.0"`` -> upsample (see the module docstring)."""
    raw = str(text).strip()
    if isinstance(text, bool) or not _NUMBER.match(raw):
        raise SelectionError(
            f"bad source weight {raw!r}",
            "write SOURCE:WEIGHT with a fraction (0.5), a row count (2000) or an upsampling factor (2.0)",
        )
    if isinstance(text, int) or "." not in raw:
        rows = int(raw)
        if rows < 1:
            raise SelectionError(f"source weight {raw!r} asks for no rows", "use a positive row count")
        return Weight("rows", float(rows), raw)
    value = float(raw)
    if value <= 0:
        raise SelectionError(f"source weight {raw!r} asks for no rows", "use a fraction above 0, e.g. 0.5")
    return Weight("fraction" if value <= 1 else "upsample", value, raw)


def parse_source(spec: str | Path | SourceSpec | dict) -> SourceSpec:
    """``SOURCE:WEIGHT`` (an existing local path is never split, and a weight must look like a number), or a
    recipe entry ``{source, weight?, revision?, config?, data_dir?, split?}``."""
    if isinstance(spec, SourceSpec):
        return spec
    if isinstance(spec, dict):
        return _from_dict(spec)
    if isinstance(spec, Path):
        return SourceSpec(spec)
    if not isinstance(spec, str):
        raise OptionError(
            f"a source must be a path, a Hub id or a recipe entry, got {spec!r}",
            "write e.g. `- argilla/dpo-mix-7k:0.5` or `- {source: ./ours.jsonl, weight: 2000}`",
        )
    text = str(spec)
    if Path(text).exists() or ":" not in text:
        return SourceSpec(text)
    head, _, tail = text.rpartition(":")
    if not _NUMBER.match(tail.strip()):
        if Path(head).exists():  # an existing file with a weight that is not a number
            parse_weight(tail)  # raises with the weights' forms
        return SourceSpec(text)  # e.g. a Windows path or an id with a colon: not a weight
    return SourceSpec(head, parse_weight(tail))


def _from_dict(entry: dict) -> SourceSpec:
    unknown = set(entry) - {"source", "weight", "files", *SOURCE_KEYS}
    if "source" not in entry or unknown:
        raise OptionError(
            f"a recipe source needs `source` and may have weight, {', '.join(SOURCE_KEYS)}"
            + (f"; unknown keys: {', '.join(sorted(unknown))}" if unknown else ""),
            "write e.g. `- {source: argilla/dpo-mix-7k, weight: 0.5}` or `- argilla/dpo-mix-7k:0.5`",
        )

    weight = entry.get("weight")
    return SourceSpec(
        str(text(entry["source"], "source")),
        None if weight is None else parse_weight(weight),
        revision=text(entry.get("revision"), "revision"),
        config=text(entry.get("config"), "config"),
        data_dir=text(entry.get("data_dir"), "data_dir"),
        split=names(entry.get("split"), "split"),
        files=entry.get("files") if isinstance(entry.get("files"), dict) else None,
    )
