"""Generation: K completions per prompt per model, written as a rated-completions set (`prefkit generate`).

``prompts.py`` reads the prompts of any source `build` reads; ``sampling.py`` the sampling parameters, the
per-completion seed and the completion's Arrow type; ``engine.py`` the engines (``hf.py``: transformers,
``vllm_engine.py``: vLLM); ``job.py`` the resumable, sharded job on :mod:`prefkit.reflogps.runner`.
``prefkit.generate(source, out, models, ...)`` runs the job (:func:`prefkit.generate.job.generate`): this package
is callable, as ``prefkit.reflogps`` is, so the top-level call and the submodules share one name (torch and
transformers load only when it runs).
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["generate"]


def __getattr__(name: str) -> Any:
    if name == "generate":
        from prefkit.generate.job import generate

        return generate
    raise AttributeError(f"module 'prefkit.generate' has no attribute {name!r}")


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from prefkit.generate.job import generate

        return generate(*args, **kwargs)

    @property
    def __wrapped__(self) -> Any:
        """The function a call runs (``inspect.signature(prefkit.generate)`` shows its keywords)."""
        from prefkit.generate.job import generate

        return generate


sys.modules[__name__].__class__ = _CallablePackage
