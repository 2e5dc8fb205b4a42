"""The Hub client every Hub user of prefkit imports: tokens, request timeouts, retries with backoff for a busy Hub,
one-line descriptions of Hub errors, and snapshots of model/tokenizer repos (:func:`fetch_snapshot`).

``HF_ENDPOINT``, tokens and caches work as users expect: ``huggingface_hub`` reads them, prefkit does not.
Datasets are read by :mod:`prefkit.sources.hub`; pushes by :mod:`prefkit.publish.hub`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from prefkit.errors import ModelError, PrefkitError
from prefkit.secrets import check_token, redact

logger = logging.getLogger(__name__)

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
