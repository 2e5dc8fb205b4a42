"""`prefkit stats`."""

from __future__ import annotations

import click

from prefkit.commands.common import echo_json, target_options


@click.command("stats", context_settings={"max_content_width": 100})
@click.argument("folder", type=click.Path())
@click.option("--split", "splits", multiple=True, help="Split(s) to describe (repeatable). Default: all.")
@target_options
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False),
    help="Write PNG histograms (margin, lengths) into this folder. Inside the set folder (e.g. OUT/plots) they "
    "are recorded in prefkit.json and embedded in the dataset card.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars (also none of the libraries').")
def command(
    folder, splits, tokenizer, chat_template, tokenizer_revision, trust_remote_code, plot_dir, as_json, quiet
):
    """Counts, margin distribution, lengths per column (tokens with --tokenizer), length bias and template
    residue of a set built by `prefkit build`.

    Token lengths are counted the way TRL's DPOTrainer counts them (prompt = its prompt ids, chosen/rejected =
    completion ids, prompt+answer = what max_length truncates). Without --tokenizer lengths are in characters;
    the set's own tokenizer (from `build --tokenizer`) is not loaded unless you pass it. Token statistics are
    recorded in the set (prefkit.json and its card), like --plot's.

    \b
    Examples:
      prefkit stats mix
      prefkit stats mix --tokenizer ./my-sft-model
      prefkit stats mix --tokenizer ./my-sft-model --plot mix/plots --json
    """
    from prefkit.output.stats import stats
    from prefkit.progress import enabled

    result = stats(
        folder,
        split=splits,
        tokenizer=tokenizer,
        chat_template=chat_template,
        tokenizer_revision=tokenizer_revision,
        trust_remote_code=trust_remote_code,
        plot=plot_dir,
        progress=enabled(quiet),
    )
    if plot_dir:
        click.echo(f"wrote {len(result.plots)} plot(s) to {plot_dir}", err=True)
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(result.summary())
    if not quiet:
        click.echo(
            f"to look at the rows, the rejects and these figures as charts: prefkit report {folder} "
            "(writes one HTML page, report.html)",
            err=True,
        )
