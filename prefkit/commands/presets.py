"""`prefkit presets`."""

from __future__ import annotations

import click

from prefkit.commands.common import echo_json


@click.command("presets")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the presets as JSON.")
def command(name, as_json):
    """List the known Hub datasets and how prefkit reads each (family, columns, scale, licence, notes).

    A preset applies when a source's id matches (or with `prefkit build SOURCE --preset NAME`); it only sets
    defaults, so an explicit option always wins. Datasets without a preset are detected from their columns.
    Presets are data: prefkit/formats/presets_data/*.json.

    \b
    Examples:
      prefkit presets
      prefkit presets stanfordnlp/SHP
      prefkit presets --json
    """
    from prefkit.formats.presets import presets

    result = presets(name)
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(result.summary())
    if not name:
        click.echo(f"\n{len(result.presets)} presets. `prefkit presets NAME` shows one in full.", err=True)
