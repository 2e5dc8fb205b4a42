"""What `prefkit push` can be told, declared once: the keywords of :func:`prefkit.publish.hub.push` and the flags
of the command (generated from these fields, :mod:`prefkit.commands.flags`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from prefkit.optionspec import OptionGroup, option


class PushOptions(OptionGroup):
    """Where and how a built set is pushed. Defaults: branch main, a public repo created when missing, one commit
    without the rejects, the sources' licence, ``FOLDER/plots``."""

    COMMAND: ClassVar[str] = "push"

    revision: str | None = option(None, "Branch to push to (created from main when missing). Default: main.")
    private: bool = option(False, "Create the repo private (refused if it exists and is public).")
    create_pr: bool = option(False, "Open a pull request instead of committing to the branch.")
    message: str | None = option(
        None, "Commit message. Default: 'prefkit push: N preference pairs'.", decls=("-m", "--message")
    )
    include_rejects: bool = option(False, "Also upload rejects/<split>.parquet (not pushed by default).")
    license: str | None = option(
        None, "Hub licence id for the card (default: the sources' most restrictive)."
    )
    plots: str | Path | None = option(
        None, "Folder of PNGs to embed (default: FOLDER/plots).", path="dir"
    )
    dry_run: bool = option(False, "Print the files and the card that would be committed; commit nothing.")
    delete_unrecorded: bool = option(
        False,
        "Also delete files under data/, rejects/, plots/ of the repo that no earlier prefkit push recorded "
        "(kept by default, with a warning naming them; --dry-run lists them).",
    )
    endpoint: str | None = option(
        None, "The Hub's address (default: HF_ENDPOINT, else https://huggingface.co).", cli=False
    )
    retries: int = option(
        4,
        "Times a transient failure (connection, 429, 5xx, a concurrent commit) is retried.",
        cli=False,
        ge=0,
    )
    backoff: float | None = option(
        None,
        "Seconds before the first retry, doubled each time (default: PREFKIT_HUB_BACKOFF, else 2).",
        cli=False,
        ge=0,
    )
