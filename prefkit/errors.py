"""The error hierarchy: every failure a user can cause is a PrefkitError with a hint.

The CLI prints ``Error: <message>`` and ``Hint: <hint>`` to stderr and exits 1 (docs/cli.md, Exit codes); the
Python API raises. With ``--json`` the CLI prints ``{"error", "hint", "exit_code"}`` on stdout as well.

An error names an option with :func:`option`, once: raised from Python it reads as the keyword
(``overwrite=True``), printed by the CLI as the flag (``--overwrite``); :meth:`PrefkitError.text` renders both.
"""

from __future__ import annotations

import errno
import importlib
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

_START, _END = "\ue000", "\ue001"  # private-use characters around an option mention
_MENTION = re.compile(f"{_START}([A-Za-z_][A-Za-z0-9_]*)(?:=(.*?))?{_END}", re.S)
_NO_VALUE = object()


def option(name: str, value: Any = _NO_VALUE) -> str:
    """A mention of the option ``name`` (its Python keyword, e.g. ``"min_margin"``) in an error's message or hint,
    optionally with a ``value``. Python shows the keyword, the CLI the flag: ``option("overwrite", True)`` is
    ``overwrite=True`` / ``--overwrite``; ``option("resume", False)`` is ``resume=False`` / ``--no-resume``;
    ``option("min_margin", 1)`` is ``min_margin=1`` / ``--min-margin 1``; ``option("top")`` is ``top=...`` /
    ``--top``. The flag is the keyword with dashes (the rule every command follows, ``tests/test_api.py``).
    """
    encoded = "" if value is _NO_VALUE else "=" + json.dumps(value)
    return f"{_START}{name}{encoded}{_END}"


def render(text: str | None, style: Literal["python", "cli"] = "python") -> str | None:
    """``text`` with each :func:`option` mention written for Python (the keyword) or for the CLI (the flag)."""
    if text is None or _START not in text:
        return text

    def one(match: re.Match) -> str:
        name, raw = match.group(1), match.group(2)
        value = _NO_VALUE if raw is None else json.loads(raw)
        if style == "python":
            return f"{name}=..." if value is _NO_VALUE else f"{name}={value!r}"
        flag = "--" + name.replace("_", "-")
        if value is _NO_VALUE or value is True:
            return flag
        if value is False:
            return "--no-" + name.replace("_", "-")
        return f"{flag} {value}"

    return _MENTION.sub(one, text)


class PrefkitError(Exception):
    """A problem the user can fix; ``hint`` says how. ``message`` and ``hint`` name options as Python keywords
    (``overwrite=True``); ``text("cli")`` gives both with the CLI's flags (``--overwrite``)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.raw_message, self.raw_hint = message, hint

    @property
    def message(self) -> str:
        return render(self.raw_message) or ""

    @message.setter
    def message(self, value: str) -> None:
        self.raw_message = value

    @property
    def hint(self) -> str | None:
        return render(self.raw_hint)

    @hint.setter
    def hint(self, value: str | None) -> None:
        self.raw_hint = value

    def text(self, style: Literal["python", "cli"] = "python") -> tuple[str, str | None]:
        """(message, hint) with options named as Python keywords or as CLI flags."""
        return render(self.raw_message, style) or "", render(self.raw_hint, style)

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class SourceError(PrefkitError):
    """A dataset could not be opened: missing repo, no access, bad split, unreadable file."""


class FormatError(PrefkitError):
    """The columns of a dataset match no known shape, or an option names a missing column."""


class SelectionError(PrefkitError):
    """A filter or selection option cannot be applied (e.g. --top on rows without a margin)."""


class OptionError(SelectionError):
    """An option has a value it cannot take (names the CLI flag and the Python keyword)."""


class PresetError(PrefkitError):
    """A preset is unknown or malformed."""


class OutputError(PrefkitError):
    """The output folder cannot be written or read."""


class EmptyResultError(OutputError):
    """A build would write an empty set or an empty split: nothing is written (exit code 4)."""

    exit_code = 4


class ModelError(PrefkitError):
    """A model or tokenizer cannot be loaded or does not fit the data."""


class HubError(PrefkitError):
    """Pushing to / talking with the Hub failed."""


class DependencyError(PrefkitError, ImportError):
    """An optional dependency (an extra of the prefkit package) is not installed; also an ``ImportError``, so
    ``except ImportError`` catches it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        PrefkitError.__init__(self, message, hint)


#: the pip extra that provides each optional module
EXTRAS = {
    "torch": "model",
    "transformers": "model",
    "matplotlib": "plot",
    "trl": "trl",
    "vllm": "vllm",
    "ray": "ray",
}


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` or raise :class:`DependencyError` naming the extra that installs it.

    ``what`` says what needs it ("`prefkit reflogps`", "--tokenizer").
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        extra = EXTRAS.get(top)
        install = f"pip install 'prefkit[{extra}]'" if extra else f"pip install {top}"
        raise DependencyError(f"{what} needs {top}, which is not installed ({err})", install) from None


#: errno -> (reason, what to do) for a failed write (:func:`os_error`)
WRITE_ERRORS = {
    errno.ENOSPC: ("the disk is full", "free space on that file system, or write the output elsewhere"),
    errno.EDQUOT: (
        "the disk quota is exceeded",
        "free space within your quota, or write the output elsewhere",
    ),
    errno.EFBIG: (
        "a file reached the file system's size limit",
        "write the output to another file system (FAT32 stops at 4 GB) or raise `ulimit -f`",
    ),
    errno.EROFS: ("the file system is read-only", "write the output to a writable folder"),
    errno.EACCES: ("permission denied", "make the folder writable for you, or write the output elsewhere"),
    errno.EPERM: ("permission denied", "make the folder writable for you, or write the output elsewhere"),
    errno.ENAMETOOLONG: (
        "a file name is too long",
        "use a shorter name (most file systems allow 255 bytes per name)",
    ),
}


def read_user_file(path: Path, error: type[PrefkitError], what: str, hint: str) -> str:
    """The text of a UTF-8 file the user named (a recipe, a chat template), or ``error`` (a
    :class:`PrefkitError` subclass): ``cannot read <what>: <why>`` with ``hint``."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"cannot read {what}: {err}", hint) from None


def os_error(err: OSError, path: Path | str | None) -> OutputError:
    """One line for a failed write: disk full, file too large, read-only file system, no permission, a name too
    long; the hint says what fixes that cause (and never names an option the command may lack)."""
    reason, fix = WRITE_ERRORS.get(
        err.errno or 0, (err.strerror or type(err).__name__, "check the folder and free space")
    )
    shown = str(path if path is not None else err.filename or "")
    if len(shown) > 120:
        shown = shown[:60] + "…" + shown[-40:]
    return OutputError(f"cannot write {shown!r}: {reason}", f"{fix}; nothing was left half-written")
