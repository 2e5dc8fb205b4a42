"""One split of one source on its way through a build (:class:`Part`): what planning decided of it, fixed from
then on, and what the two passes and the selections make of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import polars as pl
import pyarrow as pa

if TYPE_CHECKING:
    from prefkit.formats.base import ColumnMapping
    from prefkit.formats.presets import Preset
    from prefkit.sources import Source
    from prefkit.sources.spec import SourceSpec
    from prefkit.sources.splits import LazySplit
    from prefkit.spill import Spill


@dataclass(eq=False)
class Part:
    """One split of one source: the source split, how it maps, the classified rows.

    The first eight fields are what planning decided (``Final``: never reassigned). Pass 1
    (:func:`prefkit.stream.read_part`) sets the rest: ``df`` holds one compact row per candidate pair
    (:mod:`prefkit.frame`: ``source_index``, ``stage``, ``reason``, ``detail``, ``margin``, ``flag_*``, and the keys
    a selection compares), never the messages: those of the rows that may still be kept are in ``spill`` (with
    ``_row``, the row's place in ``df``), and the source fields the rejects list are in ``originals``
    (:mod:`prefkit.spill`). The selections (:mod:`prefkit.select`) replace ``df`` with marked copies and set
    ``copies``."""

    src: Final[Source]
    spec: Final[SourceSpec]
    preset: Final[Preset | None]
    split: Final[str]
    #: the output split it goes to
    out: Final[str]
    #: the source split: a table or a lazy reader (:mod:`prefkit.sources.splits`)
    raw: Final[pa.Table | LazySplit]
    mapping: Final[ColumnMapping]
    #: the source columns read (and kept in rejects)
    read_columns: Final[list[str]]
    _df: pl.DataFrame | None = field(default=None, init=False, repr=False)
    #: the upsampled copies of kept rows (``_prow``: the row each repeats)
    copies: pl.DataFrame | None = None
    #: source columns no mapping reads: their non-null counts
    unused: dict[str, int] | None = None
    #: the types of the columns read
    raw_schema: pa.Schema | None = None
    #: messages of the rows that may still be kept
    spill: Spill | None = None
    #: source rows the rejects list with their fields
    originals: Spill | None = None
    #: the spill's columns, no row
    template: pl.DataFrame | None = None

    @property
    def df(self) -> pl.DataFrame:
        """The compact frame (pass 1 reads it; ``RuntimeError`` before)."""
        if self._df is None:
            raise RuntimeError(f"{self.src.label} ({self.split}) has not been read yet")
        return self._df

    @df.setter
    def df(self, frame: pl.DataFrame) -> None:
        self._df = frame

    @property
    def is_read(self) -> bool:
        """Whether pass 1 has read it (``df`` is set)."""
        return self._df is not None
