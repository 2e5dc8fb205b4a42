"""`prefkit score`."""

from __future__ import annotations

import click

from prefkit.commands.common import scoring_model_options
from prefkit.commands.reflogps import run_job


@click.command("score", context_settings={"max_content_width": 100})
@click.argument("out", type=click.Path(file_okay=False))
@scoring_model_options(
    help_suffix=" (a sequence-classification reward model with one label).",
    flag="--reward-model",
    short=None,
    dtype_note="",
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
    max_length,
    token_budget,
    no_prefix_sharing,
    shard_rows,
    lease_seconds,
    resume,
    overwrite,
    as_json,
    quiet,
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
    """
    from prefkit.reflogps.score import score

    run_job(
        score,
        quiet,
        as_json,
        render_summary,
        out_dir=out,
        reward_model=model,
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
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _rho(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def render_summary(s: dict) -> None:
    """The human summary on stderr: counts and the label audit per split, then the run."""
    err = lambda text="": click.echo(text, err=True)  # noqa: E731
    header = (
        f"{'split':<16} {'pairs':>9} {'scored':>9} {'null':>7} {'agree':>8} {'disagree':>9} {'spearman':>9}"
    )
    err(header)
    err("-" * len(header))
    audit = s["audit"]
    for name, a in [*audit["splits"].items(), ("all", audit["totals"])]:
        if name == "all" and len(audit["splits"]) < 2:
            continue
        err(
            f"{name:<16} {a['pairs']:>9,} {a['scored']:>9,} {a['nulls']:>7,} {_pct(a['agree_fraction']):>8} "
            f"{a['disagree']:>9,} {_rho(a['spearman']):>9}"
        )
    err()
    err("  agree: share of scored pairs with rm_margin > 0 (the reward model prefers the chosen answer)")
    err("  spearman: rank correlation of rm_margin with the source's margin ('-': no margin, or constant)")
    for reason, n in s["dropped"].items():
        why = f"a text is longer than --max-length {s['max_length']}" if reason == "too_long" else reason
        err(f"  null {reason}: {n:,} pairs ({why})")
    for name, a in audit["splits"].items():
        if a["disagree_ids"]:
            more = (
                f" (first {len(a['disagree_ids'])} of {a['disagree']:,})"
                if a["disagree_ids_truncated"]
                else ""
            )
            ids = ", ".join(str(i) for i in a["disagree_ids"][:5])
            err(f"  {name}: disagreeing ids{more}: {ids}{', ...' if a['disagree'] > 5 else ''}")
    shards = s["shards"]
    resumed = f", {shards['resumed']} of {shards['total']} shards resumed" if shards["resumed"] else ""
    rate = (
        f"{s['pairs_per_s']:,.1f} pairs/s, {s['tokens_per_s']:,.0f} tokens/s" if s.get("pairs_per_s") else ""
    )
    err()
    where = f"{s['reward_model']} ({s['dtype']}, {s['device']} x{s['world_size']})"
    if s.get("outcome") == "already_complete":
        err(f"{s['output']} already has the reward-model scores of {where} from this job: nothing to do")
        return
    err(f"wrote reward-model scores of {where} to {s['output']} in {s['seconds']:.1f}s ({rate}{resumed})")
