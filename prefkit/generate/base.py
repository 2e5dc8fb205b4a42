"""What every generation engine is and makes, below the engines themselves (:mod:`prefkit.generate.hf`,
:mod:`prefkit.generate.vllm_engine`, :mod:`prefkit.generate.openai_engine`) and the registry that loads them
(:func:`prefkit.generate.engine.load_engine`): the engine names, one :class:`Request` (a prompt, its seed) in,
one :class:`Output` (a completion) out, and the :class:`Engine` protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

ENGINES = ("transformers", "vllm", "openai")


@dataclass(frozen=True)
class Request:
    """One completion to make: the prompt's messages, its row-level ``chat_template_kwargs`` (merged over the run's),
    and the completion's seed."""

    prompt: list[dict]
    seed: int
    template_kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Output:
    """One completion: the decoded text (reasoning split off), why it ended (``stop``: end-of-sequence token or a
    stop string; ``length``: ``max_new_tokens`` reached), and token counts (the prompt as rendered; generated
    tokens, the end-of-sequence token included)."""

    response: str
    reasoning_content: str | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class Engine(Protocol):
    """A loaded model that generates: ``info`` is recorded in the manifest (``engine``, ``engine_version``,
    the model's provenance); ``generate`` returns one output per request, in order, calling ``on_progress(n,
    tokens)`` as batches finish."""

    name: str
    info: dict

    def generate(self, requests: list[Request], params: Any, on_progress: Any = None) -> list[Output]: ...
