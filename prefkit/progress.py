"""Progress bars and status lines on stderr (never stdout, which is for data)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled(quiet: bool = False) -> bool:
    """Progress is shown on an interactive stderr unless -q."""
    return not quiet and sys.stderr.isatty()


def track(
    items: Iterable[T], *, desc: str, total: int | None = None, show: bool = True, unit: str = "it"
) -> Iterator[T]:
    """Iterate with a tqdm bar on stderr when ``show``."""
    if not show:
        yield from items
        return
    from tqdm.auto import tqdm

    yield from tqdm(
        items, desc=desc, total=total, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True
    )


def bar(*, desc: str, total: int | None = None, show: bool = True, unit: str = "it"):
    """A tqdm bar on stderr (disabled unless ``show``); use as a context manager and ``.update(n)``."""
    from tqdm.auto import tqdm

    return tqdm(
        desc=desc, total=total, unit=unit, file=sys.stderr, disable=not show, leave=False, dynamic_ncols=True
    )
