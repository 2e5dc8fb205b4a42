"""`prefkit score`."""

from __future__ import annotations

import click

from prefkit.commands.common import given_load_options, scoring_model_options
from prefkit.commands.reflogps import run_job


@click.command("score", context_settings={"max_content_width": 100})
@click.argument("out", type=click.Path())
@scoring_model_options(
    help_suffix=" (a sequence-classification reward model with one label).",
    flag="--reward-model",
    short=None,
    dtype_note="",
    optional_model=True,
)
@click.option(
    "--judge",
    metavar="MODEL",
    help="Score every completion of a generated set with this LLM judge instead (judge_score; the model options "
    "apply to it).",
)
@click.option(
    "--rubric",
    metavar="NAME|FILE",
    help="The judge's rubric: ultrafeedback-overall (default: a 1-10 rating), pairwise (A/B, position swap), or "
    "a JSON file.",
)
@click.option(
    "--judge-max-new-tokens",
    type=click.IntRange(min=1),
    help="Longest judge answer, in tokens (default: the rubric's, 512); a cut answer without a score is counted.",
)
@click.option(
    "--max-length",
    type=click.IntRange(min=1),
    help="Longest text scored, in the reward model's tokens: a pair whose prompt+answer is longer gets nulls and "
    "is counted (never truncated: a cut answer would get a wrong score). Default: the model's context length.",
)
@click.option(
    "--token-budget",
    type=click.IntRange(min=1),
    help="Tokens per forward batch (default: sized from free memory; halved and retried on out-of-memory).",
)
@click.option(
    "--no-prefix-sharing", is_flag=True, help="Score prompt+chosen and prompt+rejected in separate rows."
)
@click.option(
    "--shard-rows",
    type=click.IntRange(min=1),
    default=2048,
    show_default=True,
    help="Pairs per work shard (the unit of resume and of work a worker leases).",
)
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=0.5, max=86400),
    default=120.0,
    show_default=True,
    help="How long this worker's claim on a shard lasts without renewal (renewed while its scoring progresses); "
    "a killed or hung worker's shard is taken over by another after this long (any number of `prefkit score` "
    "processes sharing OUT split the work).",
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue an interrupted run from its finished shards (same options); --no-resume starts over.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Recompute when OUT already has the columns, and discard unfinished work from a run with other options.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
def command(
    out,
    model,
    revision,
    dtype,
    device,
    attn_implementation,
    chat_template,
    trust_remote_code,
    judge,
    rubric,
    judge_max_new_tokens,
    max_length,
    token_budget,
    no_prefix_sharing,
    shard_rows,
    lease_seconds,
    resume,
    overwrite,
    as_json,
    quiet,
    **load,
):
    """Score every pair of the set OUT with a reward model, and audit the labels against it.

    Adds rm_chosen / rm_rejected (float32: the reward model's score of prompt+answer rendered with its own
    chat template, read at the last non-padding token as transformers' *ForSequenceClassification reads it)
    and rm_margin = rm_chosen - rm_rejected to every data shard of OUT, and records the model, revision,
    weight/tokenizer/template hashes, dtype and max_length in OUT/prefkit.json (rm_scores). Pairs with a text
    longer than --max-length are left null and counted.

    The summary audits the labels: the share of pairs the reward model orders like the labels
    (rm_margin > 0), the disagreeing pairs' ids, and the Spearman correlation of rm_margin with the source's
    margin. rm_margin then selects pairs by reward margin.

    Work is saved in shards under OUT/.score-work; a killed run restarted with the same command resumes.
    Any number of processes (machines sharing OUT, torchrun ranks) lease shards; the one that finds the
    job finished merges.

    \b
    Examples:
      prefkit score hermes2k --reward-model Skywork/Skywork-Reward-V2-Qwen3-0.6B
      prefkit score hermes2k --reward-model ./my-rm --max-length 4096 --dtype bfloat16 --json
      prefkit score hermes2k --reward-model ./base-rm --chat-template chatml --overwrite
      torchrun --nproc-per-node 8 -m prefkit score hermes2k --reward-model ./my-rm
      prefkit score gen --reward-model ./my-rm                     # a generated set: rm_score per completion
      prefkit score gen --judge ./my-judge --rubric pairwise       # judge_score per completion
    """
    from prefkit.rewards.score import score

    run_job(
        score,
        quiet,
        as_json,
        out_dir=out,
        reward_model=model,
        judge=judge,
        rubric=rubric,
        judge_max_new_tokens=judge_max_new_tokens,
        revision=revision,
        dtype=dtype,
        device=device,
        attn_implementation=attn_implementation,
        max_length=max_length,
        token_budget=token_budget,
        prefix_sharing=not no_prefix_sharing,
        shard_rows=shard_rows,
        lease_seconds=lease_seconds,
        resume=resume,
        overwrite=overwrite,
        chat_template=chat_template,
        trust_remote_code=trust_remote_code,
        **given_load_options(load),
    )
