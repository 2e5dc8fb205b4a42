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
    Presets are data: prefkit/sources/presets_data/*.json.

    \b
    Examples:
      prefkit presets
      prefkit presets stanfordnlp/SHP
      prefkit presets --json
    """
    from prefkit.formats import FAMILIES
    from prefkit.sources.presets import all_presets, get_preset

    presets = [get_preset(name)] if name else list(all_presets())
    if as_json:
        echo_json({"presets": [p.to_dict() for p in presets]})
        return
    if name:
        p = presets[0]
        click.echo(f"{p.id}  (family {FAMILIES[p.family].letter}: {p.family})")
        for key, value in p.to_dict().items():
            if key not in ("id", "family", "file"):
                click.echo(f"  {key:<14} {value}")
        return
    header = f"{'dataset':<52} {'fam':<4} {'licence':<14} reads"
    click.echo(header)
    click.echo("-" * len(header))
    for p in presets:
        reads = []
        if p.data_dir:
            reads.append(f"data_dir={p.data_dir}")
        if p.default_split:
            reads.append(f"split={','.join(p.default_split)}")
        if p.options:
            reads += [f"{k}={v}" for k, v in p.options.items()]
        letter = FAMILIES[p.family].letter
        click.echo(f"{p.id:<52} {letter:<4} {p.license or 'unknown':<14} {' '.join(reads) or '-'}")
    click.echo(f"\n{len(presets)} presets. `prefkit presets NAME` shows one in full.", err=True)
