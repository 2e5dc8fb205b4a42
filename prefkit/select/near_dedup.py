"""Near-duplicate detection for preference pairs: MinHash signatures, LSH banding, verified union-find.

What "near-duplicate" means here
--------------------------------
Two texts are near-duplicates when the MinHash estimate of the Jaccard similarity of their sets of word
shingles is at least ``threshold``. Clusters are the connected components of that relation (single linkage:
a ~ b and b ~ c put a, b and c in one cluster even when a and c are further apart). Each cluster is
represented by its first text in input order.

The steps, and where each rule comes from:

1. **Words** (:func:`prefkit.select.words.normalise_words`): Unicode lower-casing, then the maximal runs of Unicode word characters
   (regex ``\\w``: letters, combining marks, decimal digits and connector punctuation such as ``_``, as
   defined by UTS #18 Annex C). Everything else (punctuation, symbols, whitespace, control characters)
   separates words and is dropped, so changes of case, punctuation and whitespace do not change the words.
   ``"don't"`` gives ``["don", "t"]``; ``"x=3"`` and ``"x = 3"`` both give ``["x", "3"]``. Scripts written
   without spaces (Chinese, Japanese, Thai) give one "word" per run of characters: near-dedup of such text is
   coarse.
2. **Shingles** (w-shingling, Broder 1997, "On the resemblance and containment of documents"): every run of
   ``shingle`` consecutive words. A text with fewer words than ``shingle`` gives one shingle of all its
   words; a text with no word gives none and is never a near-duplicate of anything (exact dedup handles it).
   A text may also be a list of *sections* (pair mode: prompt, chosen, rejected): each section is shingled on
   its own and its shingle hashes are salted with the section's position, so the similarity is that of the
   three parts together and a pair with chosen and rejected swapped is not a near-duplicate.
3. **Signatures**: R-MinHash from `rensa <https://github.com/beowolx/rensa>`_ (Rust, MIT), ``num_perm`` 32-bit
   slots per text over 64-bit shingle hashes; the estimate of the Jaccard similarity of two texts is the
   fraction of equal slots (Broder 1997), standard error ``sqrt(J (1 - J) / num_perm)`` (0.035 at J = 0.8
   with 128 slots).
4. **Candidates**: LSH banding (Indyk & Motwani 1998; Leskovec, Rajaraman & Ullman, *Mining of Massive
   Datasets*, section 3.4): the slots are cut into ``b`` bands of ``r`` rows and texts equal on a whole band
   are candidates. ``r`` is the largest value whose probability of making a pair of similarity exactly
   ``threshold`` a candidate, ``1 - (1 - t^r)^b``, is at least 0.99 (:func:`lsh_params`): 21 bands of 6 rows
   for 0.8 and 128 slots.
5. **Verification**: a candidate pair is an edge only when its estimated Jaccard similarity is at least
   ``threshold``, so band collisions of dissimilar texts never merge clusters (precision stays high).
6. **Clusters**: union-find over the edges; the representative is the smallest input index.

Defaults: ``threshold`` 0.8 is the MinHash Jaccard threshold of Lee et al. 2022 ("Deduplicating Training Data
Makes Language Models Better") and of RefinedWeb (Penedo et al. 2023); ``shingle`` 3 words rather than their 5
because preference prompts are short: one changed word removes up to ``shingle`` shingles, so a single-word
edit keeps J >= 0.8 from about 29 words with 3-word shingles but only from about 49 words with 5-word ones;
``num_perm`` 128 is datasketch's default (and what rensa's examples use).

Determinism: for given texts, parameters and seed the result is the same on every run and machine, for the
same versions of polars (word hashes: ``Series.hash(seed)``) and rensa (permutations drawn from ``seed``).

rensa (a prefkit dependency) is imported lazily, so ``import prefkit`` stays light; a broken install makes
:func:`near_duplicate_clusters` raise :class:`~prefkit.errors.DependencyError` with the install command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

from prefkit.accounting import Reason, declare
from prefkit.errors import SelectionError, require
from prefkit.frame import MARGIN, REASON, ROW, STAGE, kept
from prefkit.select.words import _MIX1, Frame, map_batches, mix64, word_hashes

(NEAR_DUPLICATE,) = declare(
    Reason(
        "near_duplicate",
        "dropped",
        "near-duplicate of a kept pair or prompt (--near-dedup): MinHash Jaccard >= --near-dedup-threshold to it, "
        "or to a row joined to it through a chain of such near-duplicates; detail: the kept row's id, source and "
        "index",
    ),
)

DEFAULT_THRESHOLD = 0.8
DEFAULT_NUM_PERM = 128
DEFAULT_SHINGLE = 3
#: the probability that a pair of similarity exactly ``threshold`` becomes an LSH candidate
LSH_RECALL_AT_THRESHOLD = 0.99
#: LSH buckets up to this size are checked pair by pair; larger ones (many near-identical texts) are peeled
_ALL_PAIRS_UP_TO = 64
_VERIFY_CHUNK = 1 << 16

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
#: a text, or a list of sections whose shingles never match across sections (prompt / chosen / rejected)
Sectioned = Sequence[str | Sequence[str] | None] | pl.Series

#: What near-dedup compares: whole pairs, or prompts only (one pair per fuzzy prompt).
NearDedupMode = Literal["pair", "prompt"]


def shingle_hashes(
    hashes: np.ndarray, offsets: np.ndarray, shingle: int, salt: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the word shingles of each text: ``(shingle_hashes, shingle_offsets)``, same layout as
    :func:`word_hashes`.

    A text of ``n >= shingle`` words has ``n - shingle + 1`` shingles (one per start word); a text of
    ``1 <= n < shingle`` words has one shingle of all its words; a text of no word has none. A shingle's hash
    is an order-sensitive fold of its word hashes (multiply by an odd constant, add), xor-ed with the text's
    ``salt`` (uint64 per text, optional), finished with the splitmix64 mixer: equal word runs with equal salts
    give equal hashes."""
    if shingle < 1:
        raise SelectionError(f"shingle must be at least 1 word, got {shingle}")
    counts = np.diff(offsets)
    total = len(hashes)
    new_counts = np.where(counts >= shingle, counts - shingle + 1, np.minimum(counts, 1))
    new_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(new_counts, out=new_offsets[1:])
    if total == 0:
        return np.empty(0, dtype=np.uint64), new_offsets
    folded = np.zeros(total, dtype=np.uint64)  # folded[p]: the window of words p .. p + shingle - 1
    full = max(total - shingle + 1, 0)
    window = folded[:full]
    window[:] = hashes[:full]
    for j in range(1, shingle):
        window *= _GOLDEN
        window += hashes[j : full + j]
    keep = np.zeros(total, dtype=bool)
    keep[:full] = True
    # a window starting in the last shingle - 1 words of a text crosses into the next text: not a shingle
    crossing = (offsets[1:, None] - np.arange(1, shingle)[None, :]).ravel()
    keep[crossing[(crossing >= 0) & (crossing < total)]] = False
    short = np.flatnonzero((counts >= 1) & (counts < shingle))
    if len(short):  # one shingle of all the words of each short text, at its first word
        starts = offsets[short]
        short_fold = hashes[starts].copy()
        for j in range(1, shingle - 1):
            more = counts[short] > j
            short_fold[more] = short_fold[more] * _GOLDEN + hashes[starts[more] + j]
        folded[starts] = short_fold
        keep[starts] = True
    kept = folded[keep]
    if salt is not None:
        kept ^= np.repeat(salt.astype(np.uint64, copy=False), new_counts)
    return mix64(kept), new_offsets


def as_sections(texts: Sectioned) -> pl.Series:
    """``List(String)`` Series: one list of sections per text (a string is one section; None and null
    sections are dropped, so a None text has no section)."""
    if isinstance(texts, pl.Series) and isinstance(texts.dtype, pl.List):
        return texts.cast(pl.List(pl.String)).fill_null([]).list.drop_nulls()
    if isinstance(texts, pl.Series):
        return texts.cast(pl.String).to_frame("t").select(pl.concat_list("t").list.drop_nulls()).to_series()
    rows = [
        [] if t is None else [t] if isinstance(t, str) else [x for x in t if x is not None] for t in texts
    ]
    return pl.Series("sections", rows, dtype=pl.List(pl.String))


def sectioned_shingles(part: pl.Series, shingle: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of ``List(String)`` rows, flat with row offsets (layout of :func:`word_hashes`).

    Each section is shingled on its own (no shingle spans two sections) and its hashes are salted with the
    section's position in the row, so text in section 1 of one row never matches section 2 of another."""
    counts = part.list.len().to_numpy().astype(np.int64)
    sections = part.explode(empty_as_null=False, keep_nulls=False)
    words, offsets = word_hashes(sections, seed=seed)
    first = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=first[1:])
    position = (np.arange(len(sections)) - np.repeat(first[:-1], counts)).astype(np.uint64)
    hashes, section_offsets = shingle_hashes(words, offsets, shingle, salt=position * _MIX1)
    return hashes, section_offsets[first]


def _rensa() -> Any:
    return require("rensa", "near-duplicate detection (MinHash)")


def _signatures(
    source: Frame, sections_of: Callable[[Frame], pl.Series], num_perm: int, shingle: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`minhash_signatures` of ``sections_of(slice)`` for consecutive slices of ``source``: the texts
    of a batch only exist while it is hashed (a frame's texts are never all materialised at once)."""
    rensa = _rensa()

    def one(part: Frame) -> tuple[np.ndarray, np.ndarray]:
        sections = sections_of(part)
        shingles, offsets = sectioned_shingles(sections, shingle, seed)
        matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(shingles, offsets, num_perm, seed)
        sig = np.asarray(matrix.to_rows(), dtype=np.uint32).reshape(len(sections), num_perm)
        return sig, np.diff(offsets) > 0

    parts = map_batches(one, source)
    if not parts:
        return np.empty((0, num_perm), dtype=np.uint32), np.empty(0, dtype=bool)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def minhash_signatures(
    texts: Sectioned, *, num_perm: int = DEFAULT_NUM_PERM, shingle: int = DEFAULT_SHINGLE, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """R-MinHash signatures of the shingle sets of ``texts`` (rensa): ``(signatures, has_words)``.

    ``texts``: strings, or lists of sections (:func:`sectioned_shingles`). ``signatures`` is uint32 of shape
    (len(texts), num_perm); ``has_words`` is bool of shape (len(texts),), False for texts without any word
    (their signature is meaningless). Raises DependencyError without rensa, SelectionError for bad parameters."""
    _check(DEFAULT_THRESHOLD, num_perm, shingle, seed)
    return _signatures(as_sections(texts), lambda part: part, num_perm, shingle, seed)


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """``(bands, rows)`` for LSH banding: the largest ``rows`` such that a pair of similarity ``threshold``
    is a candidate with probability ``1 - (1 - threshold**rows)**bands >= 0.99``, where
    ``bands = num_perm // rows``.

    Favouring recall is cheap because candidates are verified; the price is more candidate pairs at low
    thresholds (below about 0.5 the candidate count grows quickly). 0.8 and 128 give (21, 6)."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= LSH_RECALL_AT_THRESHOLD:
            return bands, rows
    return num_perm, 1


def _collapse_identical(sig: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows with an identical signature (estimated Jaccard 1): ``(edges (k, 2), first rows)``: each later
    row is joined to the first row with its signature, and only the first rows go on to banding."""
    if len(rows) == 0:
        return np.empty((0, 2), dtype=np.int64), rows
    block = np.ascontiguousarray(sig[rows]).view(np.dtype((np.void, sig.shape[1] * sig.itemsize)))[:, 0]
    _, first, inverse = np.unique(block, return_index=True, return_inverse=True)
    leader = rows[first[inverse.reshape(-1)]]
    later = leader != rows
    edges = np.stack([leader[later], rows[later]], axis=1)
    return edges, rows[~later]


def _band_keys(sig: np.ndarray, rows: np.ndarray, band: int, width: int) -> np.ndarray:
    key = np.zeros(len(rows), dtype=np.uint64)
    for col in range(band * width, (band + 1) * width):
        key = (key ^ sig[rows, col].astype(np.uint64)) * _GOLDEN
    return mix64(key)


def _bucket_pairs(key: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Candidate pairs ``(k, 2)`` (smaller row first) from the buckets of one band with 2 to 64 members,
    and the member lists of larger buckets (left to :func:`_peel`)."""
    order = np.argsort(key, kind="stable")
    sorted_key, sorted_rows = key[order], rows[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    sizes = np.diff(np.r_[starts, len(sorted_key)])
    large = sizes > _ALL_PAIRS_UP_TO
    big = [sorted_rows[s : s + z] for s, z in zip(starts[large], sizes[large], strict=True)]
    run = np.repeat(np.arange(len(starts)), sizes)
    position = np.flatnonzero((sizes[run] >= 2) & (sizes[run] <= _ALL_PAIRS_UP_TO))
    end = (starts + sizes)[run[position]]
    pairs = []
    step = 1
    while len(position):
        ok = position + step < end
        position, end = position[ok], end[ok]
        pairs.append(np.stack([sorted_rows[position], sorted_rows[position + step]], axis=1))
        step += 1
    return (np.concatenate(pairs) if pairs else np.empty((0, 2), dtype=np.int64)), big


def _peel(members: np.ndarray, sig: np.ndarray, min_equal: float) -> np.ndarray:
    """Verified edges of a large bucket: the first member is checked against all others, those similar to it
    are joined to it, the rest form the next round. Rounds = number of groups, each vectorised."""
    edges = []
    rest = members
    while len(rest) > 1:
        lead, others = rest[0], rest[1:]
        similar = (sig[others] == sig[lead]).sum(axis=1) >= min_equal
        edges.append(np.stack([np.full(similar.sum(), lead), others[similar]], axis=1))
        rest = others[~similar]
    return np.concatenate(edges) if edges else np.empty((0, 2), dtype=np.int64)


def _verify(pairs: np.ndarray, sig: np.ndarray, min_equal: float) -> np.ndarray:
    """The pairs whose signatures agree on at least ``min_equal`` slots (estimated Jaccard >= threshold)."""
    kept = []
    for start in range(0, len(pairs), _VERIFY_CHUNK):
        chunk = pairs[start : start + _VERIFY_CHUNK]
        equal = (sig[chunk[:, 0]] == sig[chunk[:, 1]]).sum(axis=1)
        kept.append(chunk[equal >= min_equal])
    return np.concatenate(kept) if kept else np.empty((0, 2), dtype=np.int64)


def similar_pairs(sig: np.ndarray, has_words: np.ndarray, threshold: float) -> np.ndarray:
    """Verified near-duplicate edges ``(k, 2)`` int64 between rows of ``sig`` (uint32, (n, num_perm)):
    identical signatures, then LSH candidates (:func:`lsh_params`) whose estimated Jaccard is at least
    ``threshold``."""
    n, num_perm = sig.shape
    min_equal = threshold * num_perm - 1e-9
    rows = np.flatnonzero(has_words)
    edges, rows = _collapse_identical(sig, rows)
    found = [edges]
    bands, width = lsh_params(threshold, num_perm)
    candidates = []
    for band in range(bands):
        pairs, big = _bucket_pairs(_band_keys(sig, rows, band, width), rows)
        candidates.append(pairs)
        found.extend(_peel(members, sig, min_equal) for members in big)
    if candidates:
        pairs = np.concatenate(candidates)
        codes = np.unique(pairs[:, 0].astype(np.int64) * n + pairs[:, 1])
        found.append(_verify(np.stack([codes // n, codes % n], axis=1), sig, min_equal))
    return np.concatenate(found).astype(np.int64, copy=False)


def components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` nodes and ``edges`` (k, 2): int64 (n,), each node's smallest member.

    Vectorised union-find (hooking the larger of two roots under the smaller, then full path compression,
    until every edge has one root). Every round merges at least two roots, so it ends; labels never increase,
    so a component's root is its smallest node."""
    parent = np.arange(n, dtype=np.int64)
    if len(edges) == 0:
        return parent
    left, right = edges[:, 0], edges[:, 1]
    while True:
        root_l, root_r = parent[left], parent[right]
        differ = root_l != root_r
        if not differ.any():
            return parent
        low = np.minimum(root_l[differ], root_r[differ])
        high = np.maximum(root_l[differ], root_r[differ])
        np.minimum.at(parent, high, low)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def _check(threshold: float, num_perm: int, shingle: int, seed: int) -> None:
    if not 0.0 < threshold <= 1.0:
        raise SelectionError(f"the near-duplicate threshold must be in (0, 1], got {threshold}")
    if num_perm < 1 or shingle < 1 or seed < 0:
        raise SelectionError(
            f"num_perm and shingle must be >= 1 and seed >= 0 (got {num_perm}, {shingle}, {seed})"
        )


def cluster_labels(
    texts: Sectioned,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    num_perm: int = DEFAULT_NUM_PERM,
    shingle: int = DEFAULT_SHINGLE,
    seed: int = 0,
) -> np.ndarray:
    """:func:`near_duplicate_clusters` as an int64 numpy array (no Python list of ``len(texts)`` ints)."""
    _check(threshold, num_perm, shingle, seed)
    sig, has_words = minhash_signatures(texts, num_perm=num_perm, shingle=shingle, seed=seed)
    return components(len(sig), similar_pairs(sig, has_words, threshold))


def near_duplicate_clusters(
    texts: Sectioned,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    num_perm: int = DEFAULT_NUM_PERM,
    shingle: int = DEFAULT_SHINGLE,
    seed: int = 0,
) -> list[int]:
    """For each text, the index of its cluster's representative (its first text in input order).

    ``texts``: strings (or a polars String Series), None counting as empty; or lists of sections (a polars
    List(String) Series), whose shingles only match the same section of another text. ``threshold``: minimum
    estimated Jaccard similarity of word-shingle sets, in (0, 1]; ``num_perm``: MinHash slots; ``shingle``:
    words per shingle; ``seed``: seeds the word hashes and the MinHash permutations (the result is
    deterministic for a given seed). A text that is nobody's near-duplicate is its own representative:
    ``result[i] == i``. Rule, defaults and sources: module docstring. Raises SelectionError for out-of-range
    parameters and DependencyError when rensa is not installed."""
    return cluster_labels(texts, threshold=threshold, num_perm=num_perm, shingle=shingle, seed=seed).tolist()


def _contents(column: str, drop_system: bool) -> pl.Expr:
    el = pl.element().struct
    content = el.field("content")
    if drop_system:
        content = content.filter(el.field("role") != "system")
    return pl.col(column).list.eval(content).list.join("\n").fill_null("")


def dedup_texts(df: pl.DataFrame, mode: NearDedupMode) -> pl.Series:
    """The sections near-dedup compares, per row of ``df`` (List(String) Series, len(df)): the contents of the
    prompt's non-system turns joined by newlines, then (``mode="pair"``) the chosen and the rejected message.
    Sections are shingled separately, so two pairs with chosen and rejected swapped are not
    near-duplicates."""
    parts = [_contents("prompt", drop_system=True)]
    if mode == "pair":
        parts += [_contents("chosen", drop_system=False), _contents("rejected", drop_system=False)]
    return df.select(pl.concat_list(parts).alias("sections")).to_series()


def _winners(labels: np.ndarray, margin: pl.Series | None) -> np.ndarray:
    """Per position, the position kept for its cluster: the highest margin (NaN/null last), then order."""
    if margin is None:
        return labels
    frame = pl.DataFrame({"_i": np.arange(len(labels)), "_c": labels, "_m": margin.cast(pl.Float64)})
    frame = frame.with_columns(pl.col("_m").fill_nan(None))
    best = (
        frame.sort(["_m", "_i"], descending=[True, False], nulls_last=True)
        .group_by("_c", maintain_order=True)
        .agg(pl.col("_i").first().alias("_w"))
    )
    return frame.join(best, on="_c", how="left", maintain_order="left")["_w"].to_numpy()


def near_dedup_reasons(
    df: pl.DataFrame,
    *,
    mode: NearDedupMode = "pair",
    threshold: float = DEFAULT_THRESHOLD,
    num_perm: int = DEFAULT_NUM_PERM,
    shingle: int = DEFAULT_SHINGLE,
    seed: int = 0,
    reason: str = NEAR_DUPLICATE.name,
) -> pl.DataFrame:
    """The kept rows of ``df`` that near-dedup removes: ``_row`` (Int64, position in ``df``), ``reason``
    (String, ``reason``), ``kept_row`` (Int64, the row kept for its cluster), sorted by ``_row``.

    Only rows with ``stage == "kept"`` take part (all rows when ``df`` has no ``stage``); rows are never
    deleted here, the caller marks these dropped. ``mode="pair"``: the sections are the prompt's non-system
    turns, the chosen and the rejected answer (:func:`dedup_texts`; the similarity is over the three together,
    each matched only against the same section) and the first row of each cluster in ``df`` order is kept.
    ``mode="prompt"``: the text is the prompt only and the pair with the highest ``margin`` is kept (ties:
    first in order; null or NaN margins rank last), like exact dedup's one-pair-per-prompt. The texts are
    built batch by batch (:data:`prefkit.select.words.BATCH_TEXTS` rows), never all at once. Parameters and rule:
    :func:`near_duplicate_clusters`. Raises SelectionError for a bad ``mode`` or out-of-range parameters,
    DependencyError without rensa."""
    _check_mode(mode)
    _check(threshold, num_perm, shingle, seed)
    taking = kept() if STAGE in df.columns else pl.lit(True)
    rows = df.select(pl.int_range(pl.len(), dtype=pl.Int64).filter(taking)).to_series().to_numpy()
    sig, has_words = dedup_signatures(df, mode=mode, num_perm=num_perm, shingle=shingle, seed=seed)
    margin = None
    if mode == "prompt" and MARGIN in df.columns:
        margin = df.select(pl.col(MARGIN).filter(taking)).to_series()
    drop, winner = near_duplicates(
        sig, has_words, margin, threshold=threshold, num_perm=num_perm, shingle=shingle, seed=seed
    )
    return pl.DataFrame(
        {ROW: rows[drop], REASON: [reason] * len(drop), "kept_row": rows[winner]},
        schema={ROW: pl.Int64, REASON: pl.String, "kept_row": pl.Int64},
    )


def _check_mode(mode: str) -> None:
    if mode not in ("pair", "prompt"):
        raise SelectionError(f"near-dedup mode must be 'pair' or 'prompt', got {mode!r}")


def dedup_signatures(
    df: pl.DataFrame,
    *,
    mode: NearDedupMode = "pair",
    num_perm: int = DEFAULT_NUM_PERM,
    shingle: int = DEFAULT_SHINGLE,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`minhash_signatures` of the texts near-dedup compares (:func:`dedup_texts`) for the kept rows of
    ``df`` (all rows when it has no ``stage``), in order; row-local, so a set can be hashed batch by batch."""
    _check_mode(mode)
    _check(DEFAULT_THRESHOLD, num_perm, shingle, seed)
    taking = kept() if STAGE in df.columns else pl.lit(True)
    columns = ["prompt", "chosen", "rejected"] if mode == "pair" else ["prompt"]
    source = df.select(*columns, taking.alias("_kept"))
    return _signatures(source, lambda part: dedup_texts(part.filter("_kept"), mode), num_perm, shingle, seed)


def near_duplicates(
    sig: np.ndarray,
    has_words: np.ndarray,
    margin: pl.Series | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    num_perm: int = DEFAULT_NUM_PERM,
    shingle: int = DEFAULT_SHINGLE,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """From the signatures of :func:`dedup_signatures`: the positions dropped (int64, ascending) and, for each,
    the position kept for its cluster (the first, or with ``margin`` the highest margin: prompt mode)."""
    _check(threshold, num_perm, shingle, seed)
    labels = components(len(sig), similar_pairs(sig, has_words, threshold))
    winner = _winners(labels, margin)
    drop = np.flatnonzero(winner != np.arange(len(labels)))
    return drop, winner[drop]
