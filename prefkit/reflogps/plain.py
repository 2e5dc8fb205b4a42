"""The unoptimised reference path: one sequence at a time, full forward, full log-softmax.

Used by ``prefkit verify`` and by the engine's self-test. It uses the model's own ``forward`` (so the
model applies its own logit scaling / softcapping) and nothing from the fast engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def sequence_logprob(model: Any, prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> float:
    """Σ log π(completion token | all previous tokens) for ``prompt + completion`` (fp32 log-softmax)."""
    import torch

    ids = list(prompt_ids) + list(completion_ids)
    n = len(prompt_ids)
    if len(ids) < 2 or not completion_ids:
        return 0.0
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits[0].float()
        logp = torch.log_softmax(logits[:-1], dim=-1)
        targets = torch.tensor(ids[1:], device=device)
        per_token = logp.gather(1, targets.unsqueeze(1)).squeeze(1)
        start = max(n - 1, 0)  # label of position t is token t+1; the first token is never scored
        return float(per_token[start:].double().sum())


def score_pairs_plain(
    model: Any, pairs: Sequence[Any], progress: Callable[[float, int], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Chosen/rejected log-probs, one full forward per sequence; NaN for dropped pairs."""
    chosen = np.full(len(pairs), np.nan, dtype=np.float32)
    rejected = np.full(len(pairs), np.nan, dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        for i, pair in enumerate(pairs):
            if getattr(pair, "dropped", None):
                continue
            chosen[i] = sequence_logprob(model, pair.prompt_ids, pair.chosen_ids)
            rejected[i] = sequence_logprob(model, pair.prompt_ids, pair.rejected_ids)
            if progress is not None:
                progress(1.0, 2 * len(pair.prompt_ids) + len(pair.chosen_ids) + len(pair.rejected_ids))
    finally:
        model.train(was_training)
    return chosen, rejected
