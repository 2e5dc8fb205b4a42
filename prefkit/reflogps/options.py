"""What `reflogps` (:class:`ReflogpsOptions`) and `verify` (:class:`VerifyOptions`) can be told, as data: each made
of the model's (:class:`prefkit.loading.ModelOptions`), the job's (:class:`prefkit.jobs.options.JobOptions`, for
`reflogps`) and its own; the model flags every scoring command shares (:data:`MODEL_FLAGS`; `score`'s options:
:mod:`prefkit.rewards.options`).

Every option is declared once: type, default, bounds or choices, help. The same name is the library function's
keyword (``reflogps(out, model, shard_rows=512)``) and the command's flag (``--shard-rows 512``, generated from the
field by :mod:`prefkit.commands.options`); a command's class re-declares a shared field only where the command
means something of its own by it (`score`'s lease help names `prefkit score`, `verify`'s dtype defaults to the
recorded one).
"""

from __future__ import annotations

from prefkit.chat.trl_rules import PROFILES
from prefkit.jobs.options import JobOptions
from prefkit.loading import DTYPE_HELP, DTYPES, RUN_FLAGS, LoadOptions, ModelOptions
from prefkit.optionspec import CommandOptions, option

#: the model flags of every scoring command, in ``--help`` order (the quantization/adapter flags follow them)
MODEL_FLAGS = (*RUN_FLAGS, *LoadOptions.model_fields)
#: the help of a scoring command's model flag, after "Model: a local folder or a Hub model id"
MODEL_HELP = "Model: a local folder or a Hub model id"


class ReflogpsOptions(JobOptions, ModelOptions, CommandOptions):
    """Everything `prefkit reflogps` (:func:`prefkit.reflogps.job.reflogps`) can be told."""

    COMMAND = "reflogps"
    FLAGS = (
        "model",
        *MODEL_FLAGS,
        "max_length",
        "per_device_train_batch_size",
        "trl_rule",
        "token_budget",
        "prefix_sharing",
        "shard_rows",
        "lease_seconds",
        "merge_only",
        "resume",
        "overwrite",
        "allow_mismatch",
    )

    model: str | None = option(
        None,
        f"{MODEL_HELP} (the reference model).",
        decls=("-m", "--model"),
        metavar="MODEL",
        required=True,
    )
    dtype: str | None = option("auto", f"{DTYPE_HELP} (log-probs are summed in fp32).", choices=DTYPES)
    max_length: int | None = option(
        None,
        "TRL's DPOConfig.max_length: prompt+completion are truncated to it (keep_start); use your trainer's value. "
        "Default: the set's `build --max-length`, else TRL's default 1024.",
        ge=1,
    )
    per_device_train_batch_size: int | None = option(
        None,
        "KTO sets only: TRL's per_device_train_batch_size. KTOTrainer pairs each row with the completion of the "
        "row before it in its batch (in dataset order) for the KL term, so ref_KL_logps hold for this batch size "
        "and the set's order only; recorded in prefkit.json. Default: TRL's 8.",
        ge=1,
    )
    trl_rule: str | None = option(
        None,
        "The TRL release whose DPO tokenization rule the values follow: trl-1.16 (TRL 1.14.2 - 1.16), trl-1.8 "
        "(TRL 1.0 - 1.8, e.g. axolotl's trl==1.8.0), trl-0.24 (LLaMA-Factory's and Unsloth's trl<=0.24, with "
        "0.24's DPOConfig defaults: max_prompt_length 512, keep_end). Default: the installed TRL's. Recorded in "
        "prefkit.json; the trainer refuses another rule.",
        choices=tuple(PROFILES),
    )
    merge_only: bool = option(
        False,
        "Only merge: write the columns from a work folder whose shards are all finished (no model is loaded; "
        "--model must be the workers'). Workers merge by themselves; use this when none is left to do it.",
    )
    allow_mismatch: bool = option(
        False,
        "Score even when `build --tokenizer` recorded another tokenizer or chat template in OUT's manifest.",
    )


class VerifyOptions(ModelOptions, CommandOptions):
    """Everything `prefkit verify` (:func:`prefkit.reflogps.verify.verify`) can be told. The model and its
    options default to those ``prefkit.json`` recorded."""

    COMMAND = "verify"
    FLAGS = ("model", *MODEL_FLAGS, "sample", "seed", "split", "atol", "rtol", "max_length")

    model: str | None = option(
        None,
        f"{MODEL_HELP} (default: the one in OUT/prefkit.json).",
        decls=("-m", "--model"),
        metavar="MODEL",
    )
    dtype: str | None = option(
        None, f"{DTYPE_HELP} (log-probs are summed in fp32); default: the recorded one.", choices=DTYPES
    )
    sample: int = option(64, "Rows to recompute.", ge=1)
    seed: int = option(0, "Seed of the random sample.")
    split: str | None = option(None, "Only sample this split (default: all).")
    atol: float | None = option(
        None, "Absolute tolerance in nats (default: 1e-3 for float32, 0.5 for bf16/fp16)."
    )
    rtol: float | None = option(None, "Relative tolerance (default: 1e-4 for float32, 0.02 for bf16/fp16).")
    max_length: int | None = option(None, "Default: the recorded max_length.", ge=1)
    progress: bool = option(False, "Show a progress bar (the CLI does unless --quiet).", cli=False)
