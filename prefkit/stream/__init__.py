"""The two passes of a build over its rows, batch by batch, so memory follows the batch size and not the sources.

**Pass 1** (:func:`read_part`, one split of one source): every batch is normalised, validated and filtered
(row-local stages); what the build keeps of it is compact: one row per candidate pair in ``part.df`` (a
:class:`Part`; the columns: :mod:`prefkit.frame`)
(``source_index``, ``stage``, ``reason``, ``detail``, ``margin``, ``flag_*``, and the keys selections compare: content
and prompt hashes, which optional fields the row uses). The messages of the rows that may still be kept go to the
part's spill (with ``--top N`` only the rows among the best N so far), the source fields of the rows the rejects
will list go to its originals spill (:mod:`prefkit.spill`). ``--top`` / ``--max-rows`` then choose on ``part.df``.

Selections across the parts (weights, dedup, the quality pass, the leak-free split: :mod:`prefkit.select`) work on
the compact frames; the quality pass reads the kept rows' messages back from the spills batch by batch.

**Pass 2** (:func:`write_set`): per output split, the kept rows are read back from the spills in output order
(:func:`prefkit.spill.gather`), made records (ids over the set's fields), rendered or exported, and written to data
shards as they come (:class:`prefkit.output.ShardWriter`); statistics are accumulated per row
(:class:`prefkit.output.stats.SplitStats`); rejects are joined with their source fields and streamed to
``rejects/<split>.parquet``.

A split that fits in one batch goes through the same code in one batch.
"""

from prefkit.stream.part import Part
from prefkit.stream.read import Needs, classify_batch, read_part, used_fields
from prefkit.stream.write import count_parts, refused_rows, write_set

__all__ = [
    "Needs",
    "Part",
    "classify_batch",
    "count_parts",
    "read_part",
    "refused_rows",
    "used_fields",
    "write_set",
]
