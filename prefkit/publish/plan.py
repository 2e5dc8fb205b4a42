"""The commit plan of `prefkit push`: what one push adds, deletes and says, from the output folder and the repo as
it is on the Hub (:func:`plan_commit`); :mod:`prefkit.publish.hub` makes the commit.

The folder's part (:func:`local_plan`: data shards, exports, plots, the report page, the public manifest) is
read once; the repo's part (:func:`remote_state`: its files, card metadata, what earlier pushes recorded) is read
again on each attempt, since a concurrent commit changes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from prefkit.errors import HubError
from prefkit.hub_client import http_status, transient
from prefkit.output import CARD_NAME, DATA_DIR, MANIFEST_NAME, REJECTS_DIR, OutputFolder
from prefkit.output.card import HubCard, render_card
from prefkit.output.exports import EXPORT_FILES
from prefkit.output.licences import license_family, license_rank, most_restrictive
from prefkit.output.stats import current_stats
from prefkit.publish.options import PushOptions
from prefkit.publish.public import public_manifest
from prefkit.record import features_dict
from prefkit.store.folder import split_sizes
from prefkit.store.manifest_model import Manifest, checked_manifest

PLOTS_DIR = "plots"
#: the report page (`prefkit report`), pushed next to the card
REPORT_NAME = "report.html"
#: folders (and the report page) prefkit writes in the repo: files there that an earlier push recorded and this push
#: does not write are stale and get deleted
MANAGED_DIRS = (f"{DATA_DIR}/", f"{REJECTS_DIR}/", f"{PLOTS_DIR}/", REPORT_NAME)

#: a file of the commit: its path in the repo and a local file or the bytes to write
RepoFile = tuple[str, Path | bytes]
Warn = Callable[[str], None]


@dataclass
class Plan:
    """One attempt's commit: the repo as it was read, the files to add, the paths to delete, the files kept that
    no push recorded, the card and its licence."""

    remote: Remote
    files: list[RepoFile]
    deleted: list[str]
    unrecorded: list[str]
    card: str
    license: str


def plan_commit(api, repo_id: str, out: OutputFolder, local: Local, options: PushOptions, warn: Warn) -> Plan:
    """What this push commits to ``repo_id`` as the repo is now: refuses a model or space repo of that id and
    ``private`` for a public repo; the card (licence, split files, the remote card's metadata kept); the files
    earlier pushes recorded and this one does not write are deleted, others under the managed folders kept with a
    warning (deleted with ``delete_unrecorded``)."""

    remote = remote_state(api, repo_id, options.revision or "main", dry_run=options.dry_run, warn=warn)
    if not remote.exists and remote.checked:
        refuse_other_type(api, repo_id)
    if remote.exists and options.private and remote.private is False:
        raise HubError(
            f"dataset {repo_id!r} already exists and is public: --private would not make it private",
            "make it private in the repo settings on the Hub first, or drop --private",
        )
    lic, source_licenses = licence(api, out.typed_manifest, options.license, warn)
    hub_card = HubCard(
        repo_id=repo_id,
        license=lic,
        license_family=license_family(lic),
        revision=options.revision,
        split_files=local.split_files,
        source_licenses=source_licenses,
        include_rejects=options.include_rejects,
        plots=local.plots,
        report=REPORT_NAME if local.report else None,
        extra_metadata=remote.card_metadata,
    )
    card = render_card(local.card_manifest, local.features, hub=hub_card)
    files: list[RepoFile] = [*local.files, (MANIFEST_NAME, local.manifest), (CARD_NAME, card.encode())]
    written = {path for path, _ in files}
    stale = {f for f in remote.files if f.startswith(MANAGED_DIRS) and f not in written}
    unrecorded = sorted(stale - remote.recorded)
    if unrecorded and not options.delete_unrecorded:
        warn(
            f"kept {len(unrecorded)} file(s) in {repo_id} that no prefkit push recorded: "
            + ", ".join(unrecorded[:5])
            + (" …" if len(unrecorded) > 5 else "")
            + " (pass --delete-unrecorded to delete them)"
        )
    deleted = sorted(stale if options.delete_unrecorded else stale & remote.recorded)
    return Plan(remote, files, deleted, unrecorded, card, lic)


@dataclass
class Remote:
    """The repo as it is now (or nothing, when it does not exist yet)."""

    exists: bool
    checked: bool = True  # False when a dry run could not look
    sha: str | None = None  # head of the branch (of main when the branch does not exist yet)
    files: list[str] = field(default_factory=list)
    private: bool | None = None
    card_metadata: dict = field(default_factory=dict)
    #: what earlier prefkit pushes wrote under data/, rejects/, plots/ (from the remote manifest)
    recorded: set[str] = field(default_factory=set)


def remote_state(api, repo_id: str, branch: str, *, dry_run: bool, warn) -> Remote:
    from huggingface_hub import errors as hf_errors

    try:
        try:
            info = api.dataset_info(repo_id, revision=branch)
        except hf_errors.RevisionNotFoundError:  # a new branch: it will be created from main
            info = api.dataset_info(repo_id)
    except hf_errors.RepositoryNotFoundError as err:
        if dry_run and http_status(err) == 401 and not api.token:
            warn("not logged in: the dry run cannot see whether the repo exists (or is private)")
            return Remote(exists=False, checked=False)
        if dry_run or http_status(err) != 401:
            return Remote(exists=False)
        raise  # 401 with a token: the token is not valid
    except Exception as err:
        if not dry_run:
            raise
        warn(f"could not check the repo on the Hub ({type(err).__name__}); showing a push to a new repo")
        return Remote(exists=False, checked=False)
    files = api.list_repo_files(repo_id, repo_type="dataset", revision=info.sha)
    meta = _remote_card_metadata(api, repo_id, info.sha) if CARD_NAME in files else {}
    recorded = _recorded_files(api, repo_id, info.sha) if MANIFEST_NAME in files else set()
    return Remote(
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


def refuse_other_type(api, repo_id: str) -> None:
    for other in ("model", "space"):
        if api.repo_exists(repo_id, repo_type=other):
            raise HubError(
                f"{repo_id!r} is a {other} repo; prefkit pushes dataset repos, and a dataset with the same id "
                f"would sit next to it under {api.endpoint}/datasets/{repo_id}",
                f"choose another name (e.g. {repo_id}-dpo), or create the dataset repo first with "
                f"`hf repos create {repo_id} --repo-type dataset` if you do want both",
            )


def licence(api, manifest: Manifest, override: str | None, warn) -> tuple[str, dict[str, str | None]]:
    """The card's licence: ``override``, else the most restrictive of the sources' licences."""

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
class Local:
    """What the push takes from the output folder: files, features, statistics (the card needs the remote)."""

    files: list[tuple[str, Path]]
    manifest: bytes
    card_manifest: dict  # the manifest with current statistics, as the card shows it
    features: dict
    split_files: dict[str, dict]
    plots: list[str]
    report: bool = False
    report_stale: bool = False


def local_plan(out: OutputFolder, include_rejects: bool, plots: str | Path | None) -> Local:
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
    return Local(
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
