"""Reference log-probs: TRL-exact values, computed by a fast scoring engine.

Import-light: torch/transformers are imported inside the functions of :mod:`prefkit.reflogps.engine` and
:mod:`prefkit.reflogps.plain`.
"""

from __future__ import annotations

from prefkit.reflogps.engine import ENGINE_VERSION, engine_settings, score_pairs, self_test
from prefkit.reflogps.plain import score_pairs_plain

__all__ = ["ENGINE_VERSION", "engine_settings", "score_pairs", "score_pairs_plain", "self_test"]
