"""Secrets never leave the machine: every command line, environment value or message prefkit records, prints or
publishes goes through :func:`redact` (or :func:`redact_argv`) first.

Redacted: the value of any option whose name says it is a secret (``--token``, ``--token=…``, ``--api-key`` …),
the values of the token environment variables (``HF_TOKEN`` …) wherever they appear, and any string that looks
like an access token (Hugging Face ``hf_…`` / ``api_org_…``, OpenAI ``sk-…``, GitHub ``ghp_…``/``github_pat_…``,
AWS ``AKIA…``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import overload

MASK = "***"
#: option names whose value is a secret (``--token`` and ``--token=…``)
SECRET_OPTIONS = ("--token", "--hf-token", "--api-key", "--password", "--secret")
#: environment variables holding tokens (their values are redacted wherever they appear)
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN", "OPENAI_API_KEY", "GITHUB_TOKEN")
TOKEN_LIKE = re.compile(
    r"\b(?:hf_(?=[a-z]*[A-Z0-9])[A-Za-z0-9]{6,}|api_org_[A-Za-z0-9]{6,}|sk-[A-Za-z0-9_-]{16,}|ghp_[A-Za-z0-9]{16,}"
    r"|github_pat_[A-Za-z0-9_]{16,}|AKIA[0-9A-Z]{16})"
)


def _env_secrets() -> list[str]:
    return [v for v in (os.environ.get(name, "") for name in SECRET_ENV) if len(v) >= 4]


@overload
def redact(text: str) -> str: ...
@overload
def redact(text: None) -> None: ...
def redact(text: str | None) -> str | None:
    """``text`` with every secret it holds replaced by ``***``."""
    if not text:
        return text
    for secret in _env_secrets():
        text = text.replace(secret, MASK)
    return TOKEN_LIKE.sub(MASK, text)


def redact_argv(argv: Iterable[str]) -> list[str]:
    """A command's arguments with secret option values (``--token X``, ``--token=X``) and token-like strings masked."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        name, eq, _ = arg.partition("=")
        if name in SECRET_OPTIONS:
            if eq:
                out.append(f"{name}={MASK}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(redact(arg) or arg)
    return out
