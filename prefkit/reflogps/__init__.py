"""Reference log-probs: TRL-exact values, computed by a fast scoring engine, resumable and multi-process.

``prefkit.reflogps(out, model, ...)`` runs the job (:func:`prefkit.reflogps.job.reflogps`): this package is
callable, so the top-level call and the submodules (``prefkit.reflogps.engine`` …) share one name.
Import-light: torch/transformers are imported inside the functions that need them.
"""

from __future__ import annotations

from prefkit._callable import callable_package
from prefkit.reflogps.engine import ENGINE_VERSION, engine_settings, score_pairs, self_test
from prefkit.reflogps.plain import score_pairs_plain

__all__ = ["ENGINE_VERSION", "engine_settings", "score_pairs", "score_pairs_plain", "self_test"]


callable_package(__name__, "prefkit.reflogps.job:reflogps")
