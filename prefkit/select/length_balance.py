"""Length bias of preference pairs, and the smallest subset of pairs without it.

Preference data often prefers the longer answer, and DPO then learns "longer is better" (Singhal et al. 2023,
"A Long Way to Go: Investigating Length Correlations in RLHF"; Park et al. 2024, "Disentangling Length from
Quality in Direct Preference Optimization"). :func:`length_bias` measures it; :func:`length_balance_drops`
picks the fewest pairs to drop so that the chosen answer is the longer one in half of the pairs.

Lengths are in whatever unit the caller measures (characters, words, tokens); only their order matters, except
for the median ratio. Definitions used throughout:

* a pair is **chosen-longer** when ``chosen_len > rejected_len``; equal lengths count as *not* longer;
* the **chosen-longer fraction** is chosen-longer pairs / all pairs (equal-length pairs included in the
  denominator), the statistic :func:`length_bias` reports and :func:`length_balance_drops` balances;
* a null or NaN margin ranks below every number (it is dropped first, and ignored by the correlation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import polars as pl

from prefkit.accounting import Reason, declare
from prefkit.errors import SelectionError
from prefkit.ranks import spearman

(LENGTH_BALANCE,) = declare(
    Reason(
        "length_balance",
        "dropped",
        "dropped so the chosen answer is longer in 50 % ± 1 % of pairs (--length-balance), lowest margins first",
    ),
)

Values = Sequence[float | int | None] | np.ndarray | pl.Series


def _lengths(values: Values, name: str) -> np.ndarray:
    arr = values if isinstance(values, pl.Series) else pl.Series(name, values, dtype=pl.Float64, strict=False)
    out = arr.cast(pl.Float64).to_numpy()
    if arr.null_count() or not np.all(np.isfinite(out)) or (out < 0).any():
        raise SelectionError(f"{name} must be finite, non-negative numbers without nulls")
    return out


def _margins(margin: Values | None, n: int) -> np.ndarray:
    """Float64 (n,), NaN where the margin is missing (None, null or NaN)."""
    if margin is None:
        return np.full(n, np.nan)
    series = (
        margin
        if isinstance(margin, pl.Series)
        else pl.Series("margin", margin, dtype=pl.Float64, strict=False)
    )
    out = series.cast(pl.Float64).fill_null(np.nan).to_numpy()
    if len(out) != n:
        raise SelectionError(f"margin has {len(out)} values for {n} pairs")
    return out


def _inputs(chosen_len: Values, rejected_len: Values, margin: Values | None) -> tuple[np.ndarray, ...]:
    chosen, rejected = _lengths(chosen_len, "chosen_len"), _lengths(rejected_len, "rejected_len")
    if len(chosen) != len(rejected):
        raise SelectionError(f"chosen_len has {len(chosen)} values, rejected_len {len(rejected)}")
    return chosen, rejected, _margins(margin, len(chosen))


def length_bias(
    chosen_len: Values, rejected_len: Values, margin: Values | None = None
) -> dict[str, float | int | None]:
    """How much the chosen answers' length explains the preference.

    ``chosen_len``, ``rejected_len``: one length per pair (any unit, finite, >= 0, no nulls); ``margin``: one
    score gap per pair or None (nulls / NaN allowed). Returns:

    * ``pairs``, ``chosen_longer``, ``rejected_longer``, ``equal_length``: counts;
    * ``chosen_longer_fraction``: chosen_longer / pairs (None without pairs); 0.5 means no length bias;
    * ``median_length_ratio``: median of chosen_len / rejected_len over pairs with rejected_len > 0 (None if
      none): above 1 when chosen answers are longer;
    * ``pairs_with_margin`` and ``margin_length_spearman``: Spearman's rank correlation between the margin and
      chosen_len - rejected_len over the pairs with a margin (None for < 2 such pairs or a constant side):
      positive when bigger margins go with longer chosen answers.

    Raises SelectionError for null, negative or non-finite lengths, or arrays of different lengths."""
    chosen, rejected, margins = _inputs(chosen_len, rejected_len, margin)
    n = len(chosen)
    longer = int((chosen > rejected).sum())
    shorter = int((chosen < rejected).sum())
    positive = rejected > 0
    has_margin = ~np.isnan(margins)
    diff = chosen - rejected
    ratio = float(np.median(chosen[positive] / rejected[positive])) if positive.any() else None
    return {
        "pairs": n,
        "chosen_longer": longer,
        "rejected_longer": shorter,
        "equal_length": n - longer - shorter,
        "chosen_longer_fraction": longer / n if n else None,
        "median_length_ratio": ratio,
        "pairs_with_margin": int(has_margin.sum()),
        "margin_length_spearman": spearman(margins[has_margin], diff[has_margin]),
    }


def balanced_sizes(longer: int, others: int, tolerance: float) -> tuple[int, int]:
    """The most pairs ``(longer', others')``, ``longer' <= longer``, ``others' <= others``, whose
    chosen-longer fraction ``longer' / (longer' + others')`` is within ``0.5 ± tolerance`` (exact rational
    arithmetic on the decimal ``tolerance``; ``(0, 0)`` when only an empty set qualifies).

    Proof of minimality (every other function here only chooses *which* pairs go). Let t = tolerance,
    0 <= t < 1/2, and q = (1/2 + t) / (1/2 - t) >= 1. For a' + b' > 0:
        a' / (a' + b') <= 1/2 + t  <=>  a' (1/2 - t) <= b' (1/2 + t)  <=>  a' <= q b',
        a' / (a' + b') >= 1/2 - t  <=>  b' (1/2 - t) <= a' (1/2 + t)  <=>  b' <= q a'.
    So the feasible subsets are those with b'/q <= a' <= q b'. Case a > q b: every feasible subset has
    a' <= q b' <= q b, hence a' <= floor(q b) and b' <= b, so a' + b' <= floor(q b) + b; keeping all b others
    and floor(q b) longer pairs reaches that bound and is feasible (b <= q floor(q b) because floor(q b) >= b,
    as q >= 1 and b is an integer). No subset keeps more pairs, so dropping a - floor(q b) longer pairs (and
    no other) is the minimum. Case b > q a: the same with the roles swapped. Otherwise (b/q <= a <= q b) the
    whole set is feasible and nothing is dropped. Dropping from the side that is already in the minority never
    helps, which is why only the majority side loses pairs."""
    if not 0 <= tolerance < 0.5:
        raise SelectionError(f"tolerance must be in [0, 0.5), got {tolerance}")
    if longer < 0 or others < 0:
        raise SelectionError("pair counts must be >= 0")
    t = Fraction(str(tolerance))
    q = (Fraction(1, 2) + t) / (Fraction(1, 2) - t)
    if longer > q * others:
        return math.floor(q * others), others
    if others > q * longer:
        return longer, math.floor(q * longer)
    return longer, others


def _lowest_margins_first(candidates: np.ndarray, margins: np.ndarray, count: int) -> np.ndarray:
    """``count`` of ``candidates`` (positions): missing margins first, then ascending margins; ties: the
    later position first."""
    if count <= 0:
        return np.empty(0, dtype=np.int64)
    m = margins[candidates]
    missing = np.isnan(m)
    # lexsort sorts by its last key first: missing margins (False) first, then the margin, then the later
    # position first
    order = np.lexsort((-candidates, np.where(missing, 0.0, m), ~missing))
    return candidates[order[:count]]


def length_balance_drops(
    chosen_len: Values, rejected_len: Values, margin: Values | None = None, *, tolerance: float = 0.01
) -> np.ndarray:
    """Positions (int64, ascending) of the pairs to drop so that the chosen answer is longer in
    ``50 % ± tolerance`` of the pairs kept, dropping as few pairs as possible.

    Only the over-represented side loses pairs: the chosen-longer pairs when they exceed ``0.5 + tolerance``,
    otherwise the rest (rejected longer or equal lengths). Within that side the lowest margins go first, pairs
    without a margin (None, null, NaN) before any number, and among equal margins the later pair goes first.
    The number dropped is the minimum (proof: :func:`balanced_sizes`). ``tolerance`` is in [0, 0.5) (0.01 =
    one percentage point). When one side is empty (say every pair is chosen-longer) only the empty set is
    balanced, so every pair is dropped. Raises SelectionError for bad lengths or tolerance."""
    chosen, rejected, margins = _inputs(chosen_len, rejected_len, margin)
    is_longer = chosen > rejected
    longer, others = np.flatnonzero(is_longer), np.flatnonzero(~is_longer)
    keep_longer, keep_others = balanced_sizes(len(longer), len(others), tolerance)
    drops = [
        _lowest_margins_first(longer, margins, len(longer) - keep_longer),
        _lowest_margins_first(others, margins, len(others) - keep_others),
    ]
    return np.sort(np.concatenate(drops)).astype(np.int64)
