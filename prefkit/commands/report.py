"""`prefkit report`."""

from __future__ import annotations

import click

from prefkit.commands.common import target_options


@click.command("report", context_settings={"max_content_width": 100})
@click.argument("folder", type=click.Path())
@click.option(
    "-o",
    "--output",
    "html",
    type=click.Path(dir_okay=False),
    help="Where to write the page. Default: FOLDER/report.html (where `push` finds it).",
)
@click.option(
    "--rows",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Kept rows shown per split (a uniform random sample when the split has more; the page says so).",
)
@click.option(
    "--examples",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Rejected rows shown per reason (sampled the same way).",
)
@click.option(
    "--eval-set",
    "eval_sets",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A local file of an eval set the build decontaminated against (repeatable; matched by file name), to "
    "show the contaminating item next to each contaminated row. Hub eval sets are not downloaded.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the row samples.")
@target_options
@click.option("--open", "open_page", is_flag=True, help="Open the page in the default web browser.")
def command(
    folder,
    html,
    rows,
    examples,
    eval_sets,
    seed,
    tokenizer,
    chat_template,
    tokenizer_revision,
    trust_remote_code,
    open_page,
):
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

    result = report(
        folder,
        html,
        rows=rows,
        examples=examples,
        eval_set=eval_sets,
        seed=seed,
        tokenizer=tokenizer,
        chat_template=chat_template,
        tokenizer_revision=tokenizer_revision,
        trust_remote_code=trust_remote_code,
    )
    click.echo(result.summary())
    if open_page:
        import webbrowser

        webbrowser.open(result.path.resolve().as_uri())
