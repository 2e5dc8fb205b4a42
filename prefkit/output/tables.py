"""The Arrow / polars pieces the export shapes share (:mod:`prefkit.output.exports`, :mod:`prefkit.output.kto`):
the provenance columns every shape keeps, the records' message type and per-row template fields, and the
conversions between a table and a polars frame."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

#: the columns that say where a row came from, kept by every shape
PROVENANCE = ("source", "source_index", "id")
PROVENANCE_FIELDS = [("source", pa.string()), ("source_index", pa.int64()), ("id", pa.string())]


def frame(table: pa.Table) -> pl.DataFrame:
    """The table as a polars frame (the same columns, zero-copy where Arrow allows)."""
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df


def plain_table(df: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    """The frame as an Arrow table of ``schema`` (polars' types cast to the shape's)."""
    return df.to_arrow().cast(schema)


def messages_type(table: pa.Table) -> pa.DataType:
    """The records' message-list type (with the optional message fields the set uses)."""
    return table.schema.field("prompt").type


def row_fields(table: pa.Table) -> list[pa.Field]:
    """The per-row template fields the records have (``tools``, ``chat_template_kwargs``)."""
    return [table.schema.field(f) for f in ("tools", "chat_template_kwargs") if f in table.column_names]
