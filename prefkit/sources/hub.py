"""Hub sources: datasets through the real ``datasets``/``huggingface_hub`` clients, pinned to a commit sha, and
snapshots of model/tokenizer repos (:func:`fetch_snapshot`), with one-line errors for every Hub failure.

``HF_ENDPOINT``, tokens and caches work as users expect: the clients read them, prefkit does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from prefkit.errors import ModelError, SourceError

if TYPE_CHECKING:
    from prefkit.sources import Source

LOGIN_HINT = "log in with `hf auth login` or set HF_TOKEN (or pass --token)"


def load_hub(
    repo_id: str,
    *,
    splits: list[str] | None,
    revision: str | None,
    config: str | None,
    data_dir: str | None,
    token: str | bool | None,
) -> Source:
    import datasets
    from huggingface_hub import HfApi, constants
    from huggingface_hub import errors as hf_errors

    from prefkit.sources import Source

    api = HfApi(endpoint=constants.ENDPOINT, token=token)
    try:
        sha = api.dataset_info(repo_id, revision=revision).sha
    except hf_errors.GatedRepoError:
        raise _gated(repo_id) from None
    except hf_errors.RepositoryNotFoundError:
        raise SourceError(
            f"dataset {repo_id!r} was not found on the Hub (or it is private)",
            f"check the id; for a private dataset {LOGIN_HINT}; for a local file check the path",
        ) from None
    except hf_errors.RevisionNotFoundError:
        raise SourceError(
            f"revision {revision!r} not found in dataset {repo_id!r}",
            "pass an existing branch, tag or commit sha to --revision",
        ) from None
    except hf_errors.HfHubHTTPError as err:
        raise _http_error(repo_id, err) from None
    except OSError as err:  # connection refused, DNS, timeouts
        raise SourceError(
            f"cannot reach the Hub for {repo_id!r}: {err}",
            "check your network (or HF_ENDPOINT); set HF_HUB_OFFLINE=1 to use the local cache only",
        ) from None
    kwargs = dict(name=config, data_dir=data_dir, revision=sha, token=token)
    try:
        if splits:
            loaded = {s: datasets.load_dataset(repo_id, split=s, **kwargs) for s in splits}
        else:
            loaded = dict(datasets.load_dataset(repo_id, **kwargs))
    except ValueError as err:
        message = str(err)
        if "split" in message.lower() and splits:
            available = _split_names(repo_id, kwargs)
            raise SourceError(
                f"split {next(s for s in splits if s not in available) if available else splits[0]!r} not found in "
                f"{repo_id!r}; available splits: {', '.join(available) or 'unknown'}",
                f"pass one of them with --split (e.g. --split {available[0] if available else 'train'})",
            ) from None
        if "config" in message.lower() or "builderconfig" in message.lower():
            raise SourceError(
                f"{repo_id!r}: {message.splitlines()[0]}", "pass one of the available configs with --config"
            ) from None
        raise SourceError(
            f"cannot load {repo_id!r}: {message.splitlines()[0]}", "check --config/--data-dir/--split"
        ) from None
    except FileNotFoundError as err:
        if "gated" in str(err):
            raise _gated(repo_id) from None
        raise SourceError(
            f"cannot load {repo_id!r}: {str(err).splitlines()[0]}",
            "check --data-dir / --config: they must name a folder or config of the dataset",
        ) from None
    except hf_errors.HfHubHTTPError as err:
        raise _http_error(repo_id, err) from None
    tables = {name: ds.data.table for name, ds in loaded.items()}
    return Source(repo_id, "hub", tables, revision=revision, sha=sha, config=config, data_dir=data_dir)


def _split_names(repo_id: str, kwargs: dict) -> list[str]:
    import datasets

    try:
        return list(
            datasets.get_dataset_split_names(
                repo_id,
                config_name=kwargs["name"],
                data_dir=kwargs["data_dir"],
                revision=kwargs["revision"],
                token=kwargs["token"],
            )
        )
    except Exception:  # best effort: the error message still names the missing split
        return []


def _gated(repo_id: str) -> SourceError:
    return SourceError(
        f"dataset {repo_id!r} is gated and this account has no access to it",
        f"request access on the dataset's Hub page, then {LOGIN_HINT}",
    )


def _http_error(repo_id: str, err: Exception) -> SourceError:
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status in (401, 403):
        return SourceError(
            f"no access to dataset {repo_id!r} (HTTP {status})",
            f"{LOGIN_HINT}, with a token that can read this dataset",
        )
    return SourceError(
        f"the Hub answered HTTP {status} for {repo_id!r}", "try again later, or check HF_ENDPOINT"
    )


def looks_like_path(spec: str) -> bool:
    """A spec that cannot be a Hub id (``org/name`` or ``name``) is meant as a folder."""
    return spec.startswith((".", "/", "~")) or "\\" in spec or spec.count("/") > 1


def fetch_snapshot(spec: str, revision: str | None, patterns: list[str], what: str) -> Path:
    """``snapshot_download`` of the files matching ``patterns`` (or the cached copy), Hub errors made one line.

    ``what`` ("model", "tokenizer") names the thing in the messages. The folder's name is the resolved commit.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(snapshot_download(spec, revision=revision, allow_patterns=patterns))
    except RevisionNotFoundError:
        raise ModelError(
            f"revision {revision!r} not found in model repo {spec!r}",
            "check the revision (a branch, tag or commit)",
        ) from None
    except GatedRepoError:
        raise ModelError(
            f"model repo {spec!r} is gated", "accept its terms on the Hub and log in (`hf auth login`)"
        ) from None
    except RepositoryNotFoundError:
        raise ModelError(
            f"{what} {spec!r} is neither a local folder nor a Hub model repo",
            "check the path or the repo id (private repos need `hf auth login`)",
        ) from None
    except HFValidationError:
        raise ModelError(
            f"{what} {spec!r} is neither a local folder nor a valid Hub repo id",
            "pass a folder path or a Hub id like org/name",
        ) from None
    except LocalEntryNotFoundError:
        raise ModelError(
            f"{what} {spec!r} is not a local folder, and it is not in the Hub cache (offline?)",
            "check the path, or download it first with network access (HF_HUB_OFFLINE unset)",
        ) from None
    except OSError as err:
        raise ModelError(
            f"cannot fetch {what} {spec!r}: {err}", "check the repo id and your network"
        ) from None
