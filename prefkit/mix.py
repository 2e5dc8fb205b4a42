"""Weighted mixing of several sources: ``prefkit build a:0.5 b:2000 ./c.jsonl:2.0``.

A source spec is ``SOURCE[:WEIGHT]``. The weight applies to the rows of each of the source's splits that survive
validation and filters (and ``--dedup``), so it says what ends up in the output:

* a fraction ``0 < w <= 1`` written with a dot (``0.5``, ``1.0``): that share of the rows, sampled without
  replacement, in source order;
* a row count (an integer, ``2000``): that many rows; more than the source has means every row once plus draws
  with replacement for the rest (LLaMA-Factory's ``num_samples``);
* an upsampling factor ``w > 1`` written with a dot (``2.0``): every row once plus ``round((w - 1) * n)`` draws
  with replacement.

Sampling is seeded (``--seed``, 0 when not given), per source, so a mix is reproducible. Rows not drawn are dropped
with the reason ``not_sampled``; extra copies are counted in the manifest as ``added.upsampled``.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prefkit.errors import SelectionError

_NUMBER = re.compile(r"^(\d+(\.\d*)?|\.\d+)$")


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
    """One source of a build and its optional weight."""

    source: str | Path
    weight: Weight | None = None


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


def parse_source(spec: str | Path | SourceSpec) -> SourceSpec:
    """Split ``SOURCE:WEIGHT``; an existing local path is never split, and a weight must look like a number."""
    if isinstance(spec, SourceSpec):
        return spec
    if isinstance(spec, Path):
        return SourceSpec(spec)
    text = str(spec)
    if Path(text).exists() or ":" not in text:
        return SourceSpec(text)
    head, _, tail = text.rpartition(":")
    if not _NUMBER.match(tail.strip()):
        return SourceSpec(text)  # e.g. a Windows path or an id with a colon: not a weight
    return SourceSpec(head, parse_weight(tail))


def source_rng(seed: int | None, key: str) -> np.random.Generator:
    """A generator per source: the same seed and source give the same draws whatever else is in the mix."""
    return np.random.default_rng([0 if seed is None else seed, zlib.crc32(key.encode())])


def draw(n: int, weight: Weight | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(positions kept once, in order; positions drawn again as extra copies) among ``n`` rows."""
    every = np.arange(n)
    if weight is None or n == 0:
        return every, np.empty(0, dtype=np.int64)
    if weight.kind == "fraction":
        take = round(weight.value * n)
        return np.sort(rng.choice(n, size=take, replace=False)), np.empty(0, dtype=np.int64)
    target = int(weight.value) if weight.kind == "rows" else n + round((weight.value - 1) * n)
    if target <= n:
        return np.sort(rng.choice(n, size=target, replace=False)), np.empty(0, dtype=np.int64)
    return every, np.sort(rng.choice(n, size=target - n, replace=True))
