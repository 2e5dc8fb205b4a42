"""The canonical preference record: defined once here, exported as Arrow/`datasets` features and JSON Schema.

One row = one preference pair in TRL's "conversational, explicit prompt" shape.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import polars as pl
import pyarrow as pa
import xxhash
from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "user", "assistant", "tool"]
NonBlank = Annotated[str, Field(min_length=1, pattern=r"\S")]

#: optional message fields the record carries (absent = null; a set has them only when a row uses them)
MESSAGE_FIELDS = ("reasoning_content", "tool_calls", "name", "tool_call_id")
#: optional row-level columns (TRL reads both when it renders a row)
ROW_FIELDS = ("tools", "chat_template_kwargs")
#: fields that hold arbitrary JSON: stored as JSON text, declared ``datasets.Json`` so loading gives objects
JSON_FIELDS = frozenset({"tool_calls", "tools", "chat_template_kwargs"})


class Message(BaseModel):
    """One chat turn: ``role`` and ``content``, plus what real conversations carry and chat templates read:
    ``reasoning_content`` (an assistant's thinking; ``thinking``/``reasoning`` in sources), ``tool_calls`` (an
    assistant's calls, OpenAI / transformers shape), ``name`` and ``tool_call_id`` (a tool's answer). In the
    data files every message of a set has the same fields (absent = null), as Arrow and TRL need."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str | None = None
    reasoning_content: str | None = Field(
        None, description="the assistant's reasoning (rendered by e.g. Qwen3)"
    )
    tool_calls: list[dict] | None = Field(None, description="tool calls of an assistant turn")
    name: str | None = Field(None, description="the tool that answered (tool messages)")
    tool_call_id: str | None = Field(None, description="the call a tool message answers")


class PreferenceRecord(BaseModel):
    """A validated preference pair.

    ``prompt`` is the whole history before the answer: an optional ``system`` message first, then user turns,
    each answered by an assistant turn (with its tool calls and the tools' answers), ending with ``user`` or with
    the tool results answering the last assistant turn's calls (:data:`PROMPT_ROLES`).
    ``chosen`` and ``rejected`` each hold the answer: one assistant message, or TRL's tool-calling shape (an
    assistant's tool calls, the tools' answers, ..., a final assistant message).
    """

    model_config = ConfigDict(extra="forbid")

    prompt: list[Message] = Field(
        min_length=1, description="history before the answer, ending with a user turn or tool results"
    )
    chosen: list[Message] = Field(min_length=1, description="the preferred answer")
    rejected: list[Message] = Field(min_length=1, description="the dispreferred answer")
    score_chosen: float | None = Field(None, description="source score/rating of the chosen answer")
    score_rejected: float | None = Field(None, description="source score/rating of the rejected answer")
    margin: float | None = Field(
        None, description="native margin (e.g. delta_score) or score_chosen - score_rejected"
    )
    source: str = Field(description="repo_id[:config]@revision, or a local path")
    source_index: int = Field(ge=0, description="row index in the source split")
    id: str = Field(description="stable hash of the normalised prompt/chosen/rejected")
    tools: list[dict] | None = Field(
        None, description="JSON schemas of the tools the row's template may offer"
    )
    chat_template_kwargs: dict | None = Field(
        None, description="extra template variables for this row (e.g. enable_thinking)"
    )

    @field_validator("prompt")
    @classmethod
    def _prompt_shape(cls, prompt: list[Message]) -> list[Message]:
        roles = ",".join(m.role for m in prompt)
        if not re.fullmatch(PROMPT_ROLES, roles):
            raise ValueError(
                "prompt must be [system?] user, then assistant turns (with the tool results of their calls) and "
                "user turns, ending with a user turn or tool results"
            )
        return prompt

    @field_validator("chosen", "rejected")
    @classmethod
    def _answer_shape(cls, answer: list[Message]) -> list[Message]:
        if not re.fullmatch(ANSWER_ROLES, ",".join(m.role for m in answer)):
            raise ValueError("an answer is assistant messages and tool answers, ending with an assistant")
        return answer


#: roles of an answer: an assistant message, or assistant tool calls, the tools' answers, ..., then the final
#: assistant message (TRL's tool-calling preference shape)
ANSWER_ROLES = r"assistant(,tool(,tool)*,assistant)*"
#: roles of a prompt, as the chat-message grammar allows them (OpenAI's and TRL's tool-calling conversations):
#: [system] user, then assistant turns (each with the tool results answering its calls) and user turns, ending
#: where an assistant answers next: with a user turn, or with the tool results of the last assistant's calls
#: (``user → assistant(tool_calls) → tool [→ user]``)
PROMPT_ROLES = r"(system,)?user((,assistant(,tool)+)*(,assistant)?,user)*(,assistant(,tool)+)*"


def message_type(fields: tuple[str, ...] = ()) -> pa.StructType:
    """The Arrow struct of a message: ``role``, ``content`` and the optional ``fields`` a set uses (strings;
    ``tool_calls`` as JSON text)."""
    return pa.struct([("role", pa.string()), ("content", pa.string()), *[(f, pa.string()) for f in fields]])


MESSAGE_TYPE = message_type()
MESSAGES_TYPE = pa.list_(MESSAGE_TYPE)


def arrow_schema(message_fields: tuple[str, ...] = (), row_fields: tuple[str, ...] = ()) -> pa.Schema:
    """Arrow schema of the data files, in column order. Plain ``string``/``list`` (not ``large_*``): what
    ``datasets`` writes and what TRL expects. ``message_fields``/``row_fields``: the optional ones the set uses."""
    messages = pa.list_(message_type(message_fields))
    return pa.schema(
        [
            ("prompt", messages),
            ("chosen", messages),
            ("rejected", messages),
            ("score_chosen", pa.float64()),
            ("score_rejected", pa.float64()),
            ("margin", pa.float64()),
            ("source", pa.string()),
            ("source_index", pa.int64()),
            ("id", pa.string()),
            *[(f, pa.string()) for f in row_fields],
        ]
    )


ARROW_SCHEMA = arrow_schema()
RECORD_COLUMNS: tuple[str, ...] = tuple(ARROW_SCHEMA.names)


def stable_ids(df: pl.DataFrame, row_fields: tuple[str, ...] = ()) -> pl.Series:
    """A stable 16-hex-digit hash (xxh3-64) of each row's normalised prompt/chosen/rejected (and the row-level
    ``tools``/``chat_template_kwargs`` a set uses) as compact JSON."""

    digest = xxhash.xxh3_64_hexdigest
    encoded = df.select(
        pl.struct("prompt", "chosen", "rejected", *row_fields).struct.json_encode()
    ).to_series()
    return pl.Series("id", [digest(s.encode()) for s in encoded], dtype=pl.String)


def used_fields(frames: list[pl.DataFrame]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(message fields, row fields) that some row of ``frames`` sets: what the set's schema holds."""
    message, row = set(), set()
    for df in frames:
        if not df.height:
            continue
        for column in ("prompt", "chosen", "rejected"):
            dtype = df.schema[column]
            inner = dtype.inner if isinstance(dtype, pl.List) else None
            fields = inner.fields if isinstance(inner, pl.Struct) else []
            names = [f.name for f in fields if f.name in MESSAGE_FIELDS]
            if names:
                found = df.select(
                    [
                        pl.col(column)
                        .list.eval(pl.element().struct.field(n).is_not_null())
                        .list.any()
                        .any()
                        .alias(n)
                        for n in names
                    ]
                )
                message |= {n for n in names if found[n][0]}
        row |= {f for f in ROW_FIELDS if f in df.columns and df[f].null_count() < df.height}
    return tuple(f for f in MESSAGE_FIELDS if f in message), tuple(f for f in ROW_FIELDS if f in row)


def plain_type(t: pa.DataType) -> pa.DataType:
    """``t`` with ``large_string``/``large_list`` replaced by ``string``/``list`` (what ``datasets`` writes)."""
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_list(t) or pa.types.is_list(t):
        return pa.list_(plain_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, plain_type(f.type)) for f in t])
    return t


def _pruned(column: str, fields: tuple[str, ...]) -> pl.Expr:
    keep = ("role", "content", *fields)
    return pl.col(column).list.eval(pl.struct([pl.element().struct.field(f) for f in keep])).alias(column)


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def to_json_text(value: Any) -> str | None:
    """A JSON field's value (``tools``, ``tool_calls``, ``chat_template_kwargs``) as compact JSON text, keys in
    the value's own order and null keys left out; strings are taken to be JSON text already; None stays None."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(_strip_nulls(value), ensure_ascii=False, separators=(",", ":"))


def record_ids(df: pl.DataFrame, fields: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())) -> pl.Series:
    """The ``id`` :func:`to_records` gives each row of ``df`` in a set whose schema holds ``fields``."""
    message_fields, row_fields = fields
    missing = [pl.lit(None, dtype=pl.String).alias(f) for f in row_fields if f not in df.columns]
    df = df.with_columns(*missing, *[_pruned(c, message_fields) for c in ("prompt", "chosen", "rejected")])
    return stable_ids(df, row_fields)


def to_records(
    df: pl.DataFrame,
    source_label: str,
    carry: tuple[str, ...] = (),
    fields: tuple[tuple[str, ...], tuple[str, ...]] = ((), ()),
) -> pa.Table:
    """Kept rows as an Arrow table with exactly the canonical schema (plain, not ``large_``, types) and the
    optional ``fields`` (message fields, row fields) the set uses, followed by the ``carry`` columns (extra
    columns of a prefkit set read as a source) with their own types."""
    message_fields, row_fields = fields
    for f in row_fields:
        if f not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.String).alias(f))
    df = df.with_columns(_pruned(c, message_fields) for c in ("prompt", "chosen", "rejected"))
    out = df.with_columns(pl.lit(source_label).alias("source"), stable_ids(df, row_fields))
    if "chat_template_kwargs" in row_fields:  # TRL does `**example.get("chat_template_kwargs", {})`: a null
        out = out.with_columns(pl.col("chat_template_kwargs").fill_null("{}"))  # would fail, `{}` is none
    table = out.select(*RECORD_COLUMNS, *row_fields, *carry).to_arrow()
    extra = [pa.field(c, plain_type(table.schema.field(c).type)) for c in carry]
    return table.cast(pa.schema([*arrow_schema(message_fields, row_fields), *extra]))


#: Columns `prefkit reflogps` adds.
REFLOGPS_FIELDS = [
    ("ref_chosen_logps", pa.float32()),
    ("ref_rejected_logps", pa.float32()),
    ("chosen_tokens", pa.int32()),
    ("rejected_tokens", pa.int32()),
]


_DTYPES = {
    pa.string(): "string",
    pa.large_string(): "large_string",
    pa.int64(): "int64",
    pa.int32(): "int32",
    pa.float64(): "float64",
    pa.float32(): "float32",
    pa.bool_(): "bool",
}


def _feature(t: pa.DataType, name: str | None = None) -> dict | str:
    """`datasets`' dict form of one Arrow type (the subset prefkit writes); JSON fields (JSON text) are
    ``Json``, so ``datasets`` gives them back as objects."""
    if name in JSON_FIELDS and (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return {"_type": "Json"}
    if t in _DTYPES:
        return {"dtype": _DTYPES[t], "_type": "Value"}
    if pa.types.is_struct(t):
        return {t.field(i).name: _feature(t.field(i).type, t.field(i).name) for i in range(t.num_fields)}
    if pa.types.is_list(t):
        return {"feature": _feature(t.value_type), "_type": "List"}
    raise TypeError(f"no datasets feature for Arrow type {t}")


def features_dict(schema: pa.Schema = ARROW_SCHEMA) -> dict:
    """The ``datasets`` features of an Arrow schema as a dict (``Features.to_dict()`` form), without importing
    ``datasets``; falls back to ``datasets`` for types prefkit does not write itself."""
    try:
        return {f.name: _feature(f.type, f.name) for f in schema}
    except TypeError:
        import datasets

        return datasets.Features.from_arrow_schema(schema.remove_metadata()).to_dict()


def features_yaml(features: dict) -> list[dict]:
    """The card (YAML) form ``[{name, dtype | list | struct}]`` of a features dict, as ``datasets`` writes it."""

    def item(name: str, feat: dict) -> dict:
        kind = feat.get("_type")
        if kind == "Value":
            return {"name": name, "dtype": feat["dtype"]}
        if kind == "Json":
            return {"name": name, "dtype": "json"}
        if kind in ("List", "Sequence"):
            inner = item(name, feat["feature"])
            inner.pop("name")
            key, value = next(iter(inner.items()))
            return {"name": name, "list": value if key in ("struct", "list") else inner[key]}
        if kind is None:  # a struct: plain dict of fields
            return {"name": name, "struct": [item(k, v) for k, v in feat.items()]}
        raise TypeError(f"cannot describe feature type {kind!r} in a card")

    return [item(name, feat) for name, feat in features.items()]


def features(schema: pa.Schema = ARROW_SCHEMA):
    """The ``datasets.Features`` of the canonical record."""
    import datasets

    return datasets.Features.from_arrow_schema(schema)


def json_schema() -> dict:
    """JSON Schema of one canonical record (what ``schemas/record.schema.json`` holds)."""
    schema = same_for_every_pydantic(PreferenceRecord.model_json_schema())
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/prefkit/prefkit/schemas/record.schema.json"
    return schema


def same_for_every_pydantic(node: Any) -> Any:
    """The schema written the same whatever pydantic (>= 2.6) made it: a one-value ``Literal`` as ``const`` with
    its ``type`` (2.7 - 2.9 add a one-item ``enum``, 2.6 leaves out the type), and a free-form object
    (``dict[str, Any]``) with ``additionalProperties: true`` (written only by newer releases)."""
    if isinstance(node, dict):
        if "const" in node and node.get("enum") == [node["const"]]:
            del node["enum"]
        if isinstance(node.get("const"), str) and "type" not in node:
            node["type"] = "string"
        if node.get("type") == "object" and "properties" not in node and "additionalProperties" not in node:
            node["additionalProperties"] = True
        for value in node.values():
            same_for_every_pydantic(value)
    elif isinstance(node, list):
        for value in node:
            same_for_every_pydantic(value)
    return node


def write_json_schema(path: Path) -> Path:
    """Write :func:`json_schema` to ``path`` (the repository keeps it as ``schemas/record.schema.json``:
    ``python scripts/export_schemas.py``)."""
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
    return path


def _decoded(value):
    return json.loads(value) if isinstance(value, str) else value


def decode_messages(messages: list[dict] | None) -> list[dict] | None:
    """Messages as a chat template expects them: JSON-text ``tool_calls`` as objects, null fields left out."""
    if messages is None:
        return None
    out = []
    for m in messages:
        m = {k: v for k, v in dict(m).items() if v is not None}
        if "tool_calls" in m:
            m["tool_calls"] = _decoded(m["tool_calls"])
        out.append(m)
    return out


def decode_row(row: dict) -> dict:
    """A data-file row as TRL sees it after ``datasets`` decodes it: messages via :func:`decode_messages`,
    ``tools`` / ``chat_template_kwargs`` as objects (absent when null)."""
    out = dict(row)
    for column in ("prompt", "chosen", "rejected"):
        if isinstance(out.get(column), list):
            out[column] = decode_messages(out[column])
    for column in ROW_FIELDS:
        if out.get(column) is None:
            out.pop(column, None)
        else:
            out[column] = _decoded(out[column])
    return out


def template_extras(row: dict) -> dict | None:
    """What TRL passes to the chat template besides the messages for this row: ``tools`` and the row's
    ``chat_template_kwargs`` (``trl.DPOTrainer._prepare_dataset``), or None when the row has neither."""
    tools = _decoded(row.get("tools"))
    kwargs = _decoded(row.get("chat_template_kwargs")) or {}
    if tools is None and not kwargs:
        return None
    return {"tools": tools, **kwargs}


def frame_rows(df: pl.DataFrame) -> tuple[list, list, list, list]:
    """(prompts, chosen, rejected, template extras) of a frame of records, decoded as TRL sees them."""
    columns = [c for c in ("tools", "chat_template_kwargs") if c in df.columns]
    extras = (
        [template_extras(r) for r in df.select(columns).iter_rows(named=True)]
        if columns
        else [None] * df.height
    )
    prompts, chosen, rejected = (
        [decode_messages(m) for m in df[c].to_list()] for c in ("prompt", "chosen", "rejected")
    )
    return prompts, chosen, rejected, extras
