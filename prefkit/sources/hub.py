"""Hub sources: datasets through the real ``datasets``/``huggingface_hub`` clients, pinned to a commit sha, with
one-line errors for every Hub failure (the shared client: :mod:`prefkit.hub_client`).

``HF_ENDPOINT``, tokens and caches work as users expect: the clients read them, prefkit does not.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from prefkit.errors import SourceError
from prefkit.hub_client import LOGIN_HINT, describe, hub_token, transient, with_retries
from prefkit.sources.source import Source
from prefkit.sources.splits import arrow_split

logger = logging.getLogger(__name__)


def read_hub(
    repo_id: str,
    *,
    splits: list[str] | None,
    revision: str | None,
    config: str | None,
    data_dir: str | None,
    token: str | bool | None,
    sample: int | None = None,
) -> Source:
    """A Hub dataset pinned to the commit ``revision`` resolves to; only the data files of ``splits`` (all when
    None) are downloaded, or with ``sample`` only the first ``sample`` rows of each split are streamed (what
    `detect` reads). Transient failures are retried; every failure is one :class:`SourceError`."""
    from huggingface_hub import HfApi, constants

    api = HfApi(endpoint=constants.ENDPOINT, token=hub_token(token))
    sha = with_retries(lambda: api.dataset_info(repo_id, revision=revision).sha, _error(repo_id, revision))
    kwargs = dict(name=config, data_dir=data_dir, revision=sha, token=token)
    files = with_retries(lambda: _split_files(repo_id, kwargs, splits), _error(repo_id, revision, splits))
    if sample is None:
        loaded = with_retries(lambda: _load(repo_id, kwargs, files), _error(repo_id, revision, splits))
        tables = {name: arrow_split(ds) for name, ds in loaded.items()}  # read in batches from Arrow files
    else:
        names = list(files) if files is not None else (splits or ["train"])
        tables = {s: _sample(repo_id, kwargs, s, sample, revision) for s in names}
    source = Source(repo_id, "hub", tables, revision=revision, sha=sha, config=config, data_dir=data_dir)
    if sample is not None:
        source.info["sample"] = sample
    return source


def _split_files(repo_id: str, kwargs: dict, splits: list[str] | None) -> dict[str, list[str]] | None:
    """The data files of the wanted splits (read from the repo listing; nothing is downloaded), or None when the
    builder does not list them (then every split is loaded)."""
    import datasets

    builder = datasets.load_dataset_builder(repo_id, **kwargs)
    data_files = builder.config.data_files
    if not data_files:
        return None
    data_files = {str(name): files for name, files in data_files.items()}  # NamedSplit keys
    available = list(data_files)
    missing = [s for s in splits or [] if s not in available]

    if missing:
        raise SourceError(
            f"split {missing[0]!r} not found in {repo_id!r}; available splits: {', '.join(available)}",
            f"pass one of them with --split (e.g. --split {available[0]})",
        )
    return {s: list(data_files[s]) for s in (splits or available)}


def _load(repo_id: str, kwargs: dict, files: dict[str, list[str]] | None) -> dict:
    import datasets

    if files is None:
        return dict(datasets.load_dataset(repo_id, **kwargs))
    loaded = datasets.load_dataset(
        repo_id, data_files=files, **{k: v for k, v in kwargs.items() if k != "data_dir"}
    )
    return {name: loaded[name] for name in files}


def _sample(repo_id: str, kwargs: dict, split: str, n: int, revision: str | None) -> pa.Table:
    """The first ``n`` rows of ``split``, streamed (nothing else is downloaded)."""
    import datasets

    def take() -> pa.Table:
        stream = datasets.load_dataset(repo_id, split=split, streaming=True, **kwargs)
        rows = list(stream.take(n))
        schema = stream.features.arrow_schema if stream.features is not None else None
        return pa.Table.from_pylist(rows, schema=schema)

    return with_retries(take, _error(repo_id, revision, [split]))


def _error(repo_id: str, revision: str | None, splits: list[str] | None = None):
    """Turn whatever the Hub clients raised into one SourceError (``attempts``: how many were made)."""

    def to_error(err: Exception, attempts: int) -> SourceError:
        from huggingface_hub import errors as hf_errors

        if isinstance(err, hf_errors.GatedRepoError):
            return _gated(repo_id)
        if isinstance(err, hf_errors.RepositoryNotFoundError):
            return SourceError(
                f"dataset {repo_id!r} was not found on the Hub (or it is private)",
                f"check the id; for a private dataset {LOGIN_HINT}; for a local file check the path",
            )
        if isinstance(err, hf_errors.RevisionNotFoundError):
            return SourceError(
                f"revision {revision!r} not found in dataset {repo_id!r}",
                "pass an existing branch, tag or commit sha to --revision",
            )
        if transient(err):
            return SourceError(
                f"cannot read {repo_id!r} from the Hub after {attempts} attempt(s) ({describe(err)})",
                "check your network (or HF_ENDPOINT) and run the same command again; HF_HUB_OFFLINE=1 reads the "
                "local cache only",
            )
        if isinstance(err, hf_errors.HfHubHTTPError):
            return _http_error(repo_id, err)
        if isinstance(err, FileNotFoundError) and "gated" in str(err).lower():
            return _gated(repo_id)
        return _load_error(repo_id, err)

    return to_error


def _load_error(repo_id: str, err: Exception) -> SourceError:
    message = (str(err).strip().splitlines() or [type(err).__name__])[0]
    lowered = message.lower()
    if "config" in lowered or "builderconfig" in lowered:
        return SourceError(f"{repo_id!r}: {message}", "pass one of the available configs with --config")
    if (
        isinstance(err, FileNotFoundError)
        or "data_dir" in lowered
        or "doesn't contain any data files" in lowered
    ):
        return SourceError(
            f"cannot load {repo_id!r}: {message}",
            "check --data-dir / --config: they must name a folder or config of the dataset",
        )
    return SourceError(f"cannot load {repo_id!r}: {message}", "run again with --debug for the full error")


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
