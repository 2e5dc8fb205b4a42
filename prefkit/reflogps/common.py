"""What the DPO reference job (:mod:`prefkit.reflogps.job`) and the KTO one (:mod:`prefkit.reflogps.kto`) share,
below both: the check that every token id fits the model's vocabulary, and a shard's counts before its pairs are
tallied."""

from __future__ import annotations

from typing import Any

from prefkit.errors import ModelError


def check_ids(pairs: list, vocab: int, model_name: str) -> None:
    """Raise ModelError when a token id of ``pairs`` is outside a vocabulary of ``vocab`` ids."""
    top = max(
        (max(ids) for p in pairs for ids in (p.prompt_ids, p.chosen_ids, p.rejected_ids) if ids), default=-1
    )
    if top >= vocab:
        raise ModelError(
            f"tokenizer/model mismatch for {model_name}: token id {top} is outside the model's vocabulary ({vocab})",
            "the tokenizer must be the model's own; check --model and --chat-template",
        )


def check_vocab(loaded: Any, pairs: list) -> None:
    """:func:`check_ids` against the loaded model's input embeddings."""
    check_ids(
        pairs, loaded.model.get_input_embeddings().num_embeddings, loaded.provenance.get("model", "the model")
    )


def empty_counts(rows: int) -> dict[str, Any]:
    """A shard's counts before its pairs are tallied (a DPO or a KTO reference job's)."""
    return {"rows": rows, "scored": 0, "truncated": 0, "completion_tokens": 0, "tokens": 0}
