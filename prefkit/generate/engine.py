"""Engines: what turns rendered prompts into completions. One request is one completion (a prompt, its sample
index, its seed); an engine returns one :class:`Output` per request, in order.

``transformers`` (the default, :mod:`prefkit.generate.hf`): batched ``model.generate`` on the CPU or a GPU.
``vllm`` (:mod:`prefkit.generate.vllm_engine`, the optional extra ``prefkit[vllm]``, GPU). ``openai``
(:mod:`prefkit.generate.openai_engine`): any OpenAI-compatible server at ``endpoint``. Each records its name and
version in the set's manifest. What they share (the names, :class:`Request`, :class:`Output`, the :class:`Engine`
protocol) is :mod:`prefkit.generate.base`, below them; this module is the registry that imports them.
"""

from __future__ import annotations

from typing import Any

from prefkit.errors import OptionError
from prefkit.generate.base import ENGINES, Engine, Output, Request
from prefkit.generate.hf import TransformersEngine
from prefkit.generate.openai_engine import OpenAIEngine
from prefkit.generate.vllm_engine import VllmEngine

__all__ = ["ENGINES", "Engine", "Output", "Request", "load_engine"]


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
        return TransformersEngine(model, options, template_kwargs, batch_size)
    if name == "openai":
        return OpenAIEngine(model, endpoint, template_kwargs, batch_size)
    if name == "vllm":
        return VllmEngine(model, options, template_kwargs)
    raise OptionError(f"unknown --engine {name!r}", f"use one of: {', '.join(ENGINES)}")
