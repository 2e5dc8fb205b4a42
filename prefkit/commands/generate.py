"""`prefkit generate`: its flags are generated from :class:`prefkit.generate.options.GenerateOptions`."""

from __future__ import annotations

import click

from prefkit.commands.common import command_line, model_command, run_job
from prefkit.commands.options import given


@model_command("generate", click.argument("source"))
def command(ctx, source, as_json, quiet, **flags):
    """Sample N completions per prompt of SOURCE from each --model, into a set build can pair.

    SOURCE is anything `prefkit build` reads (a Hub id, a file or folder, a prefkit set; any shape) or a
    prompt-only set (a `prompt` column of text or messages); each distinct prompt is rendered with the model's
    own chat template and generation prompt. OUT gets `prompt_id`, `prompt` and `completions` (UltraFeedback's
    names: `model`, `response`, plus `reasoning_content`, revision, sampling parameters, seed, finish_reason
    and token counts); prefkit.json records the engine, its version and the models' provenance.

    Each completion's seed derives from (--seed, prompt id, sample index): a killed run restarted with the same
    command resumes from its finished shards (OUT/.generate-work) and gives the same completions, and any number
    of workers with the same command (machines sharing OUT, torchrun ranks) share the work.

    \b
    Then score and pair:
      prefkit score OUT --reward-model RM                  # each completion gets rm_score
      prefkit build OUT --rating rm_score --pairs best-vs-worst -o pairs
      prefkit build OUT --chosen-from BIG --rejected-from SMALL -o delta   # delta pairs

    \b
    Examples:
      prefkit generate prompts.jsonl --model Qwen/Qwen3-0.6B -n 4 --temperature 0.8 -o gen
      prefkit generate HuggingFaceH4/ultrafeedback_binarized --split train_prefs --max-prompts 1000 \\
          --model Qwen/Qwen3-1.7B --model Qwen/Qwen3-0.6B -n 2 --chat-template-kwargs '{"enable_thinking": false}' -o gen
      torchrun --nproc-per-node 8 -m prefkit generate prompts.jsonl --model ./policy -n 8 -o /shared/gen
    """
    from prefkit.generate.job import generate

    flags = given(ctx, flags)
    if flags.get("top_k") == 0:  # --top-k 0 is the filter off, as when it is not given
        del flags["top_k"]
    run_job(generate, quiet, as_json, source, command=command_line(), **flags)
