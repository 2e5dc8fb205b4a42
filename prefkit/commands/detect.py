"""`prefkit detect`."""

from __future__ import annotations

import click

from prefkit.commands.common import column_options, echo_json, source_options, token_option


@click.command("detect")
@click.argument("source")
@source_options
@column_options
@token_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(
    source,
    split,
    revision,
    config,
    data_dir,
    format,
    prompt_col,
    chosen_col,
    rejected_col,
    system_col,
    margin_col,
    token,
    as_json,
):
    """Show the shape prefkit detects in SOURCE and how its columns map to prompt/chosen/rejected.

    \b
    Examples:
      prefkit detect HuggingFaceH4/ultrafeedback_binarized --split train_prefs
      prefkit detect ./pairs.jsonl --prompt-col question
    """
    from prefkit.formats import FAMILIES, detect
    from prefkit.sources import load_source

    src = load_source(
        source, split=list(split) or None, revision=revision, config=config, data_dir=data_dir, token=token
    )
    columns = {"prompt": prompt_col, "chosen": chosen_col, "rejected": rejected_col, "system": system_col}
    report = {"source": src.label, "splits": {}}
    for name, table in src.splits.items():
        mapping = detect(table, format=format, columns=columns, margin_col=margin_col)
        family = FAMILIES[mapping.family]
        report["splits"][name] = {
            "rows": table.num_rows,
            "format": mapping.family,
            "family": family.letter,
            "description": family.description,
            "mapping": mapping.to_dict(),
            "columns": table.column_names,
        }
    if as_json:
        echo_json(report)
        return
    click.echo(f"source: {report['source']}")
    for name, info in report["splits"].items():
        click.echo(f"\nsplit {name} ({info['rows']:,} rows)")
        click.echo(f"  format:  {info['format']} (family {info['family']}: {info['description']})")
        extra = info["mapping"].get("extra", {})
        for key, col in info["mapping"].items():
            if key not in ("family", "extra"):
                click.echo(f"  {key:<15}<- {col}")
        for key, col in extra.get("columns", {}).items():
            click.echo(f"  {key:<15}<- {col}")
        for key, value in extra.items():
            if key != "columns":
                click.echo(f"  {key:<15}   {value}")
        used = {v for v in info["mapping"].values() if isinstance(v, str)}
        used |= set(extra.get("columns", {}).values()) | {extra.get("group")}
        unused = [c for c in info["columns"] if c not in used]
        if unused:
            click.echo(f"  unused columns: {', '.join(unused)}")
