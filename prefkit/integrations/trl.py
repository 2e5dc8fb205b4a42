"""Train with TRL on prefkit's precomputed reference log-probs, without a reference model in memory.

TRL's ``DPOTrainer`` has no switch to use ``ref_chosen_logps`` / ``ref_rejected_logps`` columns that are
already in the dataset: with ``precompute_ref_log_probs=True`` it recomputes them (and then fails on the
duplicated columns), without it it ignores them and loads a reference model. :class:`PrecomputedRefDPOTrainer`
is a drop-in ``DPOTrainer`` that uses the columns when a dataset has both, and falls back to TRL's own
precompute when it has not::

    from datasets import load_dataset
    from trl import DPOConfig
    from prefkit.trl import PrecomputedRefDPOTrainer

    trainer = PrecomputedRefDPOTrainer(
        model=model, ref_model=None, processing_class=tokenizer,
        args=DPOConfig(precompute_ref_log_probs=True, max_length=1024, ...),
        train_dataset=load_dataset("hermes2k")["train"],
        prefkit_manifest="hermes2k",   # optional: also checks model, tokenizer, template, max_length
    )

With ``precompute_ref_log_probs=True`` and ``ref_model=None`` TRL (>= 1.2) keeps no reference copy; this
class also skips TRL's SHA-256 over all weights when every dataset carries the columns. ``trl`` is imported
when the class is first used, so ``import prefkit`` and ``import prefkit.trl`` do not need it.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
TOKEN_COLUMNS = ("chosen_tokens", "rejected_tokens")
_MANIFEST_FIX = (
    "train with the tokenizer and chat template the set was scored with, or score it again with yours"
)
#: Placeholder for TRL's weight hash while every dataset has precomputed columns (computed lazily if needed).
_SKIPPED_HASH = "prefkit:precomputed-columns"

__all__ = [
    "PrecomputedRefDPOTrainer",  # noqa: F822 - built on first access (module __getattr__), so trl loads lazily
    "PrefkitWarning",
    "check_against_manifest",
    "has_ref_columns",
    "load_manifest",
]


class PrefkitWarning(UserWarning):
    """The precomputed columns may not match the trainer (other model, tokenizer, template or max_length)."""


def has_ref_columns(dataset: Any) -> bool:
    """Whether a ``datasets.Dataset`` has both reference log-prob columns."""
    names = getattr(dataset, "column_names", None) or []
    return set(REF_COLUMNS) <= set(names)


def load_manifest(source: str | os.PathLike | dict) -> dict:
    """A prefkit manifest from a dict, an output folder, or a ``prefkit.json`` path."""
    if isinstance(source, dict):
        return source
    path = Path(source)
    if path.is_dir():
        path = path / "prefkit.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"cannot read the prefkit manifest {str(path)!r}: {err}") from None


def _same_model(section: dict, name_or_path: str | None) -> bool:
    if not name_or_path:
        return True  # nothing to compare with
    if name_or_path == section.get("model"):
        return True
    candidates = [section.get("model_path"), section.get("model")]
    if os.path.exists(name_or_path):
        real = os.path.realpath(name_or_path)
        if any(c and os.path.exists(c) and os.path.realpath(c) == real for c in candidates):
            return True
        return _same_weights(section, name_or_path)
    return False


def _same_weights(section: dict, folder: str) -> bool:
    """Whether a local model folder holds the weights the set was scored with (the recorded hash): the same model
    under another path (a copy, a published set whose command names the folder only)."""
    from pathlib import Path

    from prefkit.reflogps.model import weights_hash

    recorded = section.get("weights_sha256")
    return bool(recorded) and os.path.isdir(folder) and weights_hash(Path(folder)) == recorded


def check_against_manifest(
    manifest: dict,
    *,
    model: Any = None,
    tokenizer: Any = None,
    max_length: int | None = None,
    truncation_mode: str | None = "keep_start",
) -> list[str]:
    """Differences between the run that scored a set (its manifest) and a trainer's setup, as sentences.

    Compares the model (name or folder), the tokenizer (hash of its vocabulary/merges/special tokens), the chat
    template (hash), ``max_length`` (``None``, no truncation, is a value like any other) and the truncation mode,
    with the one provenance check (:func:`prefkit.reflogps.provenance.differences`). An empty list: no difference.
    """
    from prefkit.chat.templates import template_hash
    from prefkit.chat.tokenizer import tokenizer_hash
    from prefkit.reflogps.provenance import differences

    section = manifest.get("reflogps")
    if not section:
        return ["the manifest has no 'reflogps' section: the set was not scored by `prefkit reflogps`"]
    problems = []
    if model is not None:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        name = getattr(getattr(base, "config", None), "_name_or_path", None)
        if not _same_model(section, name):
            problems.append(
                f"the trainer's model ({name}) is not the model that scored the set ({section.get('model')})"
            )
    actual: dict[str, Any] = {"max_length": max_length}
    if truncation_mode is not None:
        actual["truncation_mode"] = truncation_mode
    if tokenizer is not None:
        tok = getattr(tokenizer, "tokenizer", tokenizer)  # a processor wraps the tokenizer
        actual["tokenizer_sha256"] = tokenizer_hash(tok)
        actual["chat_template_sha256"] = template_hash(getattr(tok, "chat_template", None))
    return problems + differences(section, actual)


_TRL_FIX = (
    "install the TRL the values were computed for (pip install 'trl>=1.14.2'; docs/reflogps.md lists how TRL "
    "releases tokenize), or score the set again under this TRL's rule with the matching prefkit"
)
#: differences that make the stored values wrong for every row (the others may leave rows untouched)
FATAL = ("the tokenizer", "the chat template")


_CLASS: type | None = None


def _make_class() -> type:
    import inspect

    from trl import DPOTrainer
    from trl.trainer import dpo_trainer as dpo_module

    class PrecomputedRefDPOTrainer(DPOTrainer):
        """``trl.DPOTrainer`` that uses ``ref_chosen_logps`` / ``ref_rejected_logps`` columns when present.

        Use with ``DPOConfig(precompute_ref_log_probs=True)`` and ``ref_model=None``. A dataset with both
        columns is used as is (no reference forward, no reference model); one without them goes through
        TRL's own precompute.

        The rows are always checked against how this trainer tokenizes them (the stored ``chosen_tokens`` /
        ``rejected_tokens`` against its own ``max_length`` truncation): rows it would tokenize differently, and
        rows it keeps that have no values (their prompt filled the scoring ``max_length``), raise
        :class:`~prefkit.reflogps.provenance.ReferenceMismatchError` at construction; so does an installed TRL
        that tokenizes by another rule than the values follow (:func:`prefkit.chat.tokenize.check_trl_rule`).
        ``prefkit_manifest`` (an output folder, its ``prefkit.json`` or the dict) adds the scoring run's
        identity: another tokenizer or chat template raises too; another model name or ``max_length`` is a
        :class:`PrefkitWarning`. ``prefkit_strict=False`` turns the errors into warnings.
        """

        def __init__(
            self,
            *args: Any,
            prefkit_manifest: str | os.PathLike | dict | None = None,
            prefkit_strict: bool = True,
            **kwargs: Any,
        ):
            params = inspect.signature(DPOTrainer.__init__).bind(self, *args, **kwargs).arguments
            config = params.get("args")
            datasets_ = [
                d for d in (params.get("train_dataset"), *_eval_sets(params.get("eval_dataset"))) if d
            ]
            _warn_ignored_columns(config, datasets_)
            self._prefkit_used_columns = False
            self._prefkit_strict = prefkit_strict
            self._prefkit_manifest = load_manifest(prefkit_manifest) if prefkit_manifest is not None else None
            real_hash = dpo_module.hash_module
            if _nothing_to_compute(config, datasets_):  # TRL hashes every weight at init for its cache key
                dpo_module.hash_module = lambda module: _SKIPPED_HASH
            try:
                super().__init__(*args, **kwargs)
            finally:
                dpo_module.hash_module = real_hash
            if self._prefkit_used_columns:
                _check_setup(self)

        def _prefkit_refuse(self, problems: list[tuple[str, str]]) -> None:
            _refuse(self, problems)

        def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
            if has_ref_columns(dataset):
                if getattr(self, "ld_alpha", None) is None:
                    _check_rows(self, dataset)
                    self._prefkit_used_columns = True
                    return dataset
                warnings.warn(
                    f"ld_alpha is set, so TRL length-weights the reference log-probs; the {name} set's "
                    "precomputed columns are plain sums and are recomputed by TRL instead",
                    PrefkitWarning,
                    stacklevel=2,
                )
            partial = [c for c in REF_COLUMNS if c in getattr(dataset, "column_names", [])]
            if partial:
                dataset = dataset.remove_columns(partial)
            if getattr(self, "_precompute_model_hash", None) == _SKIPPED_HASH:  # a dataset without columns
                self._precompute_model_hash = real_hash_module()(self.ref_model or self.model)
            _key_ld_alpha(self)
            return super()._precompute_ref_logps(dataset, name, batch_size)

    PrecomputedRefDPOTrainer.__module__ = __name__
    return PrecomputedRefDPOTrainer


def _warn_ignored_columns(config: Any, datasets_: list[Any]) -> None:
    if (
        config is not None
        and not config.precompute_ref_log_probs
        and any(has_ref_columns(d) for d in datasets_)
    ):
        warnings.warn(
            "the dataset has precomputed reference columns but precompute_ref_log_probs=False: TRL ignores them "
            "and loads a reference model; set DPOConfig(precompute_ref_log_probs=True)",
            PrefkitWarning,
            stacklevel=3,
        )


def _nothing_to_compute(config: Any, datasets_: list[Any]) -> bool:
    """Every dataset carries the columns and TRL will use them: its weight hash (a cache key) is not needed."""
    return (
        config is not None
        and config.precompute_ref_log_probs
        and getattr(config, "ld_alpha", None) is None
        and all(has_ref_columns(d) for d in datasets_)
    )


def _refuse(trainer: Any, problems: list[tuple[str, str]]) -> None:
    """Raise on what makes the stored values wrong (``prefkit_strict=False``: warn instead)."""
    from prefkit.reflogps.provenance import ReferenceMismatchError

    for message, fix in problems:
        if trainer._prefkit_strict:
            raise ReferenceMismatchError(f"prefkit reference log-probs: {message}. Fix: {fix}")
        warnings.warn(f"prefkit reference log-probs: {message}", PrefkitWarning, stacklevel=4)


def _check_setup(trainer: Any) -> None:
    """After TRL's init, once the columns are in use: the installed TRL's rule, then the manifest's identity."""
    import trl

    from prefkit.chat.tokenize import check_trl_rule

    manifest = trainer._prefkit_manifest
    section = (manifest or {}).get("reflogps") or {}
    found = check_trl_rule(section.get("trl_tokenization_rule"), trl.__version__)
    if found is not None and found[0] == "error":
        _refuse(trainer, [(found[1], _TRL_FIX)])
    elif found is not None:
        warnings.warn(f"prefkit reference log-probs: {found[1]}", PrefkitWarning, stacklevel=3)
    if manifest is None:
        return
    problems = check_against_manifest(
        manifest,
        model=trainer.model,
        tokenizer=trainer.processing_class,
        max_length=trainer.args.max_length,
        truncation_mode=getattr(trainer.args, "truncation_mode", "keep_start"),
    )
    fatal = [p for p in problems if p.startswith(FATAL)]
    _refuse(trainer, [(p, _MANIFEST_FIX) for p in fatal])
    for problem in problems:
        if problem not in fatal:
            warnings.warn(f"prefkit reference log-probs: {problem}", PrefkitWarning, stacklevel=3)


def _check_rows(trainer: Any, dataset: Any) -> None:
    """Every row's stored token counts against this trainer's own tokenization and truncation."""
    from prefkit.reflogps.provenance import check_rows, row_problems

    wanted = ["prompt_ids", "chosen_ids", "rejected_ids", *REF_COLUMNS, *TOKEN_COLUMNS, "id"]
    table = dataset.select_columns([c for c in wanted if c in dataset.column_names]).with_format("arrow")[:]
    max_length = trainer.args.max_length
    check = check_rows(table, max_length, getattr(trainer.args, "truncation_mode", "keep_start"))
    section = (trainer._prefkit_manifest or {}).get("reflogps") or {}
    _refuse(trainer, row_problems(check, section.get("max_length", "?"), max_length))


def _key_ld_alpha(trainer: Any) -> None:
    """TRL caches precomputed values by dataset and model hash only, but ``ld_alpha`` changes them: put it in the
    key, so values computed without it (or with another one) are never reused."""
    alpha = getattr(trainer, "ld_alpha", None)
    key = getattr(trainer, "_precompute_model_hash", None)
    if alpha is not None and isinstance(key, str) and ":ld_alpha=" not in key:
        trainer._precompute_model_hash = f"{key}:ld_alpha={alpha}"


def real_hash_module() -> Any:

    from trl.trainer import dpo_trainer as dpo_module

    return dpo_module.hash_module


def _eval_sets(eval_dataset: Any) -> list[Any]:
    if eval_dataset is None or isinstance(eval_dataset, str):
        return []
    if isinstance(eval_dataset, dict):
        return list(eval_dataset.values())
    return [eval_dataset]


def __getattr__(name: str) -> Any:
    global _CLASS
    if name == "PrecomputedRefDPOTrainer":
        if _CLASS is None:
            _CLASS = _make_class()
        return _CLASS
    raise AttributeError(f"module 'prefkit.trl' has no attribute {name!r}")
