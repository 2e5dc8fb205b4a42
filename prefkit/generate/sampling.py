"""Sampling parameters (named as transformers' ``GenerationConfig`` and vLLM's ``SamplingParams`` name them), the
per-completion seed, and the Arrow type of a generated completion.

A completion's seed is :func:`completion_seed` of (the run's ``seed``, the prompt's id, the sample's index): it
does not depend on the shard, the batch, the worker or the order, so a killed and resumed run, or one split over
any number of workers, samples the same completions.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import xxhash
from pydantic import field_validator

from prefkit.optionspec import OptionGroup, option
from prefkit.values import names

#: one completion of a generated set: UltraFeedback's ``model`` / ``response`` names, then how it was made
COMPLETION_FIELDS: list[tuple[str, pa.DataType]] = [
    ("model", pa.string()),
    ("response", pa.string()),
    ("reasoning_content", pa.string()),
    ("revision", pa.string()),
    ("sample_index", pa.int32()),
    ("seed", pa.int64()),
    ("temperature", pa.float64()),
    ("top_p", pa.float64()),
    ("top_k", pa.int32()),
    ("max_new_tokens", pa.int32()),
    ("finish_reason", pa.string()),
    ("prompt_tokens", pa.int32()),
    ("completion_tokens", pa.int32()),
]
COMPLETION_TYPE = pa.struct(COMPLETION_FIELDS)
COMPLETIONS_TYPE = pa.list_(COMPLETION_TYPE)


class SamplingParams(OptionGroup):
    """How completions are sampled. ``temperature`` 0 is greedy (as in vLLM); ``top_k`` None or 0 and ``top_p``
    1.0 turn those filters off (vLLM's defaults; transformers' own ``top_k`` default of 50 is not applied);
    ``max_new_tokens`` counts generated tokens (the end-of-sequence token included); ``stop``: strings that end a
    completion (left out of the response, as vLLM does); ``seed``: the run's seed (:func:`completion_seed`)."""

    temperature: float = option(
        1.0, "Sampling temperature (GenerationConfig / SamplingParams name); 0 is greedy.", ge=0
    )
    top_p: float = option(
        1.0,
        "Nucleus sampling: keep the smallest set of tokens whose probability reaches it (1.0: off).",
        gt=0,
        le=1,
    )
    top_k: int | None = option(
        None, "Keep the k most likely tokens (default, or 0: off, as vLLM's default).", ge=0
    )
    max_new_tokens: int = option(
        512, "Most tokens generated per completion (the end-of-sequence token included).", ge=1
    )
    seed: int = option(0, "Run seed: each completion's seed derives from (seed, prompt id, sample index).")
    stop: tuple[str, ...] = option((), "A string that ends a completion, left out of it (repeatable).")

    @field_validator("stop", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return names(value, None) or ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict:
        """The parameters as recorded (in the manifest and each job's settings)."""
        out = self.model_dump() if type(self) is SamplingParams else self.part(SamplingParams).model_dump()
        out["stop"] = list(self.stop)
        return out


def completion_seed(seed: int, prompt_id: str, sample_index: int) -> int:
    """The seed of one completion: xxh3-64 of ``"seed:prompt_id:sample_index"``, as a non-negative int64."""
    return xxhash.xxh3_64_intdigest(f"{seed}:{prompt_id}:{sample_index}".encode()) & (2**63 - 1)


def split_reasoning(text: str) -> tuple[str, str | None]:
    """A completion's ``(response, reasoning_content)``: the text after the last ``</think>`` and the reasoning
    before it (an opening ``<think>`` left out), as Qwen3's and DeepSeek-R1's chat templates split an assistant
    turn; text without ``</think>`` is all response."""
    if "</think>" not in text:
        return text, None
    reasoning, _, response = text.rpartition("</think>")
    reasoning = reasoning.split("<think>", 1)[-1]
    return response.lstrip("\n"), reasoning.strip("\n")
