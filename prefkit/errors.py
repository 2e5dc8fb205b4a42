"""The error hierarchy: every failure a user can cause is a PrefkitError with a hint.

The CLI prints ``Error: <message>`` and ``Hint: <hint>`` to stderr and exits 1 (docs/cli.md, Exit codes); the
Python API raises. With ``--json`` the CLI prints ``{"error", "hint", "exit_code"}`` on stdout as well.
"""

from __future__ import annotations

import errno
import importlib
from pathlib import Path
from types import ModuleType


class PrefkitError(Exception):
    """A problem the user can fix; ``hint`` says how."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

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


class ModelError(PrefkitError):
    """A model or tokenizer cannot be loaded or does not fit the data."""


class HubError(PrefkitError):
    """Pushing to / talking with the Hub failed."""


class DependencyError(PrefkitError):
    """An optional dependency (an extra of the prefkit package) is not installed."""


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


def os_error(err: OSError, path: Path | str) -> OutputError:
    """One line for a failed write: disk full, read-only file system, no permission."""
    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
    }.get(err.errno or 0, err.strerror or type(err).__name__)
    return OutputError(
        f"cannot write {str(path)!r}: {reason}",
        "free space or choose a writable -o; nothing was left half-written",
    )
