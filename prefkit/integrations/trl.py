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
class also skips TRL's SHA-256 over all weights when every dataset carries the columns (with ``prefkit_manifest``
it hashes the base model's weight files instead, to compare them with the scoring run: free for a Hub-cache model,
whose blobs are named by their SHA-256; one read of the files for a local folder). ``trl`` is imported
when the class is first used, so ``import prefkit`` and ``import prefkit.trl`` do not need it.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from prefkit.chat.tokenize import check_trl_rule
from prefkit.errors import require
from prefkit.integrations.checks import (
    FATAL,
    MANIFEST_FIX,
    REF_COLUMNS,
    PrefkitWarning,
    base_weights_hash,
    check_against_manifest,
    has_ref_columns,
    load_manifest,
    prefkit_state,
    refuse,
    scoring_section,
)
from prefkit.integrations.construct import (
    SKIPPED_HASH,
    eval_sets,
    trainer_arguments,
    weight_hash_skipped,
    without_columns,
)
from prefkit.integrations.trl_kto import kto_class
from prefkit.integrations.trl_legacy import use_columns
from prefkit.loading import record_flags
from prefkit.reflogps.provenance import check_rows, row_problems
from prefkit.store.manifest_model import Reflogps

TOKEN_COLUMNS = ("chosen_tokens", "rejected_tokens")
#: Placeholder for TRL's weight hash while every dataset has precomputed columns (computed lazily if needed).

__all__ = [
    "FULL_PRECISION_TAG",
    "PrecomputedRefDPOTrainer",  # noqa: F822 - built on first access (module __getattr__), so trl loads lazily
    "PrecomputedRefKTOTrainer",  # noqa: F822 - the same, from prefkit.integrations.trl_kto
    "PrefkitWarning",
    "base_weights_hash",
    "check_against_manifest",
    "has_ref_columns",
    "load_manifest",
]


_TRL_FIX = (
    "install the TRL the values were computed for (pip install 'trl>=1.14.2'; docs/reflogps.md lists how TRL "
    "releases tokenize), or score the set again under this TRL's rule with the matching prefkit"
)
#: the model card tag of a QLoRA run trained on full-precision references (``prefkit_full_precision_reference``)
FULL_PRECISION_TAG = "prefkit-full-precision-reference"


_CLASS: type | None = None


def _make_class() -> type:
    require("trl", "prefkit.trl.PrecomputedRefDPOTrainer")  # DependencyError naming prefkit[trl]
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
        identity: another tokenizer, chat template, base weights (by the hash of the weight files), quantization
        or reference adapter (by the hash of its tensors) raises too, naming what differs and the fix; another
        ``max_length`` that changes no row is a :class:`PrefkitWarning`. ``prefkit_full_precision_reference=True``
        accepts a set scored at full precision for a quantized model (QLoRA trained on references scored on a
        bigger machine): a deliberate choice, kept in ``trainer.prefkit_reference`` and tagged
        ``prefkit-full-precision-reference`` in the model card. ``prefkit_strict=False`` turns the errors into
        warnings.

        ``evaluate(dataset)`` (or a dict of datasets) after training uses the datasets' stored columns too, where
        TRL would raise "Cannot compute reference log-probs" (no reference model is kept).
        """

        def __init__(
            self,
            *args: Any,
            prefkit_manifest: str | os.PathLike | dict | None = None,
            prefkit_strict: bool = True,
            prefkit_full_precision_reference: bool = False,
            **kwargs: Any,
        ):
            config, datasets_ = trainer_arguments(DPOTrainer, self, args, kwargs)
            _warn_ignored_columns(config, datasets_)
            prefkit_state(self, prefkit_manifest, prefkit_strict)
            self._prefkit_full_precision_reference = prefkit_full_precision_reference
            self.prefkit_reference: dict = {}
            with weight_hash_skipped(dpo_module, _nothing_to_compute(config, datasets_)):
                super().__init__(*args, **kwargs)
            if not hasattr(DPOTrainer, "_precompute_ref_logps"):  # TRL <= 0.28 precomputes in get_*_dataloader
                use_columns(self)
            if self._prefkit_used_columns:
                _check_setup(self)

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
            dataset = without_columns(dataset, REF_COLUMNS)
            if getattr(self, "_precompute_model_hash", None) == SKIPPED_HASH:  # a dataset without columns
                self._precompute_model_hash = real_hash_module()(self.ref_model or self.model)
            _key_ld_alpha(self)
            return super()._precompute_ref_logps(dataset, name, batch_size)

        def evaluate(
            self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval"
        ) -> dict[str, float]:
            sets = eval_sets(eval_dataset)
            if not sets or not _nothing_to_compute(self.args, sets):
                return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            return _evaluate_with_columns(self, eval_dataset, ignore_keys, metric_key_prefix)

    PrecomputedRefDPOTrainer.__module__ = __name__
    return PrecomputedRefDPOTrainer


def _evaluate_with_columns(trainer: Any, eval_dataset: Any, ignore_keys: Any, metric_key_prefix: str) -> dict:
    """``evaluate`` on datasets that carry the reference columns: the stored columns are the reference, so no
    reference model is needed, before or after training."""
    from transformers import Trainer

    named = eval_dataset if isinstance(eval_dataset, dict) else {None: eval_dataset}
    metrics: dict[str, float] = {}
    for name, dataset in named.items():
        prepared = trainer._prepare_dataset(dataset, trainer.processing_class, trainer.args, name or "eval")
        prepared = trainer._precompute_ref_logps(prepared, name or "eval", 0)
        prefix = f"{metric_key_prefix}_{name}" if name is not None else metric_key_prefix
        metrics.update(Trainer.evaluate(trainer, prepared, ignore_keys, prefix))
    return metrics


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


def _check_setup(trainer: Any) -> None:
    """After TRL's init, once the columns are in use: the installed TRL's rule, then the manifest's identity."""
    import trl


    manifest = trainer._prefkit_manifest
    section = scoring_section(manifest)
    found = check_trl_rule(section.trl_tokenization_rule, trl.__version__)
    if found is not None and found[0] == "error":
        refuse(trainer, [(found[1], _TRL_FIX)])
    elif found is not None:
        warnings.warn(f"prefkit reference log-probs: {found[1]}", PrefkitWarning, stacklevel=3)
    if manifest is None:
        if _loaded_specially(trainer.model):
            warnings.warn(
                "prefkit reference log-probs: the model is quantized or carries an adapter, and without "
                "prefkit_manifest the trainer cannot check that the set was scored with the same setup; pass "
                "prefkit_manifest=OUT",
                PrefkitWarning,
                stacklevel=3,
            )
        return
    problems = check_against_manifest(
        manifest,
        model=trainer.model,
        tokenizer=trainer.processing_class,
        max_length=trainer.args.max_length,
        truncation_mode=getattr(trainer.args, "truncation_mode", "keep_start"),
    )
    problems = _full_precision_choice(trainer, section, problems)
    fatal = [p for p in problems if p.startswith(FATAL)]
    refuse(trainer, [(p, _fix(p, section)) for p in fatal])
    for problem in problems:
        if problem not in fatal:
            warnings.warn(f"prefkit reference log-probs: {problem}", PrefkitWarning, stacklevel=3)


def _loaded_specially(model: Any) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(
        getattr(getattr(base, "config", None), "quantization_config", None) or hasattr(model, "peft_config")
    )


def _full_precision_choice(trainer: Any, section: Reflogps, problems: list[str]) -> list[str]:
    """``prefkit_full_precision_reference=True``: a set scored at full precision is taken for a quantized model
    (the QLoRA recipe with references scored on a bigger machine), recorded in ``trainer.prefkit_reference`` and as
    a tag of the model card TRL writes; every other difference stands."""
    quant = [p for p in problems if p.startswith("the quantization")]
    trainer.prefkit_reference = {"quantization": section.quantization, "full_precision_choice": False}
    if not (trainer._prefkit_full_precision_reference and quant and not section.quantization):
        return problems
    trainer.prefkit_reference["full_precision_choice"] = True
    trainer._tag_names = [*trainer._tag_names, FULL_PRECISION_TAG]
    trainer.model.add_model_tags([FULL_PRECISION_TAG])
    warnings.warn(
        "prefkit reference log-probs: the set was scored at full precision and this model is quantized; trained "
        "on them as chosen (prefkit_full_precision_reference=True): step 0's loss is near, not exactly, ln 2",
        PrefkitWarning,
        stacklevel=4,
    )
    return [p for p in problems if p not in quant]


def _fix(problem: str, section: Reflogps) -> str:
    """How to resolve one fatal difference between the trainer's setup and the scoring run."""

    model = section.model or "MODEL"
    if problem.startswith("the model's weights"):
        return (
            f"train from the weights that scored the set ({model}, sha256 {str(section.weights_sha256)[:12]}),"
            " or score the set again with yours (`prefkit reflogps OUT --model YOUR_MODEL --overwrite`)"
        )
    if problem.startswith("the quantization"):
        recorded = record_flags(section.quantization)
        fix = (
            f"load the model as the set was scored ({recorded or 'full precision: no quantization_config'}), or "
            "score it again with the trainer's quantization (`prefkit reflogps OUT --model M --load-in-4bit ... "
            "--overwrite`, the trainer's BitsAndBytesConfig values)"
        )
        if not section.quantization:
            fix += "; to train a quantized model on these full-precision values on purpose, pass "
            fix += "prefkit_full_precision_reference=True"
        return fix
    if problem.startswith("the adapter"):
        return (
            "TRL's reference is a PeftModel's own adapter (its frozen 'ref' copy) or, with a peft_config, the base "
            "with no adapter: give the trainer the model the set was scored with, or score again with yours "
            "(`prefkit reflogps OUT --model BASE --adapter YOUR_ADAPTER --overwrite`; no --adapter for a "
            "peft_config)"
        )
    return MANIFEST_FIX


def _check_rows(trainer: Any, dataset: Any) -> None:
    """Every row's stored token counts against this trainer's own tokenization and truncation."""

    wanted = ["prompt_ids", "chosen_ids", "rejected_ids", *REF_COLUMNS, *TOKEN_COLUMNS, "id"]
    table = dataset.select_columns([c for c in wanted if c in dataset.column_names]).with_format("arrow")[:]
    max_length = trainer.args.max_length
    check = check_rows(table, max_length, getattr(trainer.args, "truncation_mode", "keep_start"))
    section = scoring_section(trainer._prefkit_manifest)
    refuse(trainer, row_problems(check, section.get("max_length", "?"), max_length))


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


def __getattr__(name: str) -> Any:
    global _CLASS
    if name == "PrecomputedRefDPOTrainer":
        if _CLASS is None:
            _CLASS = _make_class()
        return _CLASS
    if name == "PrecomputedRefKTOTrainer":
        return kto_class()
    raise AttributeError(f"module 'prefkit.trl' has no attribute {name!r}")
