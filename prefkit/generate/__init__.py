"""Generation: K completions per prompt per model, written as a rated-completions set (`prefkit generate`).

``prompts.py`` reads the prompts of any source `build` reads; ``sampling.py`` the sampling parameters, the
per-completion seed and the completion's Arrow type; ``base.py`` what every engine shares; ``engine.py`` loads
the engines by name (``hf.py``: transformers, ``vllm_engine.py``: vLLM, ``openai_engine.py``); ``job.py`` the resumable, sharded job on :mod:`prefkit.jobs.runner`.
``prefkit.generate(source, out, models, ...)`` runs the job (:func:`prefkit.generate.job.generate`): this package
is callable, as ``prefkit.reflogps`` is, so the top-level call and the submodules share one name (torch and
transformers load only when it runs).
"""

from __future__ import annotations

from typing import Any

from prefkit._callable import callable_package
from prefkit.generate.job import generate

__all__ = ["generate"]


def __getattr__(name: str) -> Any:
    if name == "generate":
        return generate
    raise AttributeError(f"module 'prefkit.generate' has no attribute {name!r}")


callable_package(__name__, "prefkit.generate.job:generate")
