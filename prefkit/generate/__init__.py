"""Generation: K completions per prompt per model, written as a rated-completions set (`prefkit generate`).

``prompts.py`` reads the prompts of any source `build` reads; ``sampling.py`` the sampling parameters, the
per-completion seed and the completion's Arrow type; ``engine.py`` the engines (``hf.py``: transformers,
``vllm_engine.py``: vLLM); ``job.py`` the resumable, sharded job on :mod:`prefkit.reflogps.runner`.
``from prefkit.generate import generate`` (imported lazily: torch and transformers load only when it runs).
"""

from __future__ import annotations

from typing import Any

__all__ = ["generate"]


def __getattr__(name: str) -> Any:
    if name == "generate":
        from prefkit.generate.job import generate

        return generate
    raise AttributeError(f"module 'prefkit.generate' has no attribute {name!r}")
