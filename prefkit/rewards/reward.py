"""The reward engine: a sequence-classification reward model's score of each pair's chosen and rejected answer.

**What a value is.** The score transformers' ``*ForSequenceClassification`` gives the text ``prompt + answer``:
the one logit of the ``score`` head at the *last non-padding token* (transformers 5
``GenericForSequenceClassification.forward``, which ``LlamaForSequenceClassification`` and the other decoder
classes use: the rightmost token whose id is not ``config.pad_token_id``, position 0 when every token is padding,
the last token when the config has no pad token). The text is tokenized as TRL's ``RewardTrainer`` (1.16,
``trl.data_utils._tokenize``) tokenizes a pair: messages go through the reward model's own chat template,
``apply_chat_template(prompt + answer, tools=..., **chat_template_kwargs, tokenize=True)`` (no extra special
tokens: the template writes them); a text pair gets ``eos_token`` appended to the answer when missing and is
tokenized with the tokenizer's default special tokens. Pairs with an answer longer than ``max_length`` tokens are
not scored (``dropped="too_long"``), as ``RewardTrainer`` filters them: a truncated answer would get a score for
text the answer does not end with.

**How it is fast** (the reference engine's ideas, reusing its code, :mod:`prefkit.reflogps.engine`):
length-sorted token-budget batches with ≤ 5 % padding (``build_items``/``run_items``); the common prefix of the two
token sequences (the prompt, usually) runs once: one row ``prefix | chosen rest | rejected rest`` with a 4D mask
that hides the chosen branch from the rejected one and position ids that restart after the prefix
(``pack_batch``), each score read at its own branch's last non-padding token; ``torch.inference_mode``; the head
only on the read positions; an out-of-memory error halves the budget. :func:`self_test` checks every path against
plain per-row forwards.

A model without a ``score`` linear head (e.g. an encoder with a ``classifier`` and pooler) is run through its own
``forward`` in padded batches (``mode="forward"``): correct for any sequence-classification model, without the
prefix sharing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prefkit.chat.tokenize import _apply, _ids, _template_kwargs, common_prefix_length, prepare_rows
from prefkit.errors import ModelError
from prefkit.reflogps.engine import (
    _attn_implementation,
    build_items,
    check_path,
    default_token_budget,
    pack_batch,
    run_items,
    supports_prefix_sharing,
)

#: Bumped whenever the reward engine's numerics or batching change; recorded in the manifest.
REWARD_ENGINE_VERSION = "1"
#: Names the tokenization rule reproduced here (see the module docstring); recorded in the manifest.
REWARD_TOKENIZATION_RULE = (
    "trl-reward-1.16:chat-template(prompt+answer)|text+eos,no-truncation,drop>max_length;"
    "read=last-non-pad-token"
)
#: Reason for a pair whose chosen or rejected text is longer than ``max_length`` tokens.
DROPPED_TOO_LONG = "too_long"
#: Reason for a pair whose text tokenizes to nothing (a template that renders an empty string).
DROPPED_EMPTY = "empty"


@dataclass
class RewardPair:
    """Token ids of ``prompt + chosen`` and ``prompt + rejected`` as the reward model reads them.

    ``dropped`` is :data:`DROPPED_TOO_LONG` (or :data:`DROPPED_EMPTY`) when the pair is not scored; its ids are
    then empty. ``tokens`` is the length of both texts (before dropping), for the counts.
    """

    chosen_ids: list[int]
    rejected_ids: list[int]
    dropped: str | None = None
    tokens: int = 0


@dataclass
class _Split:
    """A pair cut at the common prefix of its two sequences (what ``engine.build_items`` packs)."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    dropped: str | None


def _finish(chosen: list[int], rejected: list[int], max_length: int | None) -> RewardPair:
    tokens = len(chosen) + len(rejected)
    if max_length is not None and max(len(chosen), len(rejected)) > max_length:
        return RewardPair([], [], DROPPED_TOO_LONG, tokens)
    if not chosen or not rejected:
        return RewardPair([], [], DROPPED_EMPTY, tokens)
    return RewardPair(chosen, rejected, None, tokens)


def tokenize_reward_pairs(
    rows: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int | None
) -> list[RewardPair]:
    """Token ids of each row's ``prompt + chosen`` and ``prompt + rejected`` by TRL's ``RewardTrainer`` rule.

    ``rows``: dicts with ``prompt``, ``chosen``, ``rejected`` (messages or strings) and optionally ``tools`` /
    ``chat_template_kwargs``. Message rows without per-row template arguments are rendered in one batch call.
    Raises :class:`ModelError` for message rows when the tokenizer has no chat template (hint
    ``--chat-template``) or when the template fails on a row.
    """

    prepared, batch_text, batch_conv, per_row = prepare_rows(rows, tokenizer)
    out: list[RewardPair | None] = [None] * len(prepared)
    for i in per_row:  # per-row template arguments: one call per row, like TRL
        row = prepared[i]
        kw = _template_kwargs(row)
        chosen_ids = _ids(_apply(tokenizer, [row["prompt"] + row["chosen"]], **kw))[0]
        rejected_ids = _ids(_apply(tokenizer, [row["prompt"] + row["rejected"]], **kw))[0]
        out[i] = _finish(chosen_ids, rejected_ids, max_length)
    for batch, conv in ((batch_conv, True), (batch_text, False)):
        if not batch:
            continue
        rs = [prepared[i] for i in batch]
        texts = [[r["prompt"] + r[key] for r in rs] for key in ("chosen", "rejected")]
        if conv:
            c, r = (_ids(_apply(tokenizer, t, tools=None)) for t in texts)
        else:
            c, r = (_ids(tokenizer(t)) for t in texts)
        for j, i in enumerate(batch):
            out[i] = _finish(c[j], r[j], max_length)
    return out  # type: ignore[return-value]


def last_non_pad(ids: Sequence[int], pad_id: int | None) -> int:
    """Where transformers' ``*ForSequenceClassification`` reads the score of ``ids``: the rightmost position whose
    token is not ``pad_id`` (0 when all are), or the last position when the model has no pad token."""
    if pad_id is None:
        return len(ids) - 1
    for j in range(len(ids) - 1, -1, -1):
        if ids[j] != pad_id:
            return j
    return 0


def pad_token_id(model: Any) -> int | None:
    """The pad token id the model's own pooling uses (``config.get_text_config().pad_token_id``)."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    pad = getattr(cfg, "pad_token_id", None)
    return None if pad is None else int(pad)


def reward_head(model: Any) -> Any:
    """The model's ``score`` linear layer with one output (transformers' decoder ``*ForSequenceClassification``),
    or None when it has another head (then the model's own forward is used)."""
    import torch

    head = getattr(model, "score", None)
    if isinstance(head, torch.nn.Linear) and head.out_features == 1 and hasattr(model, "base_model"):
        return head
    return None


def engine_mode(model: Any, prefix_sharing: bool = True) -> str:
    """``"shared"`` (prefix sharing), ``"packed"`` (one row per text, own head) or ``"forward"`` (model.forward)."""

    if reward_head(model) is None:
        return "forward"
    return "shared" if prefix_sharing and supports_prefix_sharing(model) else "packed"


def _splits(pairs: Sequence[RewardPair]) -> list[_Split]:
    out = []
    for p in pairs:
        n = 0 if p.dropped else common_prefix_length(p.chosen_ids, p.rejected_ids)
        out.append(_Split(p.chosen_ids[:n], p.chosen_ids[n:], p.rejected_ids[n:], p.dropped))
    return out


def _read_column(prompt: Sequence[int], comp: Sequence[int], start: int, pad_id: int | None) -> int:
    """The packed column of the last non-padding token of ``prompt + comp`` (``comp`` starts at ``start``)."""
    j = last_non_pad([*prompt, *comp], pad_id)
    return j if j < len(prompt) else start + (j - len(prompt))


def _run_batch(model: Any, batch: list, head: Any, pad_id: int | None, out: Any) -> int:
    """Forward one packed batch (``engine.pack_batch``) and write each text's score into ``out`` (by out index)."""
    import torch


    packed = pack_batch(model, batch)
    rows, cols, outs = [], [], []
    for b, it in enumerate(batch):
        for (out_idx, comp), start in zip(it.completions, packed.starts[b], strict=True):
            rows.append(b)
            cols.append(_read_column(it.prompt, comp, start, pad_id))
            outs.append(out_idx)
    hidden = model.base_model(**packed.kwargs).last_hidden_state
    device = hidden.device
    h = hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)]
    values = head(h.to(head.weight.dtype)).float()[:, 0]
    out[torch.tensor(outs)] = values.double().cpu()
    return packed.tokens


def _run_forward(model: Any, batch: list, pad_id: int | None, out: Any) -> int:
    """The model's own forward on right-padded texts with a 2D attention mask (models without a ``score`` head)."""
    import torch

    device = next(model.parameters()).device
    texts = [([*it.prompt, *comp], out_idx) for it in batch for out_idx, comp in it.completions]
    width = max(len(ids) for ids, _ in texts)
    ids = torch.full((len(texts), width), 0 if pad_id is None else pad_id, dtype=torch.long)
    mask = torch.zeros((len(texts), width), dtype=torch.long)
    for b, (seq, _) in enumerate(texts):
        ids[b, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[b, : len(seq)] = 1
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
    out[torch.tensor([o for _, o in texts])] = logits[:, 0].double().cpu()
    return int(mask.sum())


def score_rewards(
    model: Any,
    pairs: Sequence[RewardPair],
    *,
    token_budget: int | None = None,
    prefix_sharing: bool = True,
    progress: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reward scores of each pair's chosen and rejected text → two float32 arrays (NaN where ``pair.dropped``).

    ``token_budget``: tokens per batch (default :func:`prefkit.reflogps.engine.default_token_budget`; halved on
    out-of-memory); ``progress(pairs_increment, tokens_increment)`` after each batch. Raises :class:`ModelError`
    when one text alone does not fit in memory.
    """
    import torch


    mode = engine_mode(model, prefix_sharing)
    head, pad_id = reward_head(model), pad_token_id(model)
    budget = token_budget or default_token_budget(model)
    if mode == "forward" and pad_id is None:
        budget = 1  # transformers pools a batch only with a pad token: one text per forward
    out = torch.full((2 * len(pairs),), float("nan"), dtype=torch.float64)
    items = build_items(_splits(pairs), mode == "shared")
    if mode == "forward":
        run = lambda batch: _run_forward(model, batch, pad_id, out)  # noqa: E731
    else:
        run = lambda batch: _run_batch(model, batch, head, pad_id, out)  # noqa: E731
    run_items(model, items, budget, run, progress, 1.0 if mode == "shared" else 0.5)
    values = out.numpy().astype(np.float32).reshape(-1, 2)
    return np.ascontiguousarray(values[:, 0]), np.ascontiguousarray(values[:, 1])


def score_rewards_plain(model: Any, pairs: Sequence[RewardPair]) -> tuple[np.ndarray, np.ndarray]:
    """The unoptimised path: one ``model(input_ids=[ids]).logits[0, 0]`` per text (the model's own pooling)."""
    import torch

    device = next(model.parameters()).device
    values = np.full((len(pairs), 2), np.nan, dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for i, pair in enumerate(pairs):
                if pair.dropped:
                    continue
                for k, ids in enumerate((pair.chosen_ids, pair.rejected_ids)):
                    logits = model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits
                    values[i, k] = float(logits[0, 0].float())
    finally:
        model.train(was_training)
    return np.ascontiguousarray(values[:, 0]), np.ascontiguousarray(values[:, 1])


def check_ids(pairs: Sequence[RewardPair], model: Any, model_name: str) -> None:
    """Raise :class:`ModelError` when a token id is outside the model's vocabulary (not the model's tokenizer)."""
    vocab = int(model.get_input_embeddings().num_embeddings)
    top = max((max(ids) for p in pairs for ids in (p.chosen_ids, p.rejected_ids) if ids), default=-1)
    if top >= vocab:
        raise ModelError(
            f"tokenizer/model mismatch for {model_name}: token id {top} is outside the model's vocabulary ({vocab})",
            "the tokenizer must be the reward model's own; check --reward-model and --chat-template",
        )


def reward_engine_settings(
    model: Any = None, *, token_budget: int | None = None, prefix_sharing: bool = True
) -> dict[str, Any]:
    """The settings :func:`score_rewards` uses with these arguments, for the manifest (without ``model`` only the
    model-independent ones; ``token_budget`` None then means "chosen automatically")."""
    settings: dict[str, Any] = {
        "engine": "prefkit-reward",
        "engine_version": REWARD_ENGINE_VERSION,
        "batching": "length-sorted, token-budget, right-padded",
        "prefix_sharing": bool(prefix_sharing),
        "token_budget": token_budget,
        "pooling": "score head at the last non-padding token (transformers *ForSequenceClassification)",
        "oom": "halve token budget and retry",
    }
    if model is not None:
        mode = engine_mode(model, prefix_sharing)
        param = next(model.parameters())
        settings.update(
            {
                "mode": mode,
                "prefix_sharing": mode == "shared",
                "token_budget": int(token_budget or default_token_budget(model)),
                "pad_token_id": pad_token_id(model),
                "dtype": str(param.dtype).removeprefix("torch."),
                "attn_implementation": _attn_implementation(model),
            }
        )
    return settings


def _self_test_pairs(model: Any, seed: int) -> list[RewardPair]:
    """A handful of short pairs of random ids: shared prefixes of several lengths (none, all of one answer, equal
    answers) and, when the model has a pad token, padding tokens at the end of a text (the last-non-pad rule)."""
    import torch

    vocab = int(model.get_input_embeddings().num_embeddings)
    pad = pad_token_id(model)
    gen = torch.Generator().manual_seed(seed)

    def ids(n: int) -> list[int]:
        out = torch.randint(0, vocab, (n,), generator=gen).tolist()
        return [t if t != pad else (t + 1) % vocab for t in out]

    pairs = []
    for prefix, c, r in [(9, 7, 3), (3, 2, 11), (14, 5, 5), (0, 6, 4), (6, 0, 8), (5, 0, 0)]:
        p = ids(prefix)
        chosen, rejected = p + ids(c), p + ids(r)
        pairs.append(RewardPair(chosen or ids(1), rejected or ids(1)))
    if pad is not None:
        pairs[0].chosen_ids += [pad, pad]
    return pairs


def self_test(model: Any, *, seed: int = 0) -> dict[str, float]:
    """Check the batched paths (prefix sharing, one row per text) against plain per-row forwards.

    Returns the largest absolute difference per path; raises :class:`ModelError` when a path is beyond
    ``1e-4 + 1e-4·|value|`` (fp32) or ``0.05 + 0.05·|value|`` (bf16/fp16), e.g. a model whose branches see
    each other or whose head is not what its forward applies.
    """
    import torch

    pairs = _self_test_pairs(model, seed)
    ref = np.concatenate(score_rewards_plain(model, pairs))
    fp32 = next(model.parameters()).dtype == torch.float32
    tol = (1e-4 + 1e-4 * np.abs(ref)) if fp32 else (0.05 + 0.05 * np.abs(ref))
    results = {}
    for sharing in (True, False):
        name = engine_mode(model, sharing)
        if name in results:
            continue
        got = np.concatenate(score_rewards(model, pairs, token_budget=48, prefix_sharing=sharing))
        results[name] = check_path(
            np.abs(got - ref),
            tol,
            f"reward engine self-test failed: the {name} path differs from plain forwards by {{:.4g}}",
            "report this model type; --no-prefix-sharing scores each text in its own row",
        )
    return results


__all__ = [
    "DROPPED_TOO_LONG",
    "REWARD_ENGINE_VERSION",
    "REWARD_TOKENIZATION_RULE",
    "RewardPair",
    "check_ids",
    "engine_mode",
    "last_non_pad",
    "reward_engine_settings",
    "reward_head",
    "score_rewards",
    "score_rewards_plain",
    "self_test",
    "tokenize_reward_pairs",
]
