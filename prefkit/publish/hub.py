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

import json
import logging
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from prefkit.errors import HubError
from prefkit.hub_client import LOGIN_HINT, describe, http_status, hub_token, transient, with_retries
from prefkit.output import CARD_NAME, DATA_DIR, MANIFEST_NAME, REJECTS_DIR, OutputFolder, read_output
from prefkit.results import Result
from prefkit.store.folder import split_sizes
from prefkit.store.manifest_model import Manifest, checked_manifest

DEFAULT_ENDPOINT = "https://huggingface.co"
PLOTS_DIR = "plots"
#: the report page (`prefkit report`), pushed next to the card
REPORT_NAME = "report.html"
#: folders (and the report page) prefkit writes in the repo: files there that an earlier push recorded and this push
#: does not write are stale and get deleted
MANAGED_DIRS = (f"{DATA_DIR}/", f"{REJECTS_DIR}/", f"{PLOTS_DIR}/", REPORT_NAME)

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


@dataclass
class _Remote:
    """The repo as it is now (or nothing, when it does not exist yet)."""

    exists: bool
    checked: bool = True  # False when a dry run could not look
    sha: str | None = None  # head of the branch (of main when the branch does not exist yet)
    files: list[str] = field(default_factory=list)
    private: bool | None = None
    card_metadata: dict = field(default_factory=dict)
    #: what earlier prefkit pushes wrote under data/, rejects/, plots/ (from the remote manifest)
    recorded: set[str] = field(default_factory=set)


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
    *,
    revision: str | None = None,
    private: bool = False,
    create_pr: bool = False,
    message: str | None = None,
    include_rejects: bool = False,
    license: str | None = None,
    plots: str | Path | None = None,
    dry_run: bool = False,
    token: str | bool | None = None,
    endpoint: str | None = None,
    retries: int = 4,
    backoff: float | None = None,
    delete_unrecorded: bool = False,
) -> PushResult:
    """Upload the output folder ``folder`` as the dataset repo ``repo_id`` in one commit.

    ``revision`` is a branch (created from main when missing); ``create_pr`` opens a pull request instead of
    committing to it. ``license`` overrides the licence derived from the sources (the most restrictive
    one wins, with a warning when they differ). ``plots`` is a folder of PNGs to embed (default:
    ``folder/plots`` when it exists). With ``dry_run`` nothing is written: the result lists the files and
    holds the card that would be committed. Files under ``data/``, ``rejects/``, ``plots/`` that this push does
    not write are deleted when an earlier prefkit push recorded them in the repo's manifest; others are kept and
    named in ``unrecorded`` and a warning (``delete_unrecorded=True`` deletes them too). Transient failures (connection errors, 429, 5xx, a concurrent
    commit) are retried ``retries`` times with exponential ``backoff`` seconds.

    >>> push("hermes2k", "me/hermes-dpo-2k", private=True)  # doctest: +SKIP
    PushResult(repo_id='me/hermes-dpo-2k', ...)
    """
    from huggingface_hub import HfApi

    from prefkit.output.card import HubCard, render_card
    from prefkit.output.licences import license_family
    from prefkit.version import __version__

    out = read_output(folder)
    endpoint = resolve_endpoint(endpoint)
    caught: list[str] = []
    token = _preflight(out, folder, resolve_token(token), dry_run)
    api = HfApi(endpoint=endpoint, token=token or False, library_name="prefkit", library_version=__version__)
    repo_id = _full_repo_id(api, repo_id, token)
    branch = revision or "main"

    def warn(text: str) -> None:
        if text not in caught:  # a retried attempt finds the same things
            caught.append(text)
            warnings.warn(text, UserWarning, stacklevel=3)

    for text in out.warnings:
        warn(text)

    local = _local_plan(out, include_rejects, plots)
    if local.report_stale:
        warn(f"{REPORT_NAME} is older than the data files: run `prefkit report {folder}` again to show them")

    def attempt() -> PushResult:
        remote = _remote_state(api, repo_id, branch, dry_run=dry_run, warn=warn)
        if not remote.exists and remote.checked:
            _refuse_other_type(api, repo_id)
        if remote.exists and private and remote.private is False:
            raise HubError(
                f"dataset {repo_id!r} already exists and is public: --private would not make it private",
                "make it private in the repo settings on the Hub first, or drop --private",
            )
        lic, source_licenses = _licence(api, out.typed_manifest, license, warn)
        hub_card = HubCard(
            repo_id=repo_id,
            license=lic,
            license_family=license_family(lic),
            revision=revision,
            split_files=local.split_files,
            source_licenses=source_licenses,
            include_rejects=include_rejects,
            plots=local.plots,
            report=REPORT_NAME if local.report else None,
            extra_metadata=remote.card_metadata,
        )
        card = render_card(local.card_manifest, local.features, hub=hub_card)
        files: list[tuple[str, Path | bytes]] = [
            *local.files,
            (MANIFEST_NAME, local.manifest),
            (CARD_NAME, card.encode()),
        ]
        written = {path for path, _ in files}
        stale = {f for f in remote.files if f.startswith(MANAGED_DIRS) and f not in written}
        if stale - remote.recorded and not delete_unrecorded:
            names = sorted(stale - remote.recorded)
            warn(
                f"kept {len(names)} file(s) in {repo_id} that no prefkit push recorded: "
                + ", ".join(names[:5])
                + (" …" if len(names) > 5 else "")
                + " (pass --delete-unrecorded to delete them)"
            )
        result = PushResult(
            repo_id=repo_id,
            repo_url=f"{endpoint}/datasets/{repo_id}",
            revision=branch,
            license=lic,
            files=[
                {"path": p, "size": len(d) if isinstance(d, bytes) else d.stat().st_size} for p, d in files
            ],
            deleted=sorted(stale if delete_unrecorded else stale & remote.recorded),
            unrecorded=sorted(stale - remote.recorded),
            card=card,
            dry_run=dry_run,
            private=remote.private if remote.exists else private,
            created_repo=not remote.exists,
            remote_checked=remote.checked,
            warnings=caught,
            create_pr=create_pr,
        )
        if dry_run:
            return result
        return _commit(api, result, remote, files, message, create_pr, local.card_manifest)

    return with_retries(
        attempt,
        lambda err, n: _hub_error(err, repo_id, branch, endpoint, n),
        retries=retries,
        backoff=backoff,
    )


# ------------------------------------------------------------------------------------------------ planning


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


def _remote_state(api, repo_id: str, branch: str, *, dry_run: bool, warn) -> _Remote:
    from huggingface_hub import errors as hf_errors

    try:
        try:
            info = api.dataset_info(repo_id, revision=branch)
        except hf_errors.RevisionNotFoundError:  # a new branch: it will be created from main
            info = api.dataset_info(repo_id)
    except hf_errors.RepositoryNotFoundError as err:
        if dry_run and http_status(err) == 401 and not api.token:
            warn("not logged in: the dry run cannot see whether the repo exists (or is private)")
            return _Remote(exists=False, checked=False)
        if dry_run or http_status(err) != 401:
            return _Remote(exists=False)
        raise  # 401 with a token: the token is not valid
    except Exception as err:
        if not dry_run:
            raise
        warn(f"could not check the repo on the Hub ({type(err).__name__}); showing a push to a new repo")
        return _Remote(exists=False, checked=False)
    files = api.list_repo_files(repo_id, repo_type="dataset", revision=info.sha)
    meta = _remote_card_metadata(api, repo_id, info.sha) if CARD_NAME in files else {}
    recorded = _recorded_files(api, repo_id, info.sha) if MANIFEST_NAME in files else set()
    return _Remote(
        exists=True, sha=info.sha, files=files, private=info.private, card_metadata=meta, recorded=recorded
    )


def _recorded_files(api, repo_id: str, sha: str) -> set[str]:
    """What earlier prefkit pushes wrote under data/, rejects/, plots/, from the repo's ``prefkit.json``: its
    ``push.files``; for a manifest an older prefkit pushed, the data files its splits list and their rejects.

    The remote manifest is read as a dict, each key checked: anyone may have edited it, and what of it is
    readable still says which files a push wrote."""
    try:
        path = api.hf_hub_download(repo_id, MANIFEST_NAME, repo_type="dataset", revision=sha)
        manifest = json.loads(Path(path).read_text())
    except Exception as err:  # an unreadable manifest records nothing: nothing is deleted
        if transient(err):
            raise
        return set()
    if not isinstance(manifest, dict) or "prefkit_version" not in manifest:
        return set()
    pushed = manifest.get("push")
    if isinstance(pushed, dict) and isinstance(pushed.get("files"), list):
        return {str(f) for f in pushed["files"]}
    splits: dict = manifest["splits"] if isinstance(manifest.get("splits"), dict) else {}
    found = {f"{REJECTS_DIR}/{split}.parquet" for split in splits}
    for counts in splits.values():
        if isinstance(counts, dict):
            found.update(str(f) for f in counts.get("files") or [])
    return found


def _remote_card_metadata(api, repo_id: str, sha: str) -> dict:
    from huggingface_hub.repocard import metadata_load

    try:
        path = api.hf_hub_download(repo_id, CARD_NAME, repo_type="dataset", revision=sha)
        return metadata_load(path) or {}
    except Exception as err:  # a card we cannot read is replaced, not merged
        if transient(err):
            raise
        return {}


def _refuse_other_type(api, repo_id: str) -> None:
    for other in ("model", "space"):
        if api.repo_exists(repo_id, repo_type=other):
            raise HubError(
                f"{repo_id!r} is a {other} repo; prefkit pushes dataset repos, and a dataset with the same id "
                f"would sit next to it under {api.endpoint}/datasets/{repo_id}",
                f"choose another name (e.g. {repo_id}-dpo), or create the dataset repo first with "
                f"`hf repos create {repo_id} --repo-type dataset` if you do want both",
            )


def _licence(api, manifest: Manifest, override: str | None, warn) -> tuple[str, dict[str, str | None]]:
    """The card's licence: ``override``, else the most restrictive of the sources' licences."""
    from prefkit.output.licences import license_rank, most_restrictive

    found: dict[str, str | None] = {}
    for src in manifest.source_entries:
        sid = str(src.id or src.source)
        lic: str | list | None = src.license
        if lic is None and src.kind == "hub":
            lic = _source_licence(api, sid, src.sha or src.revision)
        if isinstance(lic, list):
            lic = most_restrictive(lic)
        found[sid] = lic
    derived = most_restrictive(list(found.values()))
    if override:
        if found and license_rank(override) < license_rank(derived):
            warn(f"--license {override} is less restrictive than the sources' {derived}; check their terms")
        return override, found
    unknown = [s for s, lic in found.items() if not lic or lic == "unknown"]
    if unknown:
        warn(
            f"licence unknown for {', '.join(unknown)}: the card says `{derived}`; "
            "pass --license with the right Hub licence id"
        )
    elif len(set(found.values())) > 1:
        listed = ", ".join(f"{s} ({lic})" for s, lic in found.items())
        warn(f"sources have different licences: {listed}; the card uses the most restrictive, {derived}")
    return derived, found


def _source_licence(api, repo_id: str, revision: str | None) -> str | list | None:
    try:
        card = api.dataset_info(repo_id, revision=revision).card_data
    except Exception as err:  # gone, private, gated: "unknown", with a warning by the caller
        if transient(err):
            raise
        return None
    return None if card is None else card.get("license")


@dataclass
class _Local:
    """What the push takes from the output folder: files, features, statistics (the card needs the remote)."""

    files: list[tuple[str, Path]]
    manifest: bytes
    card_manifest: dict  # the manifest with current statistics, as the card shows it
    features: dict
    split_files: dict[str, dict]
    plots: list[str]
    report: bool = False
    report_stale: bool = False


def _local_plan(out: OutputFolder, include_rejects: bool, plots: str | Path | None) -> _Local:
    from prefkit.output.stats import current_stats
    from prefkit.publish.public import public_manifest
    from prefkit.record import features_dict
    from prefkit.store.folder import EXPORT_FILES

    files: list[tuple[str, Path]] = []
    split_files: dict[str, dict] = {}
    features: dict = {}
    for split, paths in out.shards.items():
        schema = pq.read_schema(paths[0]).remove_metadata()
        features = features or features_dict(schema)
        split_files[split] = split_sizes(paths)

        files += [(f"{DATA_DIR}/{p.name}", p) for p in paths]
    if include_rejects:
        files += [(f"{REJECTS_DIR}/{p.name}", p) for p in sorted((out.path / REJECTS_DIR).glob("*.parquet"))]
    files += [(p.relative_to(out.path).as_posix(), p) for g in EXPORT_FILES for p in sorted(out.path.glob(g))]
    plot_dir = Path(plots) if plots else out.path / PLOTS_DIR
    if plots and not plot_dir.is_dir():
        raise HubError(
            f"plots folder {str(plot_dir)!r} not found", "pass the folder `prefkit stats --plot` wrote"
        )
    images = sorted(plot_dir.glob("*.png")) if plot_dir.is_dir() else []
    files += [(f"{PLOTS_DIR}/{p.name}", p) for p in images]
    report = _report_page(out)
    if report is not None:
        files.append((REPORT_NAME, report))
    public = public_manifest(out.manifest)
    public["push"] = {"files": sorted(path for path, _ in files)}  # what a later push may delete
    card_manifest = {**public, "stats": {**(public.get("stats") or {}), "splits": current_stats(out)}}
    return _Local(
        files=files,
        manifest=checked_manifest(public).to_json().encode(),
        card_manifest=card_manifest,
        features=features,
        split_files=split_files,
        plots=[f"{PLOTS_DIR}/{p.name}" for p in images],
        report=report is not None,
        report_stale=report is not None
        and report.stat().st_mtime < max(p.stat().st_mtime for paths in out.shards.values() for p in paths),
    )


def _report_page(out: OutputFolder) -> Path | None:
    """The report page `prefkit report` recorded in the manifest (``report.path``, inside the folder), if it is
    there."""
    report = out.typed_manifest.report
    recorded = report.path if report else None
    page = out.path / recorded if recorded else None
    return (
        page if page is not None and page.is_file() and out.path.resolve() in page.resolve().parents else None
    )


# ------------------------------------------------------------------------------------------------ committing


def _commit(api, result: PushResult, remote: _Remote, files, message, create_pr: bool, card_manifest: dict):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    repo_id, branch = result.repo_id, result.revision
    if not remote.exists:
        api.create_repo(repo_id, repo_type="dataset", private=result.private, exist_ok=True)
    if branch != "main":
        api.create_branch(repo_id, repo_type="dataset", branch=branch, exist_ok=True)
    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(path, str(data) if isinstance(data, Path) else data) for path, data in files
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
        create_pr=create_pr,
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
