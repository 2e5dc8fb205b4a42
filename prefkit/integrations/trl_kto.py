"""Train TRL's ``KTOTrainer`` on prefkit's precomputed ``ref_logps`` / ``ref_KL_logps``, without a reference model.

``prefkit reflogps`` on a KTO set (``prompt`` / ``completion`` / ``label``) writes the values TRL's
``KTOTrainer(precompute_ref_log_probs=True)`` computes. Like ``DPOTrainer``, TRL never uses such columns itself;
:class:`PrecomputedRefKTOTrainer` (imported as ``prefkit.trl.PrecomputedRefKTOTrainer``) does::

    from prefkit.trl import PrecomputedRefKTOTrainer
    from trl import KTOConfig

    trainer = PrecomputedRefKTOTrainer(
        model=model, ref_model=None, processing_class=tokenizer,
        args=KTOConfig(precompute_ref_log_probs=True, per_device_train_batch_size=8, max_length=1024, ...),
        train_dataset=load_dataset("kto-set")["train"],
        prefkit_manifest="kto-set",   # optional: also checks tokenizer, template, max_length, batch size
    )

``ref_KL_logps`` belongs to the KL completion TRL pairs each row with: the completion of the row before it within
its batch of ``per_device_train_batch_size`` rows, in dataset order. The trainer therefore checks every row (the
stored ``KL_completion_hash`` and token counts against the ``KL_completion_ids`` TRL built), refuses a sampler
other than sequential and ``auto_find_batch_size`` (which changes the batch size mid-run), and with a manifest
compares the batch size too. Under several processes each one takes whole consecutive batches of
``per_device_train_batch_size`` rows (accelerate's default ``split_batches=False``), which is what TRL pairs within.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pyarrow.compute as pc

from prefkit.chat.trl_rules import check_kto_release
from prefkit.integrations.checks import (
    FATAL,
    MANIFEST_FIX,
    PrefkitWarning,
    check_against_manifest,
    prefkit_state,
    refuse,
    scoring_section,
)
from prefkit.integrations.construct import (
    SKIPPED_HASH,
    trainer_arguments,
    weight_hash_skipped,
    without_columns,
)
from prefkit.reflogps.kto import ids_hash
from prefkit.store.manifest_model import Reflogps

KTO_REF_COLUMNS = ("ref_logps", "ref_KL_logps")
_KTO_FIX = (
    "train with the per_device_train_batch_size the set was scored with ({batch}) on its rows in their order "
    "(no shuffle/select/filter before the trainer, dataset_num_proc=None), or score it again for this trainer: "
    "`prefkit reflogps OUT --model M --per-device-train-batch-size {mine} --max-length {length} --overwrite`"
)
_CLASS: type | None = None


def has_kto_columns(dataset: Any) -> bool:
    """Whether a ``datasets.Dataset`` has both KTO reference columns."""
    return set(KTO_REF_COLUMNS) <= set(getattr(dataset, "column_names", None) or [])


def _make_class() -> type:
    from trl import KTOTrainer
    from trl.trainer import kto_trainer as kto_module


    class PrecomputedRefKTOTrainer(KTOTrainer):
        """``trl.KTOTrainer`` that uses ``ref_logps`` / ``ref_KL_logps`` columns when a dataset has both.

        Use with ``KTOConfig(precompute_ref_log_probs=True)`` and ``ref_model=None``: a dataset with the columns is
        used as is (no reference forward, no reference model, no weight hash), one without goes through TRL's own
        precompute. Raises :class:`~prefkit.reflogps.provenance.ReferenceMismatchError` at construction when a row
        would be trained with other completion tokens or another KL completion than the ones scored (other
        ``max_length``, tokenizer, template, ``per_device_train_batch_size``, row order), when it keeps rows
        without values, or with ``auto_find_batch_size``; at ``train()`` when the sampler is not sequential.
        ``prefkit_manifest`` (output folder, ``prefkit.json`` or dict) adds the tokenizer, template and batch-size
        checks; ``prefkit_strict=False`` turns the errors into warnings.
        """

        def __init__(
            self,
            *args: Any,
            prefkit_manifest: str | os.PathLike | dict | None = None,
            prefkit_strict: bool = True,
            **kwargs: Any,
        ):
            config, sets = trainer_arguments(KTOTrainer, self, args, kwargs)
            prefkit_state(self, prefkit_manifest, prefkit_strict)
            if config is not None and sets and any(has_kto_columns(d) for d in sets):
                _warn_ignored_columns(config)
                _check_config(self, config)
            precomputed = config is not None and config.precompute_ref_log_probs
            with weight_hash_skipped(kto_module, bool(precomputed and sets and all(map(has_kto_columns, sets)))):
                super().__init__(*args, **kwargs)
            if self._prefkit_used_columns:
                _check_setup(self)

        def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
            if has_kto_columns(dataset):
                _check_rows(self, dataset, name)
                self._prefkit_used_columns = True
                return dataset
            dataset = without_columns(dataset, KTO_REF_COLUMNS)
            if getattr(self, "_precompute_model_hash", None) == SKIPPED_HASH:
                self._precompute_model_hash = kto_module.hash_module(self.ref_model or self.model)  # type: ignore[arg-type]
            return super()._precompute_ref_logps(dataset, name, batch_size)

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            from torch.utils.data import SequentialSampler

            sampler = super()._get_train_sampler(train_dataset)
            if self._prefkit_used_columns and self.calculate_KL and not isinstance(sampler, SequentialSampler):
                _refuse_sampler(self, sampler)
            return sampler

    PrecomputedRefKTOTrainer.__module__ = "prefkit.integrations.trl"
    return PrecomputedRefKTOTrainer


def _warn_ignored_columns(config: Any) -> None:
    if not config.precompute_ref_log_probs:
        warnings.warn(
            "the dataset has precomputed KTO reference columns but precompute_ref_log_probs=False: TRL "
            "ignores them and loads a reference model; set KTOConfig(precompute_ref_log_probs=True)",
            PrefkitWarning,
            stacklevel=3,
        )


def _refuse_sampler(trainer: Any, sampler: Any) -> None:
    refuse(
        trainer,
        [
            (
                f"the training sampler is {type(sampler).__name__}, not sequential: batches would hold "
                "other rows than the ones ref_KL_logps was computed for",
                "train with KTOConfig(train_sampling_strategy='sequential') (TRL's default for KTO)",
            )
        ],
    )


def kto_class() -> type:
    """``PrecomputedRefKTOTrainer``, built on first use (imports TRL)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _make_class()
    return _CLASS


def _section(trainer: Any) -> Reflogps:
    return scoring_section(trainer._prefkit_manifest)


def _check_config(trainer: Any, config: Any) -> None:
    """Before TRL's init: settings that would pair other rows than the scoring run did."""

    problems = []
    if getattr(config, "auto_find_batch_size", False):
        problems.append(
            (
                "auto_find_batch_size=True may lower per_device_train_batch_size during training, and then the "
                "batches pair other completions than the ones ref_KL_logps was computed for",
                "set auto_find_batch_size=False and a per_device_train_batch_size that fits",
            )
        )
    kto = _section(trainer).kto
    scored = kto.per_device_train_batch_size if kto else None
    if scored is not None and scored != config.per_device_train_batch_size:
        problems.append(
            (
                f"per_device_train_batch_size={config.per_device_train_batch_size}, but the set's ref_KL_logps were "
                f"computed for batches of {scored} rows (TRL pairs each row with a completion of its batch)",
                _fix(trainer, config),
            )
        )
    refuse(trainer, problems)


def _fix(trainer: Any, config: Any) -> str:
    kto = _section(trainer).kto
    return _KTO_FIX.format(
        batch=kto.get("per_device_train_batch_size", "recorded in prefkit.json")
        if kto
        else "recorded in prefkit.json",
        mine=config.per_device_train_batch_size,
        length=config.max_length,
    )


def _check_setup(trainer: Any) -> None:
    """After TRL's init: the installed TRL against the releases checked, then the manifest's identity."""
    import trl


    found = check_kto_release(trl.__version__)
    if found is not None:
        warnings.warn(f"prefkit reference log-probs: {found}", PrefkitWarning, stacklevel=3)
    manifest = trainer._prefkit_manifest
    if manifest is None:
        return
    problems = check_against_manifest(
        manifest, tokenizer=trainer.processing_class, max_length=trainer.args.max_length
    )
    fatal = [p for p in problems if p.startswith(FATAL)]
    refuse(trainer, [(p, MANIFEST_FIX) for p in fatal])
    for problem in problems:
        if problem not in fatal:
            warnings.warn(f"prefkit reference log-probs: {problem}", PrefkitWarning, stacklevel=3)


def check_kto_rows(table: Any, max_length: int | None) -> dict:
    """Compare TRL's tokenization of KTO rows (``prompt_ids``, ``completion_ids``, and ``KL_completion_ids`` when
    TRL estimates the KL term) with the stored ``completion_tokens``, ``KL_completion_tokens`` and
    ``KL_completion_hash``. Returns ``{"rows", "nulls", "mismatched", "kl_mismatched", "example"}``."""


    def lengths(name: str) -> np.ndarray:
        return pc.list_value_length(table.column(name)).to_numpy(zero_copy_only=False).astype(np.int64)

    def stored(name: str) -> np.ndarray:
        return table.column(name).to_numpy(zero_copy_only=False).astype(float)

    names = set(table.column_names)
    kl = "KL_completion_ids" in names
    nulls = table.column("ref_logps").is_null().to_numpy(zero_copy_only=False)
    if kl:
        nulls |= table.column("ref_KL_logps").is_null().to_numpy(zero_copy_only=False)
    out: dict[str, Any] = {
        "rows": table.num_rows,
        "nulls": int(nulls.sum()),
        "mismatched": 0,
        "kl_mismatched": 0,
    }
    out["example"] = None
    if not table.num_rows or "completion_tokens" not in names:
        return out
    p = lengths("prompt_ids")
    room = None if max_length is None else np.maximum(max_length - p, 0)

    def want(full: np.ndarray) -> np.ndarray:
        return full if room is None else np.minimum(full, room)

    bad = ~nulls & (stored("completion_tokens") != want(lengths("completion_ids")))
    kl_bad = np.zeros_like(bad)
    if kl and {"KL_completion_tokens", "KL_completion_hash"} <= names:
        kl_bad = ~nulls & (stored("KL_completion_tokens") != want(lengths("KL_completion_ids")))
        hashes = np.array(
            [ids_hash(ids) for ids in table.column("KL_completion_ids").to_pylist()], dtype=np.int64
        )
        have = table.column("KL_completion_hash").fill_null(0).to_numpy(zero_copy_only=False)
        kl_bad |= ~nulls & (hashes != have)
    out["mismatched"], out["kl_mismatched"] = int(bad.sum()), int((kl_bad & ~bad).sum())
    if (bad | kl_bad).any():
        i = int(np.argmax(bad | kl_bad))
        what = "completion" if bad[i] else "KL completion (another row's completion)"
        out["example"] = f"row {i}: its {what} differs from the one scored"
    return out


def _check_rows(trainer: Any, dataset: Any, name: str) -> None:
    """Every row of a dataset with the columns against this trainer's own tokenization and KL pairing."""

    wanted = [
        "prompt_ids", "completion_ids", "KL_completion_ids", *KTO_REF_COLUMNS,
        "completion_tokens", "KL_completion_tokens", "KL_completion_hash",
    ]  # fmt: skip
    table = dataset.select_columns([c for c in wanted if c in dataset.column_names]).with_format("arrow")[:]
    check = check_kto_rows(table, trainer.args.max_length)
    recorded = _section(trainer).get("max_length")
    scored = "the scoring one" if recorded is None else recorded
    problems = []
    if check["nulls"]:
        problems.append(
            (
                f"{check['nulls']} of {check['rows']} rows of the {name} set have no reference values (their prompt "
                f"alone filled the scoring max_length, {scored}) but this trainer keeps them "
                f"(max_length={trainer.args.max_length})",
                f"train with max_length={scored}, or score again with the trainer's max_length (--overwrite)",
            )
        )
    if check["mismatched"]:
        problems.append(
            (
                f"{check['mismatched']} of {check['rows']} rows of the {name} set would be trained on other completion "
                f"tokens than the ones scored ({check['example']}): another max_length (scored with {scored}), "
                "tokenizer or chat template",
                f"train with max_length={scored} and the scoring tokenizer, or score again (--overwrite)",
            )
        )
    if check["kl_mismatched"]:
        problems.append(
            (
                f"{check['kl_mismatched']} of {check['rows']} rows of the {name} set are paired with another KL "
                f"completion than the one ref_KL_logps was computed for ({check['example']}): another "
                "per_device_train_batch_size, another row order, or rows removed/added before the trainer",
                _fix(trainer, trainer.args),
            )
        )
    refuse(trainer, problems)
