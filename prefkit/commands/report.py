"""`prefkit report`: its flags are generated from :class:`prefkit.report.options.ReportOptions`."""

from __future__ import annotations

import click

from prefkit.commands.common import target_options
from prefkit.commands.flags import group_options, names
from prefkit.commands.options import passed


@click.command("report", context_settings={"max_content_width": 100})
@click.argument("folder", type=click.Path())
@click.option(
    "-o",
    "--output",
    "html",
    type=click.Path(dir_okay=False),
    help="Where to write the page. Default: FOLDER/report.html (where `push` finds it).",
)
@group_options("report", exclude=names("target"))
@target_options
@click.option("--open", "open_page", is_flag=True, help="Open the page in the default web browser.")
def command(folder, html, open_page, **flags):
    """Write one self-contained HTML page to look at a set built by `prefkit build`: per split the flow of rows
    (kept, dropped and invalid by reason, per source), the rejects with their evidence, kept rows as
    conversations (searchable, paged), margin, length, length-bias, reward-model and reference log-prob charts,
    and the manifest's provenance. Everything is inside the file (no network); at most 10 MB.

    Lengths are in characters unless --tokenizer is given (then in tokens by TRL's rule, with max_length).

    \b
    Examples:
      prefkit report example-out
      prefkit report mix -o mix-report.html --open
      prefkit report mix --tokenizer ./my-sft-model --rows 300
    """
    from prefkit.report import report

    result = report(folder, html, **passed(flags))
    click.echo(result.summary())
    if open_page:
        import webbrowser

        webbrowser.open(result.path.resolve().as_uri())
