"""What the sharded scoring commands can be told, as data: :class:`JobOptions` (the flags every sharded job takes:
shards, leases, resume, overwrite), and the whole options of `reflogps` (:class:`ReflogpsOptions`), `score`
(:class:`ScoreOptions`) and `verify` (:class:`VerifyOptions`), each made of the model's
(:class:`prefkit.loading.ModelOptions`), the job's and its own.

Every option is declared once: type, default, bounds or choices, help. The same name is the library function's
keyword (``reflogps(out, model, shard_rows=512)``) and the command's flag (``--shard-rows 512``, generated from the
field by :mod:`prefkit.commands.options`); a command's class re-declares a shared field only where the command
means something of its own by it (`score`'s lease help names `prefkit score`, `verify`'s dtype defaults to the
recorded one).
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from prefkit.chat.trl_rules import PROFILES
from prefkit.loading import DTYPE_HELP, DTYPES, LoadOptions, ModelOptions
from prefkit.options import CommandOptions, OptionGroup, option
from prefkit.reflogps.leases import (
    DEFAULT_LEASE_SECONDS,
    MAX_LEASE_SECONDS,
    MIN_LEASE_SECONDS,
    check_lease_seconds,
)
from prefkit.reflogps.plan import DEFAULT_SHARD_ROWS

#: the model flags of every scoring command, in ``--help`` order (the quantization/adapter flags follow them)
MODEL_FLAGS = (
    "revision",
    "dtype",
    "device",
    "attn_implementation",
    "chat_template",
    "trust_remote_code",
    *LoadOptions.model_fields,
)
#: the help of a scoring command's model flag, after "Model: a local folder or a Hub model id"
MODEL_HELP = "Model: a local folder or a Hub model id"


def lease_option(help: str) -> Any:
    """The ``lease_seconds`` field (a command whose workers are other processes words its help its own way)."""
    return option(DEFAULT_LEASE_SECONDS, help, ge=MIN_LEASE_SECONDS, le=MAX_LEASE_SECONDS)


def resume_option(help: str) -> Any:
    """The ``resume`` field: ``--resume/--no-resume``, on by default."""
    return option(True, help, decls=("--resume/--no-resume",))


class JobOptions(OptionGroup):
    """The flags every sharded job takes (`reflogps`, `score`, `generate`): how its rows are cut into shards,
    how long a worker's lease on one lasts, whether finished work is reused or replaced; and how the job reports
    (``progress``, the ``command`` line recorded in the manifest; Python keywords only)."""

    shard_rows: int = option(
        DEFAULT_SHARD_ROWS, "Pairs per work shard (the unit of resume and of work a worker leases).", ge=1
    )
    lease_seconds: float = lease_option(
        "How long this worker's claim on a shard lasts without renewal (renewed every quarter of it while its "
        "scoring progresses); a killed or hung worker's shard is taken over by another after this long. Keep it "
        "above the shared file system's attribute cache time and the time of one batch."
    )
    resume: bool = resume_option(
        "Continue from the finished shards (same options; also joins workers already running); --no-resume "
        "starts over (refused while live workers hold leases)."
    )
    overwrite: bool = option(
        False,
        "Recompute when OUT already has the columns, and discard unfinished work from a run with other options "
        "(refused while live workers hold leases in it).",
    )
    progress: bool = option(False, "Show a progress bar (the CLI does unless --quiet).", cli=False)
    command: str | None = option(None, "The command line, recorded in the manifest.", cli=False)

    @field_validator("lease_seconds", mode="before")
    @classmethod
    def _lease(cls, value: Any) -> Any:
        return check_lease_seconds(value)


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


class ScoreOptions(JobOptions, ModelOptions, CommandOptions):
    """Everything `prefkit score` (:func:`prefkit.reflogps.score.score`) can be told: a reward model, or an LLM
    judge and its rubric for a generated set."""

    COMMAND = "score"
    FLAGS = (
        "reward_model",
        *MODEL_FLAGS,
        "judge",
        "rubric",
        "judge_max_new_tokens",
        "max_length",
        "token_budget",
        "prefix_sharing",
        "shard_rows",
        "lease_seconds",
        "resume",
        "overwrite",
    )

    reward_model: str | None = option(
        None, f"{MODEL_HELP} (a sequence-classification reward model with one label).", metavar="MODEL"
    )
    dtype: str | None = option("auto", f"{DTYPE_HELP}.", choices=DTYPES)
    judge: str | None = option(
        None,
        "Score every completion of a generated set with this LLM judge instead (judge_score; the model options "
        "apply to it).",
        metavar="MODEL",
    )
    rubric: str | None = option(
        None,
        "The judge's rubric: ultrafeedback-overall (default: a 1-10 rating), pairwise (A/B, position swap), or a "
        "JSON file.",
        metavar="NAME|FILE",
    )
    judge_max_new_tokens: int | None = option(
        None,
        "Longest judge answer, in tokens (default: the rubric's, 512); a cut answer without a score is counted.",
        ge=1,
    )
    max_length: int | None = option(
        None,
        "Longest text scored, in the reward model's tokens: a pair whose prompt+answer is longer gets nulls and is "
        "counted (never truncated: a cut answer would get a wrong score). Default: the model's context length.",
        ge=1,
    )
    prefix_sharing: bool = option(
        True, "Score prompt+chosen and prompt+rejected in separate rows.", decls=("--no-prefix-sharing",)
    )
    lease_seconds: float = lease_option(
        "How long this worker's claim on a shard lasts without renewal (renewed while its scoring progresses); a "
        "killed or hung worker's shard is taken over by another after this long (any number of `prefkit score` "
        "processes sharing OUT split the work)."
    )
    resume: bool = resume_option(
        "Continue an interrupted run from its finished shards (same options); --no-resume starts over."
    )
    overwrite: bool = option(
        False,
        "Recompute when OUT already has the columns, and discard unfinished work from a run with other options.",
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
