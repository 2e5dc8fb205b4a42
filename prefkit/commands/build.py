"""`prefkit build`."""

from __future__ import annotations

import click

from prefkit.commands.common import column_options, command_line, echo_json, render_counts, source_options


@click.command("build", context_settings={"max_content_width": 100})
@click.argument("sources", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(), help="Output folder to write (required unless --dry-run).")
@source_options
@column_options
@click.option(
    "--top",
    type=click.IntRange(min=1),
    help="Keep the N rows with the largest margin (stable sort, descending).",
)
@click.option("--min-margin", type=float, help="Drop rows whose margin is below this value.")
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    help="Keep at most N rows per split (the first N, or a seeded sample with --seed).",
)
@click.option("--seed", type=int, help="Seed for sampling (--max-rows).")
@click.option("--keep-ties", is_flag=True, help="Keep pairs whose margin is 0 (dropped by default).")
@click.option(
    "--keep-residue",
    is_flag=True,
    help="Keep rows whose text holds chat-template tokens (dropped by default).",
)
@click.option(
    "--full-rejects",
    is_flag=True,
    help="Copy every original column of every row not kept into rejects/ (by default: the columns the build "
    "read, and for rows not chosen by --top/--max-rows only source_index, reason and margin).",
)
@click.option("--overwrite", is_flag=True, help="Replace the output folder if it exists.")
@click.option("--dry-run", is_flag=True, help="Load, normalise and count, but write nothing.")
@click.option(
    "--token", envvar="HF_TOKEN", help="Hugging Face token (default: HF_TOKEN or your `hf auth login`)."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary table.")
def command(sources, output, splits, format_, dry_run, as_json, quiet, **options):
    """Load preference data, normalise it to prompt/chosen/rejected messages, validate, filter, and write a clean set.

    SOURCES is a Hub dataset id (`namespace/name`) or a local file (.parquet, .jsonl, .json, .csv) or folder.
    The shape is detected from the columns (`prefkit detect SOURCE` shows how); every row is kept, dropped with
    a reason or marked invalid with a reason, and the counts are in OUT/prefkit.json.

    \b
    Examples:
      prefkit build mlabonne/chatml-OpenHermes2.5-dpo-binarized-alpha --top 2000 -o hermes2k
      prefkit build HuggingFaceH4/ultrafeedback_binarized --split train_prefs --min-margin 1 -o uf
      prefkit build ./my_pairs.jsonl -o mine
      prefkit build Anthropic/hh-rlhf --data-dir helpful-base -o hh --json
      prefkit build data.parquet --prompt-col question --chosen-col good --rejected-col bad -o out
    """
    from prefkit.pipeline import build
    from prefkit.progress import enabled

    if not output and not dry_run:
        raise click.UsageError("missing -o/--output (or pass --dry-run to only count)")
    result = build(
        list(sources),
        None if dry_run else output,
        split=list(splits) or None,
        format=format_,
        progress=enabled(quiet),
        command=command_line(),
        **options,
    )
    if as_json:
        echo_json(result.summary())
    if not quiet:
        render_counts(result.manifest["splits"], result.seconds, None if dry_run else output)
