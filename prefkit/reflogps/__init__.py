"""Reference log-probs: TRL-exact values, computed by a fast scoring engine, resumable and multi-process.

``prefkit.reflogps(out, model, ...)`` runs the job (:func:`prefkit.reflogps.job.reflogps`): this package is
callable, so the top-level call and the submodules (``prefkit.reflogps.engine`` …) share one name.
Import-light: torch/transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from prefkit.reflogps.engine import ENGINE_VERSION, engine_settings, score_pairs, self_test
from prefkit.reflogps.plain import score_pairs_plain

__all__ = ["ENGINE_VERSION", "engine_settings", "score_pairs", "score_pairs_plain", "self_test"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from prefkit.reflogps.job import reflogps

        return reflogps(*args, **kwargs)

    @property
    def __wrapped__(self) -> Any:
        """The function a call runs (``inspect.signature(prefkit.reflogps)`` shows its keywords)."""
        from prefkit.reflogps.job import reflogps

        return reflogps


sys.modules[__name__].__class__ = _CallablePackage
