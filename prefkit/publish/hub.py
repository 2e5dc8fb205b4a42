"""Publish a built set to the Hugging Face Hub (`prefkit push`).

One push is one commit: the data shards, the dataset card and the manifest are added, and the files an earlier
prefkit push wrote that this one does not (under ``data/``, ``rejects/``, ``plots/``) are deleted in the same
commit, so a repo never holds half a push. The pushed manifest records what the push wrote there
(``push.files``); a later push deletes only files so recorded (or, for a repo pushed by an older prefkit, the data
files and rejects its manifest lists). Anything else in those folders (a user's ``data/my_handmade.parquet``,
``plots/figure1.png``) is kept and named in a warning, unless ``delete_unrecorded`` (``--delete-unrecorded``). The endpoint and token are resolved when ``push`` is called (``HF_ENDPOINT`` and
``HF_TOKEN`` / ``hf auth login`` are honoured), and an explicit ``HfApi(endpoint=..., token=...)`` is used.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefkit.errors import HubError
from prefkit.hub_client import LOGIN_HINT, describe, http_status, hub_token, transient, with_retries
from prefkit.output import OutputFolder, read_output
from prefkit.publish.options import PushOptions
from prefkit.publish.plan import REPORT_NAME, Plan, local_plan, plan_commit
from prefkit.results import Result
from prefkit.store.manifest_model import Manifest
from prefkit.version import __version__

DEFAULT_ENDPOINT = "https://huggingface.co"

logger = logging.getLogger(__name__)


@dataclass
class PushResult(Result):
    """What a push did (or, with ``dry_run``, would do): the repo, branch (``revision``), licence, the files
    added (``{"path", "size"}``) and deleted, the card, the commit and pull request. ``summary()`` is the text
    `prefkit push` prints (the plan and the card for a dry run), ``to_dict()`` what ``--json`` prints."""

    repo_id: str
    repo_url: str
    revision: str
    license: str
    files: list[dict]  # {"path", "size"} added or replaced
    deleted: list[str]
    card: str
    dry_run: bool = False
    #: files under data/, rejects/, plots/ no earlier prefkit push recorded: kept (deleted with delete_unrecorded)
    unrecorded: list[str] = field(default_factory=list)
    private: bool | None = None
    created_repo: bool = False
    commit_sha: str | None = None
    commit_url: str | None = None
    pr_url: str | None = None
    remote_checked: bool = True
    warnings: list[str] = field(default_factory=list)
    create_pr: bool = False

    def to_dict(self) -> dict:
        out = asdict(self)
        if not self.dry_run:
            out.pop("card")
        return out

    def summary(self) -> str:
        if self.dry_run:
            pr = ", pull request" if self.create_pr else ""
            where = f"{self.repo_url} (branch {self.revision}{pr})"
            state = "new repo" if self.created_repo else "existing repo"
            if not self.remote_checked:
                state = "repo not checked"
            lines = [f"Dry run: would push to {where}, {state}, licence {self.license}:"]
            lines += [f"  add     {f['path']:<48} {_size(f['size']):>10}" for f in self.files]
            lines += [f"  delete  {path}" for path in self.deleted]
            lines += [
                f"  keep    {path}   (not written by prefkit; --delete-unrecorded deletes it)"
                for path in self.unrecorded
                if path not in self.deleted
            ]
            return "\n".join([*lines, "\n--- README.md ---", self.card])
        deleted = f", {len(self.deleted)} deleted" if self.deleted else ""
        target = f"a pull request against {self.revision}" if self.create_pr else f"branch {self.revision}"
        lines = [f"Pushed {len(self.files)} files{deleted} to {self.repo_url} ({target})"]
        lines.append(f"commit {self.commit_url}")
        if self.pr_url:
            lines.append(f"pull request {self.pr_url}")
        return "\n".join(lines)


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return str(n)


def resolve_endpoint(endpoint: str | None = None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def resolve_token(token: str | bool | None = None) -> str | None:
    """An explicit token, else HF_TOKEN / the token saved by `hf auth login` (read now, not at import); one with
    whitespace or control characters is refused (:func:`prefkit.hub_client.hub_token`)."""
    if token is False:
        return None
    hub_token(token)
    if isinstance(token, str) and token:
        return token
    from huggingface_hub import get_token

    return get_token()


def push(
    folder: str | Path,
    repo_id: str,
    options: PushOptions | None = None,
    *,
    token: str | bool | None = None,
    **keywords: Any,
) -> PushResult:
    """Upload the output folder ``folder`` as the dataset repo ``repo_id`` in one commit.

    ``options`` (:class:`~prefkit.publish.options.PushOptions`) and/or keywords with the flags' names (which
    win): ``revision`` is a branch (created from main when missing); ``create_pr`` opens a pull request instead of
    committing to it. ``license`` overrides the licence derived from the sources (the most restrictive
    one wins, with a warning when they differ). ``plots`` is a folder of PNGs to embed (default:
    ``folder/plots`` when it exists). With ``dry_run`` nothing is written: the result lists the files and
    holds the card that would be committed. Files under ``data/``, ``rejects/``, ``plots/`` that this push does
    not write are deleted when an earlier prefkit push recorded them in the repo's manifest; others are kept and
    named in ``unrecorded`` and a warning (``delete_unrecorded=True`` deletes them too). Transient failures
    (connection errors, 429, 5xx, a concurrent commit) are retried ``retries`` times with exponential ``backoff``
    seconds; ``endpoint`` is the Hub's address. ``token`` is a Hub token with write access (never recorded).

    >>> push("hermes2k", "me/hermes-dpo-2k", private=True)  # doctest: +SKIP
    PushResult(repo_id='me/hermes-dpo-2k', ...)
    """
    from huggingface_hub import HfApi


    opts = PushOptions.create(options, **keywords)
    out = read_output(folder)
    endpoint = resolve_endpoint(opts.endpoint)
    caught: list[str] = []
    token = _preflight(out, folder, resolve_token(token), opts.dry_run)
    api = HfApi(endpoint=endpoint, token=token or False, library_name="prefkit", library_version=__version__)
    repo_id = _full_repo_id(api, repo_id, token)

    def warn(text: str) -> None:
        if text not in caught:  # a retried attempt finds the same things
            caught.append(text)
            warnings.warn(text, UserWarning, stacklevel=3)

    for text in out.warnings:
        warn(text)
    local = local_plan(out, opts.include_rejects, opts.plots)
    if local.report_stale:
        warn(f"{REPORT_NAME} is older than the data files: run `prefkit report {folder}` again to show them")

    def attempt() -> PushResult:
        plan = plan_commit(api, repo_id, out, local, opts, warn)
        result = _result(plan, repo_id, endpoint, opts, caught)
        return result if opts.dry_run else _commit(api, result, plan, opts.message, local.card_manifest)

    branch = opts.revision or "main"
    return with_retries(
        attempt,
        lambda err, n: _hub_error(err, repo_id, branch, endpoint, n),
        retries=opts.retries,
        backoff=opts.backoff,
    )


def _result(plan: Plan, repo_id: str, endpoint: str, options: PushOptions, caught: list[str]) -> PushResult:
    """What the push of ``plan`` is (before its commit: no commit or pull request yet)."""
    remote = plan.remote
    return PushResult(
        repo_id=repo_id,
        repo_url=f"{endpoint}/datasets/{repo_id}",
        revision=options.revision or "main",
        license=plan.license,
        files=[
            {"path": p, "size": len(d) if isinstance(d, bytes) else d.stat().st_size} for p, d in plan.files
        ],
        deleted=plan.deleted,
        unrecorded=plan.unrecorded,
        card=plan.card,
        dry_run=options.dry_run,
        private=remote.private if remote.exists else options.private,
        created_repo=not remote.exists,
        remote_checked=remote.checked,
        warnings=caught,
        create_pr=options.create_pr,
    )


# ------------------------------------------------------------------------------------------------ before any request


def _preflight(out: OutputFolder, folder: str | Path, token: str | None, dry_run: bool) -> str | None:
    """Refuse, before any request, what cannot be pushed: a set without rows, no token, offline mode."""
    if not out.shards:
        raise HubError(
            f"{str(folder)!r} holds no rows to push (the build kept none)", "rebuild it so that it keeps rows"
        )
    if token is None and not dry_run:
        raise HubError("no Hugging Face token found: pushing needs a token with write access", LOGIN_HINT)
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on") and not dry_run:
        raise HubError(
            "HF_HUB_OFFLINE is set: the Hub client refuses to connect", "unset HF_HUB_OFFLINE to push"
        )
    return token


def _full_repo_id(api, repo_id: str, token: str | None) -> str:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if "/" not in repo_id:
        if token is None:
            raise HubError(f"repo id {repo_id!r} has no namespace", f"write it as `your-name/{repo_id}`")
        try:
            repo_id = f"{api.whoami()['name']}/{repo_id}"
        except Exception as err:
            raise _hub_error(err, repo_id, "main", api.endpoint, 1) from err
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HubError(
            f"invalid repo id {repo_id!r}: {err}", "use `namespace/name`, e.g. me/my-dpo-set"
        ) from None
    return repo_id


# ------------------------------------------------------------------------------------------------ committing


def _commit(api, result: PushResult, plan: Plan, message: str | None, card_manifest: dict) -> PushResult:
    """Make the commit of ``plan`` (creating the repo and the branch when missing) and record it in ``result``."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    repo_id, branch, remote = result.repo_id, result.revision, plan.remote
    if not remote.exists:
        api.create_repo(repo_id, repo_type="dataset", private=result.private, exist_ok=True)
    if branch != "main":
        api.create_branch(repo_id, repo_type="dataset", branch=branch, exist_ok=True)
    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(path, str(data) if isinstance(data, Path) else data) for path, data in plan.files
    ]
    operations += [CommitOperationDelete(path) for path in result.deleted]
    manifest = Manifest.read(card_manifest)
    rows = sum(c.kept or 0 for c in manifest.split_entries.values())
    info = api.create_commit(
        repo_id,
        operations,
        commit_message=message or f"prefkit push: {rows:,} preference pairs",
        commit_description=_description(manifest),
        repo_type="dataset",
        revision=branch,
        create_pr=result.create_pr,
        # the commit fails (412, then a retry re-plans) if the branch moved since we listed its files
        parent_commit=remote.sha if remote.exists else None,
    )
    result.commit_sha = info.oid
    result.commit_url = info.commit_url
    result.pr_url = info.pr_url
    return result


def _description(manifest: Manifest) -> str:
    lines = []
    if manifest.command:
        lines.append(f"Built with: `{manifest.command}`")
    if manifest.reflogps and manifest.reflogps.command:
        lines.append(f"Scored with: `{manifest.reflogps.command}`")
    return "\n\n".join(lines)


# ------------------------------------------------------------------------------------------------ errors


def _hub_error(err: BaseException, repo_id: str, branch: str, endpoint: str, attempts: int) -> HubError:
    """One clear HubError for whatever the Hub client raised."""
    from huggingface_hub import errors as hf_errors

    status = http_status(err)
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    if isinstance(err, ValueError) and "Invalid metadata in README.md" in str(err):
        detail = "; ".join(line.lstrip("- ") for line in str(err).splitlines()[1:] if line.strip())
        return HubError(
            f"the Hub rejected the dataset card: {detail}", "pass --license with a Hub licence id"
        )
    if transient(err):
        return HubError(
            f"cannot push to {endpoint} after {attempts} attempt(s) ({describe(err)}); a push is one commit, so the repo "
            "holds all of it or none of it",
            "check your network (or HF_ENDPOINT) and run the same command again",
        )
    namespace = repo_id.split("/")[0]
    if status == 401:
        return HubError(f"the Hub did not accept your token for {repo_id!r} (401 Unauthorized)", LOGIN_HINT)
    if status == 403:
        request = getattr(getattr(err, "response", None), "request", None)
        if "/api/repos/create" in str(getattr(request, "url", "")):
            return HubError(
                f"your token cannot create datasets under {namespace!r} (403 Forbidden)",
                f"push to your own namespace, or use a token with write access to {namespace!r}",
            )
        return HubError(
            f"your token has no write access to dataset {repo_id!r} (403 Forbidden)",
            "use a token with write access (`hf auth login`), or open a pull request with --create-pr",
        )
    if isinstance(err, hf_errors.RevisionNotFoundError):
        return HubError(
            f"branch {branch!r} not found in {repo_id!r}", "pass an existing branch to --revision"
        )
    if isinstance(err, hf_errors.RepositoryNotFoundError):
        return HubError(
            f"dataset {repo_id!r} not found, or your token cannot see it",
            f"check the repo id; for a private repo {LOGIN_HINT}",
        )
    if status == 409:
        return HubError(f"the Hub refused to create {repo_id!r}: {first}", "choose another repo id")
    return HubError(f"push to {repo_id!r} failed: {first}", "run again with --debug for the full error")
