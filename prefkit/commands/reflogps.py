"""`prefkit reflogps`."""

from __future__ import annotations

import os
from typing import Any

import click

from prefkit.commands.common import command_line, echo_json, given_load_options, scoring_model_options


@click.command("reflogps", context_settings={"max_content_width": 100})
@click.argument("out", type=click.Path())
@scoring_model_options(help_suffix=" (the reference model).")
@click.option(
    "--max-length",
    type=click.IntRange(min=1),
    help="TRL's DPOConfig.max_length: prompt+completion are truncated to it (keep_start); use your trainer's "
    "value. Default: the set's `build --max-length`, else TRL's default 1024.",
)
@click.option(
    "--per-device-train-batch-size",
    type=click.IntRange(min=1),
    help="KTO sets only: TRL's per_device_train_batch_size. KTOTrainer pairs each row with the completion of the "
    "row before it in its batch (in dataset order) for the KL term, so ref_KL_logps hold for this batch size and "
    "the set's order only; recorded in prefkit.json. Default: TRL's 8.",
)
@click.option(
    "--trl-rule",
    type=click.Choice(["trl-1.16", "trl-1.8", "trl-0.24"]),
    help="The TRL release whose DPO tokenization rule the values follow: trl-1.16 (TRL 1.14.2 - 1.16), trl-1.8 "
    "(TRL 1.0 - 1.8, e.g. axolotl's trl==1.8.0), trl-0.24 (LLaMA-Factory's and Unsloth's trl<=0.24, with 0.24's "
    "DPOConfig defaults: max_prompt_length 512, keep_end). Default: the installed TRL's. Recorded in "
    "prefkit.json; the trainer refuses another rule.",
)
@click.option(
    "--token-budget",
    type=click.IntRange(min=1),
    help="Tokens per forward batch (default: sized from free memory; halved and retried on out-of-memory).",
)
@click.option("--no-prefix-sharing", is_flag=True, help="Score prompt+chosen and prompt+rejected separately.")
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
    help="How long this worker's claim on a shard lasts without renewal (renewed every quarter of it while its "
    "scoring progresses); a killed or hung worker's shard is taken over by another after this long. Keep it above "
    "the shared file system's attribute cache time and the time of one batch.",
)
@click.option(
    "--merge-only",
    is_flag=True,
    help="Only merge: write the columns from a work folder whose shards are all finished (no model is loaded; "
    "--model must be the workers'). Workers merge by themselves; use this when none is left to do it.",
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue from the finished shards (same options; also joins workers already running); --no-resume "
    "starts over (refused while live workers hold leases).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Recompute when OUT already has the columns, and discard unfinished work from a run with other options "
    "(refused while live workers hold leases in it).",
)
@click.option(
    "--allow-mismatch",
    is_flag=True,
    help="Score even when `build --tokenizer` recorded another tokenizer or chat template in OUT's manifest.",
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
    max_length,
    per_device_train_batch_size,
    trl_rule,
    token_budget,
    no_prefix_sharing,
    shard_rows,
    lease_seconds,
    merge_only,
    resume,
    overwrite,
    allow_mismatch,
    as_json,
    quiet,
    **load,
):
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

    run_job(
        reflogps,
        quiet,
        as_json,
        out_dir=out,
        model=model,
        revision=revision,
        dtype=dtype,
        device=device,
        attn_implementation=attn_implementation,
        max_length=max_length,
        per_device_train_batch_size=per_device_train_batch_size,
        trl_rule=trl_rule,
        token_budget=token_budget,
        prefix_sharing=not no_prefix_sharing,
        shard_rows=shard_rows,
        lease_seconds=lease_seconds,
        merge_only=merge_only,
        resume=resume,
        overwrite=overwrite,
        chat_template=chat_template,
        trust_remote_code=trust_remote_code,
        allow_mismatch=allow_mismatch,
        **given_load_options(load),
    )


def run_job(job: Any, quiet: bool, as_json: bool, **options: Any) -> None:
    """Run a sharded scoring job (`reflogps`, `score`) with its progress bar unless ``quiet``, the command line
    recorded (redacted); under torchrun only rank 0 reports (``--json`` object on stdout, summary on stderr)."""
    from prefkit.progress import enabled

    show = enabled(quiet)
    _quiet_transformers(quiet or not show)
    result = job(progress=show, command=command_line(), **options)
    if int(os.environ.get("RANK", "0") or 0) != 0:  # torchrun: rank 0 reports
        return
    if as_json:
        echo_json(result.to_dict())
    if not quiet:
        click.echo(result.summary(), err=True)


def _quiet_transformers(quiet: bool) -> None:
    """Silence transformers' own progress bars and info logs (they write to stderr)."""
    if quiet:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:
            from transformers.utils import logging

            logging.disable_progress_bar()
            logging.set_verbosity_error()
        except ImportError:
            pass
