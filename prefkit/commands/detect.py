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
    from prefkit.pipeline import detect

    flat = {"split": split, "revision": revision, "config": config, "data_dir": data_dir, "format": format}
    flat |= {"prompt_col": prompt_col, "chosen_col": chosen_col, "rejected_col": rejected_col}
    flat |= {"system_col": system_col, "margin_col": margin_col}
    result = detect(source, token=token, **flat)
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(result.summary())
