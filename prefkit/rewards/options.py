"""What `prefkit score` can be told (:class:`ScoreOptions`): the model's options
(:class:`prefkit.loading.ModelOptions`), the job's (:class:`prefkit.jobs.options.JobOptions`) and its own, each
declared once; its flags are generated from them."""

from __future__ import annotations

from prefkit.jobs.options import JobOptions, lease_option, resume_option
from prefkit.loading import DTYPE_HELP, DTYPES, ModelOptions
from prefkit.optionspec import CommandOptions, option
from prefkit.reflogps.options import MODEL_FLAGS, MODEL_HELP


class ScoreOptions(JobOptions, ModelOptions, CommandOptions):
    """Everything `prefkit score` (:func:`prefkit.rewards.score.score`) can be told: a reward model, or an LLM
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
