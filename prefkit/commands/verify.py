"""`prefkit verify`: its flags are generated from :class:`prefkit.reflogps.options.VerifyOptions`."""

from __future__ import annotations

import sys

import click

from prefkit.commands.common import model_command, run_job
from prefkit.commands.options import given


@model_command(
    "verify",
    click.argument("out", type=click.Path()),
    (
        click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar and no report on stderr."),
    ),
)
def command(ctx, out, as_json, quiet, **flags):
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
    from prefkit.reflogps.verify import verify

    report = run_job(verify, quiet, as_json, out, **given(ctx, flags))
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
