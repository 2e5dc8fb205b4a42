"""What the selections need of a part: :class:`Selectable` (a :class:`prefkit.stream.Part` is one; the stream
owns the part, the selections only read and mark it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import polars as pl

if TYPE_CHECKING:
    from prefkit.formats.presets import Preset
    from prefkit.sources import Source
    from prefkit.sources.spec import SourceSpec
    from prefkit.spill import Spill


class Selectable(Protocol):
    """What the selections read and write of a part (:class:`prefkit.stream.Part` is one): its compact frame
    ``df`` (:mod:`prefkit.frame`), which they replace with marked copies, the upsampled ``copies`` they make, and
    what they read of its source."""

    df: pl.DataFrame
    copies: pl.DataFrame | None

    @property
    def src(self) -> Source: ...
    @property
    def spec(self) -> SourceSpec: ...
    @property
    def preset(self) -> Preset | None: ...
    @property
    def split(self) -> str: ...
    @property
    def out(self) -> str: ...
    @property
    def spill(self) -> Spill | None: ...
    @property
    def is_read(self) -> bool: ...
