"""Arbitrary JSON a record carries (``tool_calls`` of a message, a row's ``tools`` and ``chat_template_kwargs``)
as JSON text, so rows with different keys fit one Arrow schema; the data files declare them ``datasets.Json``
and loading gives the objects back.

A JSON source read by Arrow gives such values as structs whose keys are the union over all rows, absent keys
being null; they are written back without their null keys, i.e. as the source row held them (a key whose value
really was null is left out too).
"""

from __future__ import annotations

import pyarrow as pa

from prefkit.record import ROW_FIELDS, to_json_text


def _text_column(column: pa.ChunkedArray) -> pa.Array:
    return pa.array([to_json_text(v) for v in column.to_pylist()], pa.string())


def _messages_with_text_tool_calls(column: pa.ChunkedArray) -> pa.Array:
    rows = column.to_pylist()
    for messages in rows:
        for m in messages or []:
            if m is not None and "tool_calls" in m:
                m["tool_calls"] = to_json_text(m["tool_calls"])
    return pa.array(rows)


def _needs_text(dtype: pa.DataType) -> bool:
    return not (pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_null(dtype))


def with_json_text(table: pa.Table, message_columns: list[str]) -> pa.Table:
    """``table`` with row-level JSON fields and messages' ``tool_calls`` as JSON text (only what is not text yet;
    the Python pass runs on those columns only)."""
    for name in ROW_FIELDS:
        if name in table.column_names and _needs_text(table.schema.field(name).type):
            table = table.set_column(table.column_names.index(name), name, _text_column(table.column(name)))
    for name in message_columns:
        dtype = table.schema.field(name).type
        if not pa.types.is_list(dtype) and not pa.types.is_large_list(dtype):
            continue
        item = dtype.value_type
        has_calls = pa.types.is_struct(item) and item.get_field_index("tool_calls") >= 0
        if has_calls and _needs_text(item.field("tool_calls").type):
            table = table.set_column(
                table.column_names.index(name), name, _messages_with_text_tool_calls(table.column(name))
            )
    return table
