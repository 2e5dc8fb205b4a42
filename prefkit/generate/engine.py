"""Engines: what turns rendered prompts into completions. One request is one completion (a prompt, its sample
index, its seed); an engine returns one :class:`Output` per request, in order.

``transformers`` (the default, :mod:`prefkit.generate.hf`): batched ``model.generate`` on the CPU or a GPU.
``vllm`` (:mod:`prefkit.generate.vllm_engine`, the optional extra ``prefkit[vllm]``, GPU). ``openai``
(:mod:`prefkit.generate.openai_engine`): any OpenAI-compatible server at ``endpoint``. Each records its name and
version in the set's manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from prefkit.errors import OptionError

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


def load_engine(
    name: str,
    model: str,
    options: Any,
    template_kwargs: dict,
    endpoint: str | None = None,
    batch_size: int | None = None,
) -> Engine:
    """The named engine with ``model`` loaded (``options``: :class:`prefkit.loading.ModelOptions`). Raises
    OptionError for an unknown engine, ``DependencyError`` when its package is missing (with the install hint),
    ``ModelError`` when the model cannot be loaded."""
    if name == "transformers":
        from prefkit.generate.hf import TransformersEngine

        return TransformersEngine(model, options, template_kwargs, batch_size)
    if name == "openai":
        from prefkit.generate.openai_engine import OpenAIEngine

        return OpenAIEngine(model, endpoint, template_kwargs, batch_size)
    if name == "vllm":
        from prefkit.generate.vllm_engine import VllmEngine

        return VllmEngine(model, options, template_kwargs)
    raise OptionError(f"unknown --engine {name!r}", f"use one of: {', '.join(ENGINES)}")
