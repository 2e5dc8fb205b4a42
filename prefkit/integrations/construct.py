"""The construction steps prefkit's TRL trainers share (``PrecomputedRefDPOTrainer``,
``PrecomputedRefKTOTrainer``): what a trainer is constructed with, TRL's weight hash skipped while it is not
needed, reference columns a dataset has only some of dropped. Imports nothing from TRL."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: what TRL's weight hash (its precompute cache key) answers while every dataset carries the values
SKIPPED_HASH = "prefkit:precomputed-columns"


def trainer_arguments(trainer: type, self: Any, args: tuple, kwargs: dict) -> tuple[Any, list[Any]]:
    """(the config, the datasets) a TRL trainer class ``trainer`` is constructed with (train and eval sets)."""
    params = inspect.signature(trainer.__init__).bind(self, *args, **kwargs).arguments  # type: ignore[misc]
    sets = [d for d in (params.get("train_dataset"), *eval_sets(params.get("eval_dataset"))) if d]
    return params.get("args"), sets


@contextmanager
def weight_hash_skipped(module: Any, skip: bool) -> Iterator[None]:
    """TRL hashes every weight at init (the precompute cache key); with ``skip`` (every dataset carries the values)
    ``module.hash_module`` answers a constant meanwhile (TRL <= 0.28 has no such function: nothing to skip)."""
    real = getattr(module, "hash_module", None)
    if real and skip:
        module.hash_module = lambda _module: SKIPPED_HASH
    try:
        yield
    finally:
        if real:
            module.hash_module = real


def without_columns(dataset: Any, columns: tuple[str, ...]) -> Any:
    """``dataset`` without those of ``columns`` it has (some reference columns but not all: TRL computes them)."""
    partial = [c for c in columns if c in getattr(dataset, "column_names", [])]
    return dataset.remove_columns(partial) if partial else dataset


def eval_sets(eval_dataset: Any) -> list[Any]:
    """The eval datasets a trainer is given (one, a dict of them, or none)."""
    if eval_dataset is None or isinstance(eval_dataset, str):
        return []
    if isinstance(eval_dataset, dict):
        return list(eval_dataset.values())
    return [eval_dataset]
