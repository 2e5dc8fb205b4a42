"""`prefkit verify`."""

from __future__ import annotations

import sys

import click

from prefkit.commands.common import echo_json, given_load_options, scoring_model_options


@click.command("verify", context_settings={"max_content_width": 100})
@click.argument("out", type=click.Path())
@scoring_model_options(required=False, help_suffix=" (default: the one in OUT/prefkit.json).")
@click.option(
    "--sample", type=click.IntRange(min=1), default=64, show_default=True, help="Rows to recompute."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random sample.")
@click.option("--split", help="Only sample this split (default: all).")
@click.option(
    "--atol", type=float, help="Absolute tolerance in nats (default: 1e-3 for float32, 0.5 for bf16/fp16)."
)
@click.option(
    "--rtol", type=float, help="Relative tolerance (default: 1e-4 for float32, 0.02 for bf16/fp16)."
)
@click.option("--max-length", type=click.IntRange(min=1), help="Default: the recorded max_length.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no report on stderr.")
def command(
    out,
    model,
    revision,
    dtype,
    device,
    attn_implementation,
    chat_template,
    trust_remote_code,
    sample,
    seed,
    split,
    atol,
    rtol,
    max_length,
    as_json,
    quiet,
    **load,
):
    """Recompute a random sample of OUT's reference log-probs the plain way and report the largest difference.

    The plain path runs one full forward per sequence (no packing, no prefix sharing, no chunked LM head),
    so it checks the fast engine end to end: tokenization, values and token counts. Exits with status 1
    when a value is off by more than atol + rtol * |value|, or a token count or a null differs.

    \b
    Examples:
      prefkit verify hermes2k                          # model, dtype, max_length from OUT/prefkit.json
      prefkit verify hermes2k --model ./my-sft-model --sample 64
      prefkit verify hermes2k --sample 256 --seed 1 --rtol 1e-3 --json
    """
    from prefkit.commands.reflogps import _quiet_transformers
    from prefkit.progress import enabled
    from prefkit.reflogps.verify import verify

    show = enabled(quiet)
    _quiet_transformers(quiet or not show)
    report = verify(
        out,
        model,
        sample=sample,
        seed=seed,
        split=split,
        atol=atol,
        rtol=rtol,
        revision=revision,
        dtype=dtype,
        device=device,
        attn_implementation=attn_implementation,
        chat_template=chat_template,
        trust_remote_code=trust_remote_code,
        max_length=max_length,
        progress=show,
        **given_load_options(load),
    )
    if as_json:
        echo_json(report.to_dict())
    if not quiet:
        click.echo(report.summary(), err=True)
    if not report.ok:
        found = (
            f"{report.failing} value(s) beyond tolerance, {report.token_mismatches} token count and "
            f"{report.null_mismatches} null mismatch(es)"
            if report.values_compared
            else f"no value to compare: all {report.rows_checked} sampled rows are null"
        )
        click.echo(f"Error: {found}", err=True)
        click.echo(f"Hint: {report.hint}", err=True)
        sys.exit(1)  # (click's non-standalone main would swallow a ctx.exit code)
