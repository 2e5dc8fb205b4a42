"""Benchmark decontamination: find training rows whose prompt contains an evaluation item.

The rule
--------
Texts are compared as normalised words (:func:`prefkit.select.words.normalise_words`: Unicode lower-case,
punctuation, symbols and whitespace dropped), so changes of case, punctuation and spacing do not hide an item,
and an item embedded in a longer prompt is found. Each eval item (and each turn of a multi-turn item, on its
own) is one of three kinds by its length in words, with ``n = 13`` and ``min_words = 8`` by default:

* **at least n words**: a training text is contaminated when it shares a run of ``n`` consecutive words with
  the item (n-gram overlap). Runs of *benchmark boilerplate* do not count: a word is boilerplate when an
  n-gram covering it occurs in more than ``boilerplate_items`` (10) distinct eval items (instruction
  templates such as IFEval's constraint sentences), and n-grams touching a boilerplate word are ignored;
* **min_words to n - 1 words**, and long items whose every n-gram touches boilerplate: the whole item must
  occur in the text as a contiguous run of words (found through its first ``min_words`` words, then
  checked on all of them);
* **1 to min_words - 1 words**: a turn of the text must be exactly the item (after normalisation). Containing
  a 5-word item would flag common phrasing ("tell me a joke about"), so short items only catch verbatim
  copies.

Where the numbers come from: the 13-word n-gram is GPT-3's (Brown et al. 2020, "Language Models are Few-Shot
Learners", section 4 and appendix C: training documents with a 13-gram collision with a benchmark were
filtered; text lower-cased, punctuation ignored), kept by the LM Evaluation Harness decontamination
(``ngram_n = 13``, "ignore case and punctuation, split on whitespace") and by NVIDIA NeMo Curator's
``TaskDecontamination`` (``max_ngram_size=13``). The short-item fallback follows NeMo Curator, after
Megatron-Turing NLG (Smith et al. 2022): items of 8 to 12 words are matched as a whole, items under 8 words
are skipped there (here they must match a turn exactly instead). The boilerplate cut-off adapts NeMo
Curator's ``max_matches=10`` (an n-gram found more than 10 times is too common to act on) to the eval side:
counted in the training set, it would let through a prompt set that repeats an eval question 20 times, which
is exactly what must be caught. Other rules were weighed: Llama 2 (Touvron et al. 2023, A.6) marks tokens in
shared 10+-token n-grams and a sample dirty above 80 % of its tokens; Llama 3 (Dubey et al. 2024, 5.1.4) uses
8-gram overlap with a per-benchmark threshold on the share of overlapping tokens; open-instruct's
decontamination scripts (Tülu 3, Lambert et al. 2024; 8-grams there) score an eval instance by the share of
its tokens covered by n-grams of the best-matching training document, with an optional threshold. Coverage
thresholds need per-pair overlap counts and a per-benchmark tuning; a single shared 13-gram is already a
strong signal for chat prompts, whose eval items are rarely shorter than 13 words. Not caught by any n-gram
rule: paraphrased or translated items (Yang et al. 2023, "Rethinking Benchmark and Contamination for
Language Models with Rephrased Samples", whose LLM Decontaminator uses embeddings plus an LLM judge; out of
scope here).

Implementation: word hashes are polars' ``Series.hash``; a run of words gets a position-independent
polynomial hash mod 2^64 (prefix sums with the inverse powers of an odd base, so a run of any length costs
O(1)), mixed with its length by splitmix64. The index holds sorted uint64 arrays of those keys with the
smallest eval item of each; a text is scanned twice (its n-grams, its ``min_words``-grams as anchors), windows
are tested for membership with polars' hash-based ``is_in`` and the few hits located with
``numpy.searchsorted``. A 64-bit collision (probability about 2^-64 per pair of runs) is the only way two
different runs can match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from prefkit.accounting import Reason, declare
from prefkit.errors import SelectionError
from prefkit.frame import REASON, ROW, STAGE, kept
from prefkit.select.words import map_batches, mix64, word_hashes

(CONTAMINATED,) = declare(
    Reason(
        "contaminated",
        "dropped",
        "the prompt (with --decontaminate-answers, an answer too) contains an item of an eval set "
        "(--decontaminate); detail: the eval set and item index",
    ),
)

DEFAULT_N = 13
DEFAULT_MIN_WORDS = 8
DEFAULT_BOILERPLATE_ITEMS = 10

_BASE = 0x9E3779B97F4A7C15  # odd, so it has an inverse mod 2^64
_BASE_INV = pow(_BASE, -1, 1 << 64)
_LENGTH_SALT = np.uint64(0xD6E8FEB86659FD93)
_NONE = np.iinfo(np.int64).max

#: an eval item or a training text: a string, or a list of strings (turns, each matched on its own)
Item = str | Sequence[str] | None


@dataclass(frozen=True)
class EvalIndex:
    """The hashed word runs of one or more eval sets (:func:`build_index`); arrays are numpy.

    * ``ngram_keys`` (uint64, sorted, unique) / ``ngram_items`` (int64): the n-grams of long items that touch
      no boilerplate, with the smallest global item holding each;
    * ``anchor_keys`` (uint64, sorted) / ``anchor_items`` / ``anchor_lengths`` (int64) / ``anchor_full``
      (uint64): items matched as a whole run, found by their first ``min_words`` words and checked by the
      key of all their words;
    * ``exact_keys`` / ``exact_items``: items shorter than ``min_words``, matched against whole turns.

    Global item ``g`` is item ``g - set_starts[s]`` of set ``set_names[s]``. About 16 bytes per key."""

    ngram_keys: np.ndarray
    ngram_items: np.ndarray
    anchor_keys: np.ndarray
    anchor_items: np.ndarray
    anchor_lengths: np.ndarray
    anchor_full: np.ndarray
    exact_keys: np.ndarray
    exact_items: np.ndarray
    set_names: tuple[str, ...]
    set_starts: np.ndarray
    n: int
    min_words: int
    seed: int

    @property
    def n_items(self) -> int:
        """Items over all sets."""
        return int(self.set_starts[-1])

    def locate(self, item: int) -> tuple[str, int]:
        """``(eval set name, item index within that set)`` of global item index ``item``."""
        s = int(np.searchsorted(self.set_starts, item, side="right")) - 1
        return self.set_names[s], int(item - self.set_starts[s])


class _Runs:
    """Position-independent hashes of word runs of any length within segments (one batch).

    ``S[i] = sum_{j<i} w_j * B^-j`` (mod 2^64); the run ``[p, p + L)`` hashes to
    ``(S[p+L] - S[p]) * B^(p+L-1) = sum_j w_j * B^(p+L-1-j)``, which depends on the words only."""

    def __init__(self, hashes: np.ndarray, offsets: np.ndarray) -> None:
        total = len(hashes)
        self.offsets = offsets
        self.counts = np.diff(offsets)
        self.pw = _powers(_BASE, total)
        self.prefix = np.zeros(total + 1, dtype=np.uint64)
        np.cumsum(hashes * _powers(_BASE_INV, total), out=self.prefix[1:])
        segment = np.repeat(np.arange(len(self.counts)), self.counts)
        self.segment = segment
        self.remaining = offsets[segment + 1] - np.arange(total)

    def key(self, start: np.ndarray, length: np.ndarray | int) -> np.ndarray:
        """Keys (uint64) of the runs of ``length`` words at word positions ``start`` (runs must fit)."""
        end = start + length
        h = (self.prefix[end] - self.prefix[start]) * self.pw[end - 1]
        return mix64(h ^ (np.asarray(length, dtype=np.uint64) * _LENGTH_SALT))

    def starts(self, length: int) -> np.ndarray:
        """Word positions (int64) where a run of ``length`` words fits inside its segment."""
        return np.flatnonzero(self.remaining >= length)

    def whole(self, segments: np.ndarray) -> np.ndarray:
        """Keys of whole segments (all their words as one run); segments must have at least one word."""
        return self.key(self.offsets[segments], self.counts[segments])


def _powers(base: int, count: int) -> np.ndarray:
    out = np.full(count, base, dtype=np.uint64)
    if count:
        out[0] = 1
        np.cumprod(out, out=out)
    return out


def item_texts(value: Any) -> list[str]:
    """The strings of one eval-set cell: a string, a list of strings (turns), or messages (dicts with a
    ``content``), nested lists flattened; None and empty strings give nothing."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, Mapping):
        return item_texts(value.get("content"))
    return [text for part in value for text in item_texts(part)]


def _segments(texts: Sequence[Item] | pl.Series) -> tuple[pl.Series, np.ndarray]:
    """Every string of ``texts`` (a turn list contributes each turn) and the text it came from (int64)."""
    if isinstance(texts, pl.Series) and texts.dtype == pl.List(pl.String):
        lists = texts.fill_null([]).list.drop_nulls()
    elif isinstance(texts, pl.Series):
        lists = texts.cast(pl.String).fill_null("").to_frame("t").select(pl.concat_list("t")).to_series()
    else:
        lists = pl.Series("t", [item_texts(t) for t in texts], dtype=pl.List(pl.String))
    owner = np.repeat(np.arange(len(lists)), lists.list.len().to_numpy())
    return lists.explode(empty_as_null=False, keep_nulls=False), owner


def _lookup(query: np.ndarray, keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``query`` whose key is in ``keys`` (sorted), and the value of each."""
    if len(keys) == 0 or len(query) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    member = pl.Series(query).is_in(pl.Series(keys).implode()).to_numpy()
    hit = np.flatnonzero(member)
    return hit, values[np.searchsorted(keys, query[hit])]


def _check(n: int, min_words: int, boilerplate_items: int, seed: int) -> None:
    if n < 1 or not 1 <= min_words <= n or boilerplate_items < 1 or seed < 0:
        raise SelectionError(
            "decontamination needs n >= 1, 1 <= min_words <= n, boilerplate_items >= 1 and seed >= 0 "
            f"(got n={n}, min_words={min_words}, boilerplate_items={boilerplate_items}, seed={seed})"
        )


def _min_item(keys: np.ndarray, items: np.ndarray) -> pl.DataFrame:
    """One row per key with its smallest item, sorted by key."""
    frame = pl.DataFrame({"key": keys, "item": items}, schema={"key": pl.UInt64, "item": pl.Int64})
    return frame.group_by("key").agg(pl.col("item").min()).sort("key")


def _clean_ngrams(
    runs: _Runs, owner: np.ndarray, n: int, boilerplate_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The n-grams of the items that touch no boilerplate word: ``(keys, items, starts)``.

    A word is boilerplate when an n-gram covering it occurs in more than ``boilerplate_items`` distinct
    items."""
    start = runs.starts(n)
    keys, items = runs.key(start, n), owner[runs.segment[start]]
    counts = (
        pl.DataFrame({"key": keys, "item": items}, schema={"key": pl.UInt64, "item": pl.Int64})
        .group_by("key")
        .agg(pl.col("item").n_unique().alias("items"))
        .filter(pl.col("items") > boilerplate_items)
    )
    common = pl.Series(keys).is_in(counts["key"].implode()).to_numpy()
    if not common.any():
        return keys, items, start
    total = len(runs.remaining)
    edges = np.zeros(total + 1, dtype=np.int64)
    np.add.at(edges, start[common], 1)
    np.add.at(edges, start[common] + n, -1)
    covered = np.concatenate([[0], np.cumsum(np.cumsum(edges)[:total] > 0)])
    clean = covered[start + n] == covered[start]
    return keys[clean], items[clean], start[clean]


def build_index(
    evalsets: Sequence[Item] | Mapping[str, Sequence[Item]],
    *,
    n: int = DEFAULT_N,
    min_words: int = DEFAULT_MIN_WORDS,
    boilerplate_items: int = DEFAULT_BOILERPLATE_ITEMS,
    seed: int = 0,
) -> EvalIndex:
    """Index eval items for :func:`find_contamination`.

    ``evalsets``: the items of one set (a sequence; its set name is ``"eval"``) or ``{name: items}`` (sets
    looked up in this order). An item is a string or a list of strings (turns, each matched on its own; see
    :func:`item_texts` for loading). ``n``: words per n-gram for long items; ``min_words``: items shorter are
    matched only as a whole turn; ``boilerplate_items``: n-grams of more distinct items are boilerplate;
    ``seed``: seeds the word hashes (a text must be scanned with the same seed, which the index carries).
    Rule and sources: module docstring. Raises SelectionError for out-of-range parameters."""
    _check(n, min_words, boilerplate_items, seed)
    sets = dict(evalsets) if isinstance(evalsets, Mapping) else {"eval": evalsets}
    set_starts = np.zeros(len(sets) + 1, dtype=np.int64)
    np.cumsum([len(items) for items in sets.values()], out=set_starts[1:])
    segments, owner = _segments([item for items in sets.values() for item in items])
    runs = _Runs(*word_hashes(segments, seed=seed))
    keys, items, starts = _clean_ngrams(runs, owner, n, boilerplate_items)
    ngrams = _min_item(keys, items)
    has_ngram = np.zeros(len(runs.counts), dtype=bool)
    has_ngram[runs.segment[starts]] = True
    whole = np.flatnonzero((runs.counts >= min_words) & ~has_ngram)
    anchors = (
        pl.DataFrame(
            {
                "full": runs.whole(whole),
                "item": owner[whole],
                "length": runs.counts[whole],
                "anchor": runs.key(runs.offsets[whole], min_words),
            }
        )
        .group_by("full")
        .agg(pl.col("item").min(), pl.col("length").first(), pl.col("anchor").first())
        .sort("anchor")
    )
    short = np.flatnonzero((runs.counts >= 1) & (runs.counts < min_words))
    exact = _min_item(runs.whole(short), owner[short])
    return EvalIndex(
        ngram_keys=ngrams["key"].to_numpy(),
        ngram_items=ngrams["item"].to_numpy(),
        anchor_keys=anchors["anchor"].to_numpy().astype(np.uint64),
        anchor_items=anchors["item"].to_numpy().astype(np.int64),
        anchor_lengths=anchors["length"].to_numpy().astype(np.int64),
        anchor_full=anchors["full"].to_numpy().astype(np.uint64),
        exact_keys=exact["key"].to_numpy(),
        exact_items=exact["item"].to_numpy(),
        set_names=tuple(sets),
        set_starts=set_starts,
        n=n,
        min_words=min_words,
        seed=seed,
    )


def _anchored(runs: _Runs, index: EvalIndex) -> tuple[np.ndarray, np.ndarray]:
    """Whole-run matches: ``(word positions, items)`` where a text holds all the words of an anchored item."""
    start = runs.starts(index.min_words)
    keys = runs.key(start, index.min_words)
    member = pl.Series(keys).is_in(pl.Series(index.anchor_keys).implode()).to_numpy()
    hit = np.flatnonzero(member)
    lo = np.searchsorted(index.anchor_keys, keys[hit], side="left")
    hi = np.searchsorted(index.anchor_keys, keys[hit], side="right")
    per_hit = hi - lo
    which = np.repeat(np.arange(len(hit)), per_hit)
    anchor = lo[which] + (np.arange(len(which)) - np.repeat(np.cumsum(per_hit) - per_hit, per_hit))
    position, length = start[hit][which], index.anchor_lengths[anchor]
    fits = runs.remaining[position] >= length
    position, anchor, length = position[fits], anchor[fits], length[fits]
    same = runs.key(position, length) == index.anchor_full[anchor]
    return position[same], index.anchor_items[anchor[same]]


def _scan(segments: pl.Series, index: EvalIndex) -> np.ndarray:
    """Per segment, the smallest global item it matches (``_NONE`` when clean)."""
    runs = _Runs(*word_hashes(segments, seed=index.seed))
    best = np.full(len(segments), _NONE, dtype=np.int64)
    start = runs.starts(index.n)
    hit, items = _lookup(runs.key(start, index.n), index.ngram_keys, index.ngram_items)
    np.minimum.at(best, runs.segment[start[hit]], items)
    if len(index.anchor_keys):
        position, items = _anchored(runs, index)
        np.minimum.at(best, runs.segment[position], items)
    short = np.flatnonzero((runs.counts >= 1) & (runs.counts < index.min_words))
    hit, items = _lookup(runs.whole(short), index.exact_keys, index.exact_items)
    np.minimum.at(best, short[hit], items)
    return best


def contamination_items(texts: Sequence[Item] | pl.Series, index: EvalIndex) -> np.ndarray:
    """:func:`find_contamination` as an int64 array (len(texts),) of global item indices, -1 for clean texts.

    ``texts`` may be a String or List(String) polars Series (a list holds the turns of one text)."""
    segments, owner = _segments(texts)
    n_texts = len(texts)
    if len(segments) == 0:
        return np.full(n_texts, -1, dtype=np.int64)
    per_segment = np.concatenate(map_batches(lambda part: _scan(part, index), segments))
    best = np.full(n_texts, _NONE, dtype=np.int64)
    np.minimum.at(best, owner, per_segment)
    return np.where(best == _NONE, -1, best)


def find_contamination(texts: Sequence[Item] | pl.Series, index: EvalIndex) -> list[tuple[str, int] | None]:
    """For each text, ``(eval set name, item index in that set)`` of the first eval item it contains (first
    set in index order, then smallest item index), or None when it is clean.

    A text is a string or a list of strings (turns: each is matched on its own, so an item never straddles two
    turns and the exact-match rule for short items applies per turn). Rule: module docstring."""
    return [None if g < 0 else index.locate(int(g)) for g in contamination_items(texts, index)]


def _contents(column: str, drop_system: bool) -> pl.Expr:
    el = pl.element().struct
    content = el.field("content")
    if drop_system:
        content = content.filter(el.field("role") != "system")
    return pl.col(column).list.eval(content).fill_null([])


def decontaminate_reasons(
    df: pl.DataFrame, index: EvalIndex, *, answers: bool = False, reason: str = CONTAMINATED.name
) -> pl.DataFrame:
    """The kept rows of ``df`` that contain an eval item: ``_row`` (Int64, position in ``df``), ``reason``
    (String), ``eval_set`` (String, set name), ``eval_index`` (Int64, item index within the set), by ``_row``.

    Only rows with ``stage == "kept"`` are checked (all rows when ``df`` has no ``stage``); nothing is deleted
    here. The text of a row is the turns of its prompt except system turns, each on its own, and with
    ``answers`` the chosen and rejected messages too (a model trained on an eval answer is contaminated as
    well). Rule and sources: module docstring."""
    rows = kept() if STAGE in df.columns else pl.lit(True)
    turns = [_contents("prompt", drop_system=True)]
    if answers:
        turns += [_contents("chosen", drop_system=False), _contents("rejected", drop_system=False)]
    frame = df.select(
        pl.int_range(pl.len(), dtype=pl.Int64).filter(rows).alias(ROW),
        pl.concat_list(turns).filter(rows).alias("_turns"),
    )
    found = contamination_items(frame["_turns"], index)
    hit = np.flatnonzero(found >= 0)
    located = [index.locate(int(g)) for g in found[hit]]
    return pl.DataFrame(
        {
            ROW: frame[ROW].to_numpy()[hit],
            REASON: [reason] * len(hit),
            "eval_set": [name for name, _ in located],
            "eval_index": [i for _, i in located],
        },
        schema={ROW: pl.Int64, REASON: pl.String, "eval_set": pl.String, "eval_index": pl.Int64},
    )
