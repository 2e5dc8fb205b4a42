"""`prefkit reflogps`: its flags are generated from :class:`prefkit.reflogps.options.ReflogpsOptions`."""

from __future__ import annotations

import click

from prefkit.commands.common import command_line, model_command, run_job
from prefkit.commands.options import given


@model_command("reflogps", click.argument("out", type=click.Path()))
def command(ctx, out, as_json, quiet, **flags):
    """Precompute the reference model's log-probs, exactly as TRL's DPOTrainer would, into the set OUT.

    Adds ref_chosen_logps / ref_rejected_logps (float32: the summed log-probs of the completion tokens after
    TRL's tokenization and max_length truncation) and chosen_tokens / rejected_tokens (int32) to every data
    shard of OUT, and records the model, revision, weight/tokenizer/template hashes, dtype and max_length in
    OUT/prefkit.json. Train on the result with prefkit.trl.PrecomputedRefDPOTrainer: no reference model is
    loaded during training. Rows whose prompt alone reaches --max-length (TRL drops them) are counted and
    left null.

    A KTO set (--export kto: prompt / completion / label) gets KTOTrainer's ref_logps / ref_KL_logps instead;
    train on it with prefkit.trl.PrecomputedRefKTOTrainer and the same --per-device-train-batch-size.

    Work is saved in shards under OUT/.reflogps-work; a killed run restarted with the same command resumes.
    Any number of these commands (on machines that share OUT, or torchrun ranks) work together: each leases
    unfinished shards, a killed worker's shard is taken over when its lease expires (--lease-seconds), and the
    worker that sees every shard finished writes the result.

    \b
    Examples:
      prefkit reflogps hermes2k --model ./my-sft-model
      prefkit reflogps hermes2k --model Qwen/Qwen2.5-0.5B-Instruct --dtype bfloat16 --max-length 2048
      prefkit reflogps hermes2k --model ./base --chat-template ./chatml.jinja --overwrite
      prefkit reflogps hermes2k --model ./base --load-in-4bit --bnb-4bit-use-double-quant   # QLoRA's reference
      prefkit reflogps hermes2k --model ./base --adapter ./my-sft-lora      # a PeftModel's "ref" adapter copy
      torchrun --nproc-per-node 8 -m prefkit reflogps hermes2k --model ./my-sft-model
      prefkit reflogps /shared/hermes2k --model /shared/my-sft -q    # on many nodes at once: they share the work
      prefkit reflogps /shared/hermes2k --model /shared/my-sft --merge-only
      prefkit verify hermes2k --sample 64        # then check a sample against the plain computation
      prefkit reflogps kto-set --model ./my-sft-model --per-device-train-batch-size 8
      prefkit reflogps hermes2k --model ./my-sft-model --trl-rule trl-1.8    # for axolotl (trl==1.8.0)
    """
    from prefkit.reflogps.job import reflogps

    run_job(reflogps, quiet, as_json, out, command=command_line(), **given(ctx, flags))
