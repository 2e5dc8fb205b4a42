"""`prefkit build`."""

from __future__ import annotations

import click

from prefkit.commands.common import (
    column_options,
    command_line,
    echo_json,
    render_counts,
    source_options,
    target_options,
)


class SystemOption(click.Option):
    """``--system MODE [TEXT]``: after ``override`` or ``default`` the next argument is the text."""

    def add_to_parser(self, parser, ctx) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            opt = parser._long_opt.get(name) or parser._short_opt.get(name)
            if opt is None:
                continue
            original = opt.process

            def process(value, state, original=original):
                wants_text = isinstance(value, str) and value.strip().lower() in ("override", "default")
                if wants_text and state.rargs and not state.rargs[0].startswith("--"):
                    value = f"{value} {state.rargs.pop(0)}"
                original(value, state)

            opt.process = process


@click.command("build", context_settings={"max_content_width": 100})
@click.argument("sources", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(), help="Output folder to write (required unless --dry-run).")
@source_options
@column_options
@click.option(
    "--top",
    type=click.IntRange(min=1),
    help="Keep the N rows with the largest margin (stable sort, descending), per split of each source; "
    "with several sources, size each one with a weight (`SOURCE:2000`).",
)
@click.option("--min-margin", type=float, help="Drop rows whose margin is below this value.")
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    help="Keep at most N rows per split (the first N, or a seeded sample with --seed).",
)
@click.option(
    "--seed",
    type=int,
    help="Seed for sampling (--max-rows, source weights, --pairs best-vs-random, --test-size).",
)
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
@click.option(
    "--preset",
    help="Read every source with this known dataset's preset (`prefkit presets` lists them). Default: the preset "
    "whose id matches the source, else detection from the columns.",
)
@click.option(
    "--pairs",
    type=click.Choice(["best-vs-worst", "best-vs-next", "best-vs-random", "all-pairs"]),
    help="Ranked/rated sets (Nectar, UltraFeedback raw): how to make pairs. Equal scores never pair. "
    "best-vs-random is seeded by --seed.",
)
@click.option("--min-gap", type=float, help="Ranked/rated sets: smallest score (rank) gap a pair may have.")
@click.option(
    "--max-pairs-per-prompt",
    type=click.IntRange(min=1),
    help="Ranked/rated sets with --pairs all-pairs: keep the N largest-gap pairs per prompt.",
)
@click.option(
    "--rating",
    type=click.Choice(["overall", "aspects"]),
    help="UltraFeedback raw: rate completions by overall_score (default) or the mean of the aspect ratings.",
)
@click.option(
    "--axis",
    type=click.Choice(["better", "safer", "both"]),
    help="PKU-SafeRLHF: orient by better_response_id (default) or safer_response_id; `both` keeps only rows "
    "where they agree. Disagreeing rows are counted either way.",
)
@click.option("--shp-min-ratio", type=float, help="SHP: drop pairs whose score_ratio is below this (e.g. 2).")
@click.option(
    "--max-pairs-per-post",
    type=click.IntRange(min=1),
    help="SHP: keep at most N pairs per post (largest score_ratio first).",
)
@click.option(
    "--dedup",
    is_flag=True,
    help="Drop exact duplicates of normalised (prompt, chosen, rejected), across all sources.",
)
@click.option(
    "--one-pair-per-prompt",
    is_flag=True,
    help="Keep only the highest-margin pair of each prompt (across all sources).",
)
@click.option(
    "--test-size",
    type=float,
    help="Write train/test splits with this share of the rows in test, grouped so no prompt is on both sides.",
)
@click.option(
    "--test-rows",
    type=click.IntRange(min=1),
    help="Like --test-size, as a number of test rows (at least; whole prompt groups move).",
)
@click.option(
    "--system",
    cls=SystemOption,
    metavar="keep|drop|override TEXT|default TEXT",
    help="System prompts: keep (default), drop, override TEXT (replace or add everywhere), default TEXT (add "
    "where missing).",
)
@click.option(
    "--export",
    type=click.Choice(["trl", "openrlhf", "llamafactory", "kto"]),
    default="trl",
    show_default=True,
    help="Shape of the data files: TRL messages, OpenRLHF full conversations + margin, LLaMA-Factory ShareGPT "
    "(+ dataset_info.json), or KTO unpaired rows.",
)
@target_options
@click.option(
    "--max-length",
    type=click.IntRange(min=1),
    help="Drop rows whose prompt + answer (either answer) has more than N tokens of --tokenizer, counted as "
    "TRL's DPOTrainer counts them, so TRL never truncates an answer (exactly N is kept).",
)
@click.option(
    "--max-prompt-length", type=click.IntRange(min=1), help="Drop rows whose prompt has more than N tokens."
)
@click.option(
    "--min-answer-tokens",
    type=click.IntRange(min=0),
    help="Drop rows whose chosen or rejected answer has fewer than N tokens.",
)
@click.option(
    "--output-format",
    type=click.Choice(["messages", "text"]),
    default="messages",
    show_default=True,
    help="messages: TRL's conversational columns (what TRL >= 0.29 wants). text: prompt rendered with the chat "
    "template and generation prompt, chosen/rejected as the continuation, split as TRL's apply_chat_template "
    "does; for trainers that take text (fed to TRL >= 0.29 it gets a double BOS). --format is the INPUT shape.",
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

    SOURCES is a Hub dataset id (`namespace/name`) or a local file (.parquet, .jsonl, .json, .csv) or folder,
    optionally with a mixing weight `SOURCE:WEIGHT`: a fraction (0.5), a row count (2000) or an upsampling
    factor (2.0), drawn with --seed from the rows each source keeps.
    The shape is detected from the columns (`prefkit detect SOURCE` shows how); every row is kept, dropped with
    a reason or marked invalid with a reason, and the counts are in OUT/prefkit.json.

    \b
    Examples:
      prefkit build mlabonne/chatml-OpenHermes2.5-dpo-binarized-alpha --top 2000 -o hermes2k
      prefkit build HuggingFaceH4/ultrafeedback_binarized --split train_prefs --min-margin 1 -o uf
      prefkit build ./my_pairs.jsonl -o mine
      prefkit build Anthropic/hh-rlhf --data-dir helpful-base -o hh --json
      prefkit build data.parquet --prompt-col question --chosen-col good --rejected-col bad -o out
      prefkit build berkeley-nest/Nectar --pairs best-vs-worst -o nectar
      prefkit build argilla/dpo-mix-7k:0.5 Intel/orca_dpo_pairs:2000 ./ours.jsonl:1.0 --dedup --test-size 0.05 -o mix
      prefkit build argilla/dpo-mix-7k --tokenizer ./my-sft-model --max-length 2048 -o mix
      prefkit build argilla/dpo-mix-7k --tokenizer ./my-sft-model --output-format text -o mix-text
      prefkit build Intel/orca_dpo_pairs --chat-template chatml --output-format text -o orca-chatml
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
    if options.get("output_format") == "text" and not quiet:
        click.echo(
            "Note: text output is for trainers that take strings. TRL >= 0.29 re-tokenizes text with the "
            "tokenizer's BOS and appends EOS (double BOS); give TRL the default messages output.",
            err=True,
        )
    if as_json:
        echo_json(result.summary())
    if not quiet:
        render_counts(result.manifest["splits"], result.seconds, None if dry_run else output)
