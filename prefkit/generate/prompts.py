"""The prompts of `prefkit generate`: every prompt of a source `build` reads (a prefkit set, a Hub id, a file or
folder; any shape: pairs, rated or ranked completions, or the prompt-only shape), one row per distinct prompt.

Each source split is detected and normalised batch by batch as `build` normalises it (:mod:`prefkit.formats`);
of its rows only the ``prompt`` (messages, a system column already prepended) and a row-level
``chat_template_kwargs`` are kept. A prompt's id is the xxh3-64 of its messages and template arguments as JSON:
the same prompt has the same id in any run (it seeds the completions, :mod:`prefkit.generate.sampling`). A
prompt seen again in the split (binarised sets repeat it once per pair) is counted, not kept twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import xxhash

from prefkit.errors import SourceError
from prefkit.formats import detect, normalise
from prefkit.record import MESSAGE_FIELDS, message_type
from prefkit.sources import head, load_source, split_batches

#: the columns of a prompt set (OUT before generation)
PROMPT_ID, PROMPT = "prompt_id", "prompt"


@dataclass
class Prompts:
    """Per split: the prompt rows (``prompt_id`` string, ``prompt`` messages, ``chat_template_kwargs`` JSON text
    when the source has it), and counts: rows ``read``, ``prompts`` kept, ``duplicates``, ``no_prompt``."""

    splits: dict[str, pa.Table]
    counts: dict[str, dict[str, int]]
    source: dict
    families: dict[str, str] = field(default_factory=dict)


def prompt_id(messages: list[dict], kwargs: str | None) -> str:
    """16 hex digits: xxh3-64 of the messages (null fields left out) and the row's template arguments."""
    clean = [{k: v for k, v in m.items() if v is not None} for m in messages]
    text = json.dumps([clean, kwargs], sort_keys=True, ensure_ascii=False)
    return xxhash.xxh3_64_hexdigest(text.encode())


def read_prompts(
    source: str,
    *,
    split: list[str] | None = None,
    revision: str | None = None,
    format: str | None = None,
    prompt_col: str | None = None,
    system_col: str | None = None,
    max_prompts: int | None = None,
    token: str | bool | None = None,
) -> Prompts:
    """Every distinct prompt of ``source`` per split (the first ``max_prompts`` of each, when given). Raises
    SourceError / FormatError as `build` does for a source it cannot read or a shape it cannot detect."""

    src = load_source(source, split=split, revision=revision, token=token)
    out = Prompts({}, {}, {k: v for k, v in src.describe().items() if k != "splits"})
    for name, table in src.splits.items():
        rows, counts, family = _split_prompts(table, format, prompt_col, system_col, max_prompts)
        out.splits[name], out.counts[name], out.families[name] = _table(rows), counts, family
    if not any(t.num_rows for t in out.splits.values()):
        raise SourceError(f"{source} has no prompts", "check the source and --split / --prompt-col")
    return out


def _split_prompts(
    table: Any, format: str | None, prompt_col: str | None, system_col: str | None, limit: int | None
) -> tuple[list[dict], dict[str, int], str]:
    mapping = detect(head(table, 64), format=format, columns={"prompt": prompt_col, "system": system_col})
    mapping = replace(mapping, facts={"state": {}})
    rows: list[dict] = []
    seen: set[str] = set()
    counts = {"read": 0, "prompts": 0, "duplicates": 0, "no_prompt": 0}
    start = 0
    for batch in split_batches(table):
        frame = normalise(batch, mapping, start)
        first = start
        start += batch.num_rows
        counts["read"] += batch.num_rows
        kwargs = frame["chat_template_kwargs"].to_list() if "chat_template_kwargs" in frame.columns else None
        for i, prompt in enumerate(frame["prompt"].to_list()):
            if not prompt:
                counts["no_prompt"] += 1
                continue
            extra = kwargs[i] if kwargs else None
            pid = prompt_id(prompt, extra)
            if pid in seen:
                counts["duplicates"] += 1
                continue
            seen.add(pid)
            rows.append({PROMPT_ID: pid, PROMPT: prompt, "chat_template_kwargs": extra})
            if limit is not None and len(rows) >= limit:  # the rows after this one are not read
                counts["read"] = first + i + 1
                counts["prompts"] = len(rows)
                return rows, counts, mapping.family
    counts["prompts"] = len(rows)
    return rows, counts, mapping.family


def _table(rows: list[dict]) -> pa.Table:
    """The prompt rows as Arrow: message fields beyond role/content only where some message uses them, and
    ``chat_template_kwargs`` only where some row has it."""
    used = tuple(f for f in MESSAGE_FIELDS if any(m.get(f) is not None for r in rows for m in r[PROMPT]))
    columns = {
        PROMPT_ID: pa.array([r[PROMPT_ID] for r in rows], pa.string()),
        PROMPT: pa.array([r[PROMPT] for r in rows], pa.list_(message_type(used))),
    }
    if any(r["chat_template_kwargs"] is not None for r in rows):
        columns["chat_template_kwargs"] = pa.array([r["chat_template_kwargs"] for r in rows], pa.string())
    return pa.table(columns)
