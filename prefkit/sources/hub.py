"""Hub sources: datasets through the real ``datasets``/``huggingface_hub`` clients, pinned to a commit sha, and
snapshots of model/tokenizer repos (:func:`fetch_snapshot`), with one-line errors for every Hub failure.

``HF_ENDPOINT``, tokens and caches work as users expect: the clients read them, prefkit does not.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefkit.errors import ModelError, SourceError

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from prefkit.sources import Source

LOGIN_HINT = "log in with `hf auth login` or set HF_TOKEN (or pass --token)"


#: HTTP statuses worth retrying (the Hub busy or restarting), and the default retries / first wait
RETRY_STATUS = {429, 500, 502, 503, 504}
RETRIES = 4


def backoff_seconds() -> float:
    """The first wait between retries (doubling each time); ``PREFKIT_HUB_BACKOFF`` overrides the 2 s default."""
    try:
        return float(os.environ.get("PREFKIT_HUB_BACKOFF", "2"))
    except ValueError:
        return 2.0


#: seconds a Hub request may wait to connect and for each read before it fails (then it is retried)
DEFAULT_TIMEOUT = 60.0


def request_timeout() -> float:
    """Seconds one Hub request waits to connect, and between bytes of the answer, before it fails:
    ``PREFKIT_HUB_TIMEOUT`` (default 60). A failed request is retried ``RETRIES`` times (:func:`with_retries`), so
    a Hub that never answers ends a command after at most ``(RETRIES + 1) * timeout`` seconds plus the backoff."""
    raw = os.environ.get("PREFKIT_HUB_TIMEOUT", "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        value = DEFAULT_TIMEOUT
    return value if value > 0 and value == value else DEFAULT_TIMEOUT


def bound_requests() -> None:
    """Give every request of ``huggingface_hub`` (HfApi, downloads, and ``datasets``, which uses its session) a
    bound of :func:`request_timeout` seconds wherever it sets none: its client, and HfApi's calls
    (``timeout=None``), wait forever for an answer. A client factory the caller set with
    ``huggingface_hub.set_client_factory`` is left alone."""
    from huggingface_hub.utils import _http

    if hasattr(_http, "set_client_factory"):  # huggingface_hub >= 1.0: httpx clients
        if getattr(_http, "_GLOBAL_CLIENT_FACTORY", None) is not getattr(_http, "default_client_factory", None):
            return  # the caller's own client (or ours, already set)
        _http.set_client_factory(_bounded_client)
        return
    # huggingface_hub < 1.0 (transformers 4.x needs it): requests sessions
    if getattr(_http, "_GLOBAL_BACKEND_FACTORY", None) is not getattr(_http, "_default_backend_factory", None):
        return
    getattr(_http, "configure_http_backend")(backend_factory=_bounded_session)  # noqa: B009 (< 1.0 only)


def _bounded_session() -> Any:
    """huggingface_hub < 1.0's default requests session, whose calls get :func:`request_timeout` when they set
    no timeout (``timeout=None`` included)."""
    from huggingface_hub.utils import _http

    session = getattr(_http, "_default_backend_factory")()  # noqa: B009 (absent from huggingface_hub >= 1.0)
    send = session.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = request_timeout()
        return send(method, url, *args, **kwargs)

    session.request = request
    return session


def _bounded_client() -> Any:
    """huggingface_hub's default client, with a request hook that fills in the timeouts a call left unset."""
    from huggingface_hub.utils import _http

    client = _http.default_client_factory()
    hooks = client.event_hooks
    client.event_hooks = {**hooks, "request": [*hooks.get("request", []), _fill_timeouts]}
    return client


def _fill_timeouts(request: Any) -> None:
    seconds = request_timeout()
    timeouts = dict(request.extensions.get("timeout") or {})
    request.extensions["timeout"] = {
        key: timeouts.get(key) if timeouts.get(key) is not None else seconds
        for key in ("connect", "read", "write", "pool")
    }


def hub_token(token: str | bool | None) -> str | bool | None:
    """``token`` unchanged, after refusing (:func:`prefkit.secrets.check_token`) the one a request would send when
    it holds whitespace or control characters: an explicit token, else ``HF_TOKEN`` /
    ``HUGGING_FACE_HUB_TOKEN``. Also bounds the requests (:func:`bound_requests`)."""
    from prefkit.secrets import check_token

    if isinstance(token, str):
        check_token(token, "--token (token=)")
    elif token is None:
        name = next((n for n in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") if os.environ.get(n)), None)
        if name:
            check_token(os.environ[name], name)
    bound_requests()
    return token


def http_status(err: BaseException) -> int | None:
    return getattr(getattr(err, "response", None), "status_code", None)


def _transport_errors() -> tuple[type[BaseException], ...]:
    classes: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for name in ("httpx2", "httpx", "requests"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        for attr in ("TransportError", "ConnectionError", "Timeout"):
            cls = getattr(module, attr, None) or getattr(getattr(module, "exceptions", None), attr, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                classes.append(cls)
    return tuple(classes)


def _request_errors() -> tuple[type[BaseException], ...]:
    """Failures of the request itself (a header it cannot send, a bad URL or scheme): the same request fails the
    same way, so they are never retried."""
    classes: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        for attr in ("LocalProtocolError", "UnsupportedProtocol", "InvalidURL"):
            cls = getattr(module, attr, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                classes.append(cls)
    return tuple(classes)


def transient(err: BaseException) -> bool:
    """Worth retrying: the network failed, the Hub was busy, or a branch moved under a commit (412); never a
    request that cannot be sent (:func:`_request_errors`, e.g. a token with a newline in its header)."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        return False
    seen: list[BaseException] = []
    link: BaseException | None = err
    while link is not None and link not in seen and len(seen) < 8:  # the error and what it was raised from
        if isinstance(link, _request_errors()):
            return False
        if isinstance(link, _transport_errors()) or http_status(link) in (*RETRY_STATUS, 412):
            return True
        seen.append(link)
        link = link.__cause__ or link.__context__
    return False


def describe(err: BaseException) -> str:
    """``HTTP 503`` or ``ConnectError: …`` (secrets masked)."""
    from prefkit.secrets import redact

    status = http_status(err)
    first = (str(err).strip().splitlines() or [""])[0]
    if status:
        return f"HTTP {status}"
    if isinstance(err, TimeoutError) or "Timeout" in type(err).__name__:
        first = f"no answer within {request_timeout():g} s (PREFKIT_HUB_TIMEOUT)"
    return redact(f"{type(err).__name__}: {first}".rstrip(": "))


def with_retries(fn, to_error, retries: int = RETRIES, backoff: float | None = None):
    """Call ``fn``; on a transient failure wait ``backoff * 2**n`` seconds and call it again (at most ``retries``
    times); any other failure, or the last one, becomes ``to_error(err, attempts)`` (a PrefkitError passes)."""
    from prefkit.errors import PrefkitError

    backoff = backoff_seconds() if backoff is None else backoff
    for n in range(retries + 1):
        try:
            return fn()
        except PrefkitError:
            raise
        except Exception as err:
            if not transient(err) or n == retries:
                raise to_error(err, n + 1) from err
            wait = backoff * 2**n
            logger.warning(f"Hub request failed ({describe(err)}); retry {n + 1} of {retries} in {wait:.0f}s")
            time.sleep(wait)
    raise AssertionError("unreachable")


def load_hub(
    repo_id: str,
    *,
    splits: list[str] | None,
    revision: str | None,
    config: str | None,
    data_dir: str | None,
    token: str | bool | None,
) -> Source:
    """A Hub dataset pinned to the commit ``revision`` resolves to; only the data files of ``splits`` (all when
    None) are downloaded. Transient failures are retried; every failure is one :class:`SourceError`."""
    from huggingface_hub import HfApi, constants

    from prefkit.sources import Source

    api = HfApi(endpoint=constants.ENDPOINT, token=hub_token(token))
    sha = with_retries(lambda: api.dataset_info(repo_id, revision=revision).sha, _error(repo_id, revision))
    kwargs = dict(name=config, data_dir=data_dir, revision=sha, token=token)
    files = with_retries(lambda: _split_files(repo_id, kwargs, splits), _error(repo_id, revision, splits))
    loaded = with_retries(lambda: _load(repo_id, kwargs, files), _error(repo_id, revision, splits))
    from prefkit.sources.splits import arrow_split

    tables = {
        name: arrow_split(ds) for name, ds in loaded.items()
    }  # read in batches from datasets' Arrow files
    return Source(repo_id, "hub", tables, revision=revision, sha=sha, config=config, data_dir=data_dir)


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


def sample_hub(
    repo_id: str,
    *,
    splits: list[str] | None,
    revision: str | None,
    config: str | None,
    data_dir: str | None,
    token: str | bool | None,
    n: int,
) -> Source:
    """The first ``n`` rows of each wanted split, streamed: what `detect` reads (nothing else is downloaded)."""
    import datasets
    import pyarrow as pa
    from huggingface_hub import HfApi, constants

    from prefkit.sources import Source

    api = HfApi(endpoint=constants.ENDPOINT, token=hub_token(token))
    sha = with_retries(lambda: api.dataset_info(repo_id, revision=revision).sha, _error(repo_id, revision))
    kwargs = dict(name=config, data_dir=data_dir, revision=sha, token=token)
    files = with_retries(lambda: _split_files(repo_id, kwargs, splits), _error(repo_id, revision, splits))

    def take(split: str) -> Any:
        stream = datasets.load_dataset(repo_id, split=split, streaming=True, **kwargs)
        rows = list(stream.take(n))
        schema = stream.features.arrow_schema if stream.features is not None else None
        return pa.Table.from_pylist(rows, schema=schema)

    names = list(files) if files is not None else (splits or ["train"])
    tables = {s: with_retries(lambda s=s: take(s), _error(repo_id, revision, [s])) for s in names}
    source = Source(repo_id, "hub", tables, revision=revision, sha=sha, config=config, data_dir=data_dir)
    source.info["sample"] = n
    return source


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

    hub_token(None)
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
