"""`prefkit push`."""

from __future__ import annotations

import warnings

import click

from prefkit.commands.common import checked_token, echo_json


@click.command("push", context_settings={"max_content_width": 100})
@click.argument("folder", type=click.Path())
@click.argument("repo_id")
@click.option("--revision", help="Branch to push to (created from main when missing). Default: main.")
@click.option("--private", is_flag=True, help="Create the repo private (refused if it exists and is public).")
@click.option("--create-pr", is_flag=True, help="Open a pull request instead of committing to the branch.")
@click.option("-m", "--message", help="Commit message. Default: 'prefkit push: N preference pairs'.")
@click.option(
    "--include-rejects", is_flag=True, help="Also upload rejects/<split>.parquet (not pushed by default)."
)
@click.option(
    "--license", "license_", help="Hub licence id for the card (default: the sources' most restrictive)."
)
@click.option(
    "--plots", type=click.Path(file_okay=False), help="Folder of PNGs to embed (default: FOLDER/plots)."
)
@click.option(
    "--dry-run", is_flag=True, help="Print the files and the card that would be committed; commit nothing."
)
@click.option(
    "--delete-unrecorded",
    is_flag=True,
    help="Also delete files under data/, rejects/, plots/ of the repo that no earlier prefkit push recorded "
    "(kept by default, with a warning naming them; --dry-run lists them).",
)
@click.option(
    "--token", callback=checked_token, help="Hugging Face token (default: HF_TOKEN or your `hf auth login`)."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars and no summary.")
def command(
    folder,
    repo_id,
    revision,
    private,
    create_pr,
    message,
    include_rejects,
    license_,
    plots,
    dry_run,
    delete_unrecorded,
    token,
    as_json,
    quiet,
):
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
            result = push(
                folder,
                repo_id,
                revision=revision,
                private=private,
                create_pr=create_pr,
                message=message,
                include_rejects=include_rejects,
                license=license_,
                plots=plots,
                dry_run=dry_run,
                token=token,
                delete_unrecorded=delete_unrecorded,
            )
    finally:
        if bars is False:
            from huggingface_hub.utils import enable_progress_bars

            enable_progress_bars()
    if as_json:
        echo_json(result.to_dict())
        return
    if dry_run:
        click.echo(result.summary())
    elif not quiet:
        click.echo(result.summary(), err=True)
