"""`prefkit score`: its flags are generated from :class:`prefkit.reflogps.options.ScoreOptions`."""

from __future__ import annotations

import click

from prefkit.commands.common import command_line, model_command, run_job
from prefkit.commands.options import given


@model_command("score", click.argument("out", type=click.Path()))
def command(ctx, out, as_json, quiet, **flags):
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

    run_job(score, quiet, as_json, out, command=command_line(), **given(ctx, flags))
