"""Secrets never leave the machine: every command line, environment value or message prefkit records, prints or
publishes goes through :func:`redact` (or :func:`redact_argv`) first.

Redacted: the value of any option whose name says it is a secret (``--token``, ``--token=…``, ``--api-key`` …),
the values of the token environment variables (``HF_TOKEN`` …) wherever they appear, and any string that looks
like an access token (Hugging Face ``hf_…`` / ``api_org_…``, OpenAI ``sk-…``, GitHub ``ghp_…``/``github_pat_…``,
AWS ``AKIA…``). A known secret (an environment value, or one given with :func:`remember`, e.g. an explicit
``--token``) is masked in every form a message may show it in: as it is, stripped, escaped the way ``repr``, JSON
and a ``bytes`` repr escape it, and each of its pieces between whitespace or control characters.

:func:`check_token` refuses a token with whitespace or control characters before any request sends it (an HTTP
header cannot hold them; the HTTP client's error would print the token).
"""

from __future__ import annotations

import json
import logging
import os
import re
import traceback
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import overload

from prefkit.errors import OptionError

MASK = "***"
#: option names whose value is a secret (``--token`` and ``--token=…``)
SECRET_OPTIONS = ("--token", "--hf-token", "--api-key", "--password", "--secret")
#: environment variables holding tokens (their values are redacted wherever they appear)
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN", "OPENAI_API_KEY", "GITHUB_TOKEN")
TOKEN_LIKE = re.compile(
    r"\b(?:hf_(?=[a-z]*[A-Z0-9])[A-Za-z0-9]{6,}|api_org_[A-Za-z0-9]{6,}|sk-[A-Za-z0-9_-]{16,}|ghp_[A-Za-z0-9]{16,}"
    r"|github_pat_[A-Za-z0-9_]{16,}|AKIA[0-9A-Z]{16})"
    # the rest of a token broken by an escaped or literal line break / tab (a token file's newline inside it)
    r"(?:(?:\\[nrt]|[\r\n\t])+[A-Za-z0-9_-]+)*"
)
#: characters a token may not hold: whitespace, control characters and anything outside printable ASCII (an HTTP
#: header cannot carry them)
BAD_TOKEN_CHARS = re.compile(r"[^\x21-\x7e]")
#: a secret shorter than this is not masked (it would mask ordinary words)
MIN_SECRET = 4
#: pieces of a secret (between whitespace / control characters) shorter than this are not masked on their own
MIN_PIECE = 6
_remembered: set[str] = set()


def remember(secret: str | None) -> None:
    """Mask ``secret`` (e.g. the value of an explicit ``--token``) in everything redacted from now on."""
    if secret and len(secret.strip()) >= MIN_SECRET:
        _remembered.add(secret)


def forms(secret: str) -> set[str]:
    """Every way a message may show ``secret``: as it is, stripped, escaped (``repr``, JSON, ``bytes`` repr), and
    its pieces between whitespace / control characters (those of at least ``MIN_PIECE`` characters)."""
    out = {secret, secret.strip(), repr(secret)[1:-1], json.dumps(secret)[1:-1]}
    out.add(repr(secret.encode("utf-8", "backslashreplace"))[2:-1])
    out = {f for f in out if len(f) >= MIN_SECRET}
    pieces = re.split(r"[\s\x00-\x1f\x7f]+", secret)
    return out | {p for p in pieces if len(p) >= MIN_PIECE} if len(pieces) > 1 else out


def _known_secrets() -> list[str]:
    values = [os.environ.get(name, "") for name in SECRET_ENV] + sorted(_remembered)
    found = {f for v in values if len(v.strip()) >= MIN_SECRET for f in forms(v)}
    return sorted(found, key=len, reverse=True)  # the longest form first: a piece never splits a whole


@overload
def redact(text: str) -> str: ...
@overload
def redact(text: None) -> None: ...
def redact(text: str | None) -> str | None:
    """``text`` with every secret it holds replaced by ``***``."""
    if not text:
        return text
    for secret in _known_secrets():
        text = text.replace(secret, MASK)
    return TOKEN_LIKE.sub(MASK, text)


def check_token(token: str | None, origin: str) -> None:
    """Refuse a token holding whitespace or control characters (a newline at the end of a secret file, a pasted
    space) before it is sent; ``origin`` says where it came from (``--token``, ``HF_TOKEN``).

    Raises :class:`prefkit.errors.OptionError` (the token itself is never shown). Remembers the token for
    :func:`redact`."""
    if not token:
        return
    remember(token)
    bad = BAD_TOKEN_CHARS.search(token)
    if bad is None:
        return

    where = "at its end" if not token[bad.start() :].strip() else f"at character {bad.start() + 1}"
    char = bad.group()
    kind = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab", " ": "a space"}.get(char) or (
        "a control character"
        if char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F
        else "a non-ASCII character"
    )
    hint = (
        "copy the token again from your Hugging Face settings (Access Tokens)"
        if kind == "a non-ASCII character"
        else "remove whitespace from the token, e.g. for a secret file: export HF_TOKEN=\"$(tr -d '[:space:]' < FILE)\""
    )
    raise OptionError(
        f"the Hugging Face token from {origin} holds {kind} {where}; a token is one word of printable ASCII",
        hint,
    )


def redact_argv(argv: Iterable[str]) -> list[str]:
    """A command's arguments with secret option values (``--token X``, ``--token=X``) and token-like strings masked."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            remember(arg)
            out.append(MASK)
            hide_next = False
            continue
        name, eq, value = arg.partition("=")
        if name in SECRET_OPTIONS:
            remember(value)
            if eq:
                out.append(f"{name}={MASK}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(redact(arg) or arg)
    return out


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in each record's message (installed by :func:`guard_output`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def guard_output() -> None:
    """Mask secrets in what the standard handlers print: log records (the last-resort handler and the root
    logger's handlers) and warnings. The CLI calls this once, before a command runs."""
    handlers = [logging.lastResort, *logging.getLogger().handlers]
    for handler in handlers:
        if handler is not None and not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    if not getattr(warnings.formatwarning, "_prefkit_redacts", False):
        original = warnings.formatwarning

        def formatwarning(*args, **kwargs) -> str:
            return redact(original(*args, **kwargs)) or ""

        formatwarning._prefkit_redacts = True  # type: ignore[attr-defined]
        warnings.formatwarning = formatwarning


def redacted_traceback() -> str:
    """The traceback of the exception being handled (what ``--debug`` prints), secrets masked."""

    return redact(traceback.format_exc()) or ""


def public_path(spec: str) -> str:
    """A local path without machine details: a relative path inside the working folder as typed (``./`` left
    out), anything else (absolute, ``~``, ``..``) by its base name."""
    path = Path(spec)
    if path.is_absolute() or spec.startswith("~") or ".." in path.parts:
        return path.name or spec
    return path.as_posix()
