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
def command(source, token, as_json, **flags):
    """Show the shape prefkit detects in SOURCE and how its columns map to prompt/chosen/rejected.

    \b
    Examples:
      prefkit detect HuggingFaceH4/ultrafeedback_binarized --split train_prefs
      prefkit detect ./pairs.jsonl --prompt-col question
    """
    from prefkit.pipeline import detect

    result = detect(source, token=token, **flags)
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(result.summary())
