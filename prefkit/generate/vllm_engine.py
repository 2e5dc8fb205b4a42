"""The ``vllm`` engine (optional extra ``prefkit[vllm]``, a GPU): ``vllm.LLM.chat`` with one
``SamplingParams(n=1, seed=completion_seed)`` per request, so each completion is seeded as in the transformers
engine (the values differ: another sampler). Refused with the install hint when vLLM is not installed."""

from __future__ import annotations

import json
from typing import Any

from prefkit.errors import require
from prefkit.generate.base import Output, Request
from prefkit.generate.sampling import SamplingParams, split_reasoning
from prefkit.loading.model import locate_model


class VllmEngine:
    name = "vllm"

    def __init__(self, model: str, options: Any, template_kwargs: dict) -> None:
        vllm = require("vllm", "--engine vllm")

        folder, where = locate_model(model, options.revision)
        dtype = "auto" if options.dtype in (None, "auto") else options.dtype
        self.llm = vllm.LLM(str(folder), dtype=dtype, trust_remote_code=options.trust_remote_code, seed=0)
        self.vllm = vllm
        self.template_kwargs = template_kwargs
        self.info = {"engine": self.name, "engine_version": vllm.__version__, **where}

    def generate(
        self, requests: list[Request], params: SamplingParams, on_progress: Any = None
    ) -> list[Output]:
        sampling = [
            self.vllm.SamplingParams(
                n=1,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k or -1,
                max_tokens=params.max_new_tokens,
                seed=r.seed,
                stop=list(params.stop) or None,
            )
            for r in requests
        ]
        kwargs = [{**self.template_kwargs, **r.template_kwargs} for r in requests]
        groups: dict[str, list[int]] = {}
        for i, kw in enumerate(kwargs):  # one chat() call per set of template arguments
            groups.setdefault(json.dumps(kw, sort_keys=True), []).append(i)
        results: list[Any] = [None] * len(requests)
        for key, members in groups.items():
            done = self.llm.chat(
                [requests[i].prompt for i in members],
                [sampling[i] for i in members],
                use_tqdm=False,
                chat_template_kwargs=json.loads(key) or None,
            )
            for i, res in zip(members, done, strict=True):
                results[i] = res
        outputs = []
        for res in results:
            done_ = res.outputs[0]
            response, reasoning = split_reasoning(done_.text)
            finish = "length" if done_.finish_reason == "length" else "stop"
            outputs.append(
                Output(response, reasoning, finish, len(res.prompt_token_ids), len(done_.token_ids))
            )
        if on_progress is not None:
            on_progress(len(requests), sum(o.completion_tokens for o in outputs))
        return outputs
