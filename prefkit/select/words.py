"""Words of a text, the one rule near-dedup (:mod:`.near_dedup`) and decontamination (:mod:`.decontaminate`)
share: Unicode lower-casing, then the maximal runs of Unicode word characters (regex ``\\w``: letters, combining
marks, decimal digits, connector punctuation, as UTS #18 Annex C defines them); everything else separates
words. Words are hashed with polars' ``Series.hash`` and handled as flat uint64 arrays with offsets; texts are
processed batch by batch (:func:`map_batches`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import polars as pl

#: a regex of the Rust ``regex`` crate (what polars runs): a maximal run of Unicode word characters
WORD_PATTERN = r"\w+"
#: texts per batch: normalising and hashing run batch by batch, which bounds memory to a batch of word hashes
#: (1024 pairs of ~650 words: ~100 MiB); bigger batches measured no faster
BATCH_TEXTS = 1024
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)

T = TypeVar("T")
Frame = TypeVar("Frame", pl.Series, pl.DataFrame)
Texts = Sequence[str | None] | pl.Series


def normalise_words(text: str) -> list[str]:
    """The normalised words of ``text``: Unicode lower-case, then the maximal runs of Unicode word characters.

    Punctuation, symbols, whitespace and control characters separate words and are dropped (rule and examples
    in the module docstring). ``normalise_words("Hello,  WORLD!")`` is ``["hello", "world"]``. The same rule
    (the same code) makes the words of near-dedup and of decontamination."""
    return word_lists([text]).item().to_list()


def word_lists(texts: Texts) -> pl.Series:
    """``list[str]`` Series: the normalised words of each text (:func:`normalise_words`); null texts have
    none."""
    series = _as_series(texts)
    return series.fill_null("").str.to_lowercase().str.extract_all(WORD_PATTERN).fill_null([])


def word_hashes(texts: Texts, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the normalised words of ``texts``, flat: ``(hashes, offsets)``.

    ``hashes`` is uint64 of shape (total words,); ``offsets`` is int64 of shape (len(texts) + 1,), the words
    of text ``i`` being ``hashes[offsets[i]:offsets[i + 1]]``. The hash is polars' ``Series.hash(seed)``:
    stable for a given polars version and seed."""
    words = word_lists(texts)
    counts = words.list.len().to_numpy().astype(np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = words.explode(empty_as_null=False, keep_nulls=False)
    return flat.hash(seed=seed).to_numpy().astype(np.uint64, copy=False), offsets


def mix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele, Lea & Flood 2014) on a uint64 array: a bijective bit mixer.

    Returns a new array; ``x`` is not modified."""
    x = x ^ (x >> np.uint64(30))
    x *= _MIX1
    x ^= x >> np.uint64(27)
    x *= _MIX2
    x ^= x >> np.uint64(31)
    return x


def default_workers() -> int:
    """Python threads for :func:`map_batches`: one per 4 cores, at most 4. polars and rensa already run their
    heavy kernels on their own thread pools; on a 2-core machine a second Python thread brought nothing
    (near-dedup of 20k pairs: median 2.37 s with two, 2.31 s with one, 8 interleaved runs each) and ~100 MiB
    more peak memory, so small machines get one."""
    return max(1, min(4, (os.cpu_count() or 1) // 4))


def map_batches(
    fn: Callable[[Frame], T], texts: Frame, batch: int | None = None, workers: int | None = None
) -> list[T]:
    """``fn`` on consecutive slices of ``batch`` rows of a Series or DataFrame (default :data:`BATCH_TEXTS`),
    on ``workers`` threads (default :func:`default_workers`); results in order."""
    size = batch or BATCH_TEXTS
    parts = [texts.slice(start, size) for start in range(0, len(texts), size)]
    workers = max(1, min(workers or default_workers(), len(parts)))
    if workers == 1:
        return [fn(part) for part in parts]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, parts))


def _as_series(texts: Texts) -> pl.Series:
    if isinstance(texts, pl.Series):
        return texts.cast(pl.String)
    return pl.Series("text", list(texts), dtype=pl.String)
