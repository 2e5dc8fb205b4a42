"""The error hierarchy: every failure a user can cause is a PrefkitError with a hint.

The CLI prints ``Error: <message>`` and ``Hint: <hint>`` to stderr and exits 1; the Python API raises.
"""

from __future__ import annotations


class PrefkitError(Exception):
    """A problem the user can fix; ``hint`` says how."""

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


class OutputError(PrefkitError):
    """The output folder cannot be written or read."""


class ModelError(PrefkitError):
    """A model or tokenizer cannot be loaded or does not fit the data."""


class HubError(PrefkitError):
    """Pushing to / talking with the Hub failed."""
