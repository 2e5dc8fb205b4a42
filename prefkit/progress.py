"""Progress bars and status lines on stderr (never stdout, which is for data)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def quiet_libraries() -> None:
    """Silence the progress bars of the libraries prefkit calls (``huggingface_hub``, ``datasets``,
    ``transformers``, which follows ``huggingface_hub``): what ``-q`` means for their output too. The CLI calls
    this for every command given ``-q``/``--quiet``; their warnings stay."""

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when they are imported
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # transformers reads this flag when it is imported
    if "datasets" in sys.modules:
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


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
