"""The ``transformers`` engine: ``model.generate`` over batches of requests, left-padded, with the KV cache, the
requests bucketed by prompt length (longest first, so a batch pads little), on the CPU or a GPU.

Sampling is done per completion with the completion's own ``torch.Generator`` (:class:`RowSampler`, the last of
the logits processors; transformers' own warpers for temperature, top-k and top-p before it), so a completion
does not depend on which other requests share its batch. Greedy (``temperature=0``) is plain ``generate()``
with ``do_sample=False``. The model's ``generation_config.json`` sampling defaults are not applied: the flags
say everything (as vLLM's ``SamplingParams`` do); its end-of-sequence ids are.
"""

from __future__ import annotations

from typing import Any

from prefkit.chat.templates import require_chat_template
from prefkit.generate.base import Output, Request
from prefkit.generate.sampling import SamplingParams, split_reasoning
from prefkit.loading.model import load_model

#: requests per ``generate`` call
DEFAULT_BATCH_SIZE = 32


class TransformersEngine:
    """A causal LM and its tokenizer loaded by :func:`prefkit.loading.model.load_model` (``options``:
    :class:`prefkit.loading.ModelOptions`, or a command's options holding them); ``template_kwargs``: the run's
    ``chat_template_kwargs``."""

    name = "transformers"

    def __init__(
        self, model: str, options: Any, template_kwargs: dict, batch_size: int | None = None
    ) -> None:
        import torch
        import transformers


        self.loaded = load_model(model, options=options, hash_weights=True)
        require_chat_template(self.loaded.tokenizer, f"the tokenizer of {model}")
        self.template_kwargs = template_kwargs
        self.batch_size = batch_size or options.token_budget or DEFAULT_BATCH_SIZE
        self.info = {
            "engine": self.name,
            "engine_version": transformers.__version__,
            "torch_version": torch.__version__,
            **self.loaded.provenance,
        }

    # ------------------------------------------------------------------------------------------ rendering
    def render(self, request: Request) -> list[int]:
        """The prompt's token ids: the model's chat template with its generation prompt, as
        ``tokenizer.apply_chat_template(messages, add_generation_prompt=True)`` gives them."""
        tok = self.loaded.tokenizer
        kwargs = {**self.template_kwargs, **request.template_kwargs}
        text = tok.apply_chat_template(request.prompt, add_generation_prompt=True, tokenize=False, **kwargs)
        return list(tok(text, add_special_tokens=False)["input_ids"])

    def generate(
        self, requests: list[Request], params: SamplingParams, on_progress: Any = None
    ) -> list[Output]:
        """One output per request, in order; batches of ``batch_size`` requests of similar prompt length."""
        ids = [self.render(r) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: (-len(ids[i]), i))
        outputs: list[Output | None] = [None] * len(requests)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            batch = self._batch([ids[i] for i in chosen], [requests[i].seed for i in chosen], params)
            for i, out in zip(chosen, batch, strict=True):
                outputs[i] = out
            if on_progress is not None:
                on_progress(len(chosen), sum(o.completion_tokens for o in batch))
        return [o for o in outputs if o is not None]

    # ------------------------------------------------------------------------------------------- one batch
    def _eos_ids(self) -> list[int]:
        cfg = self.loaded.model.generation_config
        eos = cfg.eos_token_id if cfg.eos_token_id is not None else self.loaded.tokenizer.eos_token_id
        return [e for e in (eos if isinstance(eos, list) else [eos]) if e is not None]

    def _pad_id(self, eos: list[int]) -> int:
        pad = self.loaded.tokenizer.pad_token_id
        return int(pad if pad is not None else eos[0])

    def _batch(self, ids: list[list[int]], seeds: list[int], params: SamplingParams) -> list[Output]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        model, tok = self.loaded.model, self.loaded.tokenizer
        eos = self._eos_ids()
        pad = self._pad_id(eos)
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=self.loaded.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.loaded.device)
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=eos,
            pad_token_id=pad,
            stop_strings=list(params.stop) or None,
        )
        processors = LogitsProcessorList(
            [] if params.greedy else [row_sampler(params, seeds, input_ids.device)]
        )
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                generation_config=config,
                logits_processor=processors,
                tokenizer=tok if params.stop else None,
            )
        return [
            self._output(row[width:].tolist(), len(x), eos, pad, params)
            for row, x in zip(out, ids, strict=True)
        ]

    def _output(
        self, new: list[int], prompt_len: int, eos: list[int], pad: int, params: SamplingParams
    ) -> Output:
        """A generated row cut at its first end-of-sequence token (counted) or stop string (left out)."""
        end = next((i for i, t in enumerate(new) if t in eos), None)
        if end is not None:
            new, finish = new[: end + 1], "stop"
        else:
            while new and new[-1] == pad and len(new) < params.max_new_tokens:
                new = new[:-1]  # a row stopped by a stop string is padded to the batch's length
            finish = "length"
        text = self.loaded.tokenizer.decode(new, skip_special_tokens=True)
        hits = [i for i in (text.find(s) for s in params.stop) if i >= 0]
        if hits:
            text, finish = text[: min(hits)], "stop"
        response, reasoning = split_reasoning(text)
        return Output(response, reasoning, finish, prompt_len, len(new))


def row_sampler(params: SamplingParams, seeds: list[int], device: Any) -> Any:
    """A logits processor that samples each row with its own generator (seeded with the completion's seed) after
    transformers' temperature / top-k / top-p warpers, and leaves only the sampled token possible, so greedy
    selection in ``generate`` takes it. Shapes: scores ``[batch, vocab]`` float."""
    import torch
    from transformers import LogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers: list[Any] = [TemperatureLogitsWarper(params.temperature)]
    if params.top_k:
        warpers.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1.0:
        warpers.append(TopPLogitsWarper(params.top_p))

    class RowSampler(LogitsProcessor):
        def __init__(self) -> None:
            self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            for warp in warpers:
                scores = warp(input_ids, scores)
            probs = torch.softmax(scores.float(), dim=-1)
            picks = [torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(self.generators)]
            tokens = torch.cat(picks).view(-1, 1)
            out = torch.full_like(scores, float("-inf"))
            return out.scatter_(1, tokens, 0.0)

    return RowSampler()
