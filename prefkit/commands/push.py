"""`prefkit push`: its flags are generated from :class:`prefkit.publish.options.PushOptions`."""

from __future__ import annotations

import warnings

import click

from prefkit.commands.common import checked_token, echo_json
from prefkit.commands.flags import group_options
from prefkit.commands.options import passed


@click.command("push", context_settings={"max_content_width": 100})
@click.argument("folder", type=click.Path())
@click.argument("repo_id")
@group_options("push")
@click.option(
    "--token", callback=checked_token, help="Hugging Face token (default: HF_TOKEN or your `hf auth login`)."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars and no summary.")
def command(folder, repo_id, token, as_json, quiet, **flags):
    """Publish a built set (FOLDER, from `prefkit build`) as the Hub dataset repo REPO_ID, in one commit.

    Uploads data/*.parquet, prefkit.json and a dataset card (licence, tags, how to load and train with TRL,
    the exact command, sources with revisions, counts per drop reason, statistics, reference-model
    provenance). Files an earlier prefkit push wrote and this one does not are deleted in the same commit; other
    files in the repo are kept (see --delete-unrecorded). The endpoint is
    HF_ENDPOINT (default https://huggingface.co); the token is --token, HF_TOKEN or `hf auth login`.

    \b
    Examples:
      prefkit push hermes2k me/hermes-dpo-2k
      prefkit push hermes2k me/hermes-dpo-2k --private --revision v2 --message "top 2000 by delta_score"
      prefkit push hermes2k me/hermes-dpo-2k --dry-run        # the files and the card; commits nothing
      prefkit push hermes2k someone/their-set --create-pr
    """
    from prefkit.publish.hub import push

    bars = None
    if quiet or as_json:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars

        bars = are_progress_bars_disabled()
        disable_progress_bars()
    try:
        with warnings.catch_warnings():
            # shown as they happen (the licence's before the upload), not again from result.warnings
            warnings.simplefilter("always", UserWarning)
            warnings.showwarning = lambda message, *args, **kwargs: click.echo(
                f"Warning: {message}", err=True
            )
            result = push(folder, repo_id, token=token, **passed(flags))
    finally:
        if bars is False:
            from huggingface_hub.utils import enable_progress_bars

            enable_progress_bars()
    if as_json:
        echo_json(result.to_dict())
        return
    if result.dry_run:
        click.echo(result.summary())
    elif not quiet:
        click.echo(result.summary(), err=True)
