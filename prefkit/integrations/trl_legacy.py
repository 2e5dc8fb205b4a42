"""``PrecomputedRefDPOTrainer`` under TRL <= 0.28 (checked: 0.24, LLaMA-Factory's and Unsloth's cap).

Those releases precompute in ``get_train_dataloader`` / ``get_eval_dataloader`` (and then add the columns, failing on
ones already there) unless ``_precomputed_train_ref_log_probs`` / ``_precomputed_eval_ref_log_probs`` is set. With the
columns in the dataset the trainer sets them, so the stored values are used and no reference forward runs. The values
must follow the ``trl-0.24`` profile (:mod:`prefkit.chat.trl_rules`), which reproduces 0.24's default
``max_prompt_length`` (512), ``max_completion_length`` (None) and ``truncation_mode`` (``keep_end``): other values,
and IPO (whose reference values 0.24 stores as means), are refused.
"""

from __future__ import annotations

from typing import Any

from prefkit.chat.trl_rules import LEGACY_DEFAULTS
from prefkit.integrations.checks import has_ref_columns, refuse


def use_columns(trainer: Any) -> None:
    """After TRL's ``__init__``: use the datasets' columns (train, and the eval set when it has them) and check the
    settings the values depend on; ``trainer._prefkit_used_columns`` says whether any set is used."""

    args = trainer.args
    if not args.precompute_ref_log_probs:
        return
    evals = trainer.eval_dataset
    sets = list(evals.values()) if isinstance(evals, dict) else [evals] if evals is not None else []
    if has_ref_columns(trainer.train_dataset):
        trainer._precomputed_train_ref_log_probs = True
        trainer._prefkit_used_columns = True
    if sets and all(has_ref_columns(d) for d in sets):
        trainer._precomputed_eval_ref_log_probs = True
        trainer._prefkit_used_columns = True
    if not trainer._prefkit_used_columns:
        return
    fix = "train with TRL 0.24's defaults, or score with the rule of the TRL you train with (--trl-rule)"
    problems = [
        (
            f"{name}={getattr(args, name, None)!r}, but the trl-0.24 profile's values follow {name}={want!r}",
            fix,
        )
        for name, want in LEGACY_DEFAULTS.items()
        if getattr(args, name, want) != want
    ]
    if "ipo" in list(getattr(args, "loss_type", None) or []):
        problems.append(
            (
                "loss_type includes 'ipo', for which TRL <= 0.28 stores length-averaged reference log-probs; the "
                "set holds sums",
                "train without IPO, or let TRL precompute (drop the columns)",
            )
        )
    refuse(trainer, problems)
