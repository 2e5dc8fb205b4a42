"""The canonical preference record: defined once here, exported as Arrow/`datasets` features and JSON Schema.

One row = one preference pair in TRL's "conversational, explicit prompt" shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import polars as pl
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "user", "assistant"]
NonBlank = Annotated[str, Field(min_length=1, pattern=r"\S")]


class Message(BaseModel):
    """One chat turn. Always exactly ``{role, content}`` strings (homogeneous structs for Arrow and TRL)."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: NonBlank


class AssistantMessage(Message):
    role: Literal["assistant"] = "assistant"


class PreferenceRecord(BaseModel):
    """A validated preference pair.

    ``prompt`` is the whole history before the answer: an optional ``system`` message first, then
    alternating ``user``/``assistant`` turns, ending with ``user``. ``chosen`` and ``rejected`` each hold one
    assistant message.
    """

    model_config = ConfigDict(extra="forbid")

    prompt: list[Message] = Field(
        min_length=1, description="history before the answer, ending with a user turn"
    )
    chosen: list[AssistantMessage] = Field(min_length=1, max_length=1, description="the preferred answer")
    rejected: list[AssistantMessage] = Field(
        min_length=1, max_length=1, description="the dispreferred answer"
    )
    score_chosen: float | None = Field(None, description="source score/rating of the chosen answer")
    score_rejected: float | None = Field(None, description="source score/rating of the rejected answer")
    margin: float | None = Field(
        None, description="native margin (e.g. delta_score) or score_chosen - score_rejected"
    )
    source: str = Field(description="repo_id[:config]@revision, or a local path")
    source_index: int = Field(ge=0, description="row index in the source split")
    id: str = Field(description="stable hash of the normalised prompt/chosen/rejected")

    @field_validator("prompt")
    @classmethod
    def _prompt_shape(cls, prompt: list[Message]) -> list[Message]:
        roles = [m.role for m in prompt]
        if "system" in roles[1:]:
            raise ValueError("a system message may only come first")
        turns = roles[1:] if roles[0] == "system" else roles
        if not turns or turns[-1] != "user":
            raise ValueError("prompt must end with a user turn")
        for i, role in enumerate(turns):
            if role != ("user" if i % 2 == 0 else "assistant"):
                raise ValueError("prompt turns must alternate user/assistant, starting with user")
        return prompt


MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES_TYPE = pa.list_(MESSAGE_TYPE)

#: Arrow schema of the data files, in column order. Plain ``string``/``list`` (not ``large_*``): what
#: ``datasets`` writes and what TRL expects.
ARROW_SCHEMA = pa.schema(
    [
        ("prompt", MESSAGES_TYPE),
        ("chosen", MESSAGES_TYPE),
        ("rejected", MESSAGES_TYPE),
        ("score_chosen", pa.float64()),
        ("score_rejected", pa.float64()),
        ("margin", pa.float64()),
        ("source", pa.string()),
        ("source_index", pa.int64()),
        ("id", pa.string()),
    ]
)

RECORD_COLUMNS: tuple[str, ...] = tuple(ARROW_SCHEMA.names)


def stable_ids(df: pl.DataFrame) -> pl.Series:
    """A stable 16-hex-digit hash (xxh3-64) of each row's normalised prompt/chosen/rejected as compact JSON."""
    import xxhash

    digest = xxhash.xxh3_64_hexdigest
    encoded = df.select(pl.struct("prompt", "chosen", "rejected").struct.json_encode()).to_series()
    return pl.Series("id", [digest(s.encode()) for s in encoded], dtype=pl.String)


def plain_type(t: pa.DataType) -> pa.DataType:
    """``t`` with ``large_string``/``large_list`` replaced by ``string``/``list`` (what ``datasets`` writes)."""
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_list(t) or pa.types.is_list(t):
        return pa.list_(plain_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, plain_type(f.type)) for f in t])
    return t


def to_records(df: pl.DataFrame, source_label: str, carry: tuple[str, ...] = ()) -> pa.Table:
    """Kept rows as an Arrow table with exactly the canonical schema (plain, not ``large_``, types), followed by
    the ``carry`` columns (extra columns of a prefkit set read as a source) with their own types."""
    out = df.with_columns(pl.lit(source_label).alias("source"), stable_ids(df)).select(
        *RECORD_COLUMNS, *carry
    )
    table = out.to_arrow()
    extra = [pa.field(c, plain_type(table.schema.field(c).type)) for c in carry]
    return table.cast(pa.schema([*ARROW_SCHEMA, *extra]))


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


def _feature(t: pa.DataType) -> dict | str:
    """`datasets`' dict form of one Arrow type (the subset prefkit writes)."""
    if t in _DTYPES:
        return {"dtype": _DTYPES[t], "_type": "Value"}
    if pa.types.is_struct(t):
        return {t.field(i).name: _feature(t.field(i).type) for i in range(t.num_fields)}
    if pa.types.is_list(t):
        return {"feature": _feature(t.value_type), "_type": "List"}
    raise TypeError(f"no datasets feature for Arrow type {t}")


def features_dict(schema: pa.Schema = ARROW_SCHEMA) -> dict:
    """The ``datasets`` features of an Arrow schema as a dict (``Features.to_dict()`` form), without importing
    ``datasets``; falls back to ``datasets`` for types prefkit does not write itself."""
    try:
        return {f.name: _feature(f.type) for f in schema}
    except TypeError:
        import datasets

        return datasets.Features.from_arrow_schema(schema.remove_metadata()).to_dict()


def features_yaml(features: dict) -> list[dict]:
    """The card (YAML) form ``[{name, dtype | list | struct}]`` of a features dict, as ``datasets`` writes it."""

    def item(name: str, feat: dict) -> dict:
        kind = feat.get("_type")
        if kind == "Value":
            return {"name": name, "dtype": feat["dtype"]}
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
    schema = PreferenceRecord.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/prefkit/prefkit/schemas/record.schema.json"
    return schema


SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "record.schema.json"


def write_json_schema(path: Path = SCHEMA_PATH) -> Path:
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
    return path
