"""`prefkit stats`: its flags are generated from :class:`prefkit.output.stats.StatsOptions`."""

from __future__ import annotations

import click

from prefkit.commands.common import echo_json, target_options
from prefkit.commands.flags import group_options
from prefkit.commands.options import passed


@click.command("stats", context_settings={"max_content_width": 100})
@click.argument("folder", type=click.Path())
@group_options("stats", only=("split",))
@target_options
@group_options("stats", only=("plot",))
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars (also none of the libraries').")
def command(folder, as_json, quiet, **flags):
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

    result = stats(folder, progress=enabled(quiet), **passed(flags))
    if flags["plot"]:
        click.echo(f"wrote {len(result.plots)} plot(s) to {flags['plot']}", err=True)
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
