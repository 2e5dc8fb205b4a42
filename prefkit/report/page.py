"""What the page shows of one split, read from the output folder: the manifest's counts, the rejects with their
evidence, a sample of the kept rows, and the per-row numbers the charts draw.

Only samples are kept in memory as rows (``rows`` kept rows, ``examples`` rejects per reason); the numbers of every
row (margins, lengths, scores) come from :func:`prefkit.output.stats.folder_stats` read batch by batch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.filters.registry import TEMPLATE_RESIDUE
from prefkit.filters.tokens import TEMPLATE_REFUSED
from prefkit.frame import REASON, STAGE, Stage
from prefkit.report.evidence import Pieces, mark_all, row_text, shared_run, word_diff
from prefkit.select.decontaminate import CONTAMINATED
from prefkit.select.evalsets import resolve_evalset
from prefkit.select.near_dedup import NEAR_DUPLICATE
from prefkit.store.manifest_model import Manifest

#: a message's content is cut after this many characters on the page (the cut is stated)
MAX_CHARS = 2000
#: columns of a kept row the page shows (others are left out)
KEPT_COLUMNS = (
    "id", "source", "source_index", "margin", "prompt", "chosen", "rejected", "tools",
    "rm_chosen", "rm_rejected", "rm_margin", "ref_chosen_logps", "ref_rejected_logps",
)  # fmt: skip
META = ("source", "source_index", "stage", "reason", "margin", "detail")
NUMBER_COLUMNS = ("margin", "rm_margin", "ref_chosen_logps", "ref_rejected_logps")


@dataclass
class Reject:
    """One rejected row on the page: where it came from, why, its evidence and its original fields."""

    source: str
    source_index: int
    margin: float | None
    detail: str | None
    fields: dict[str, Any]
    evidence: dict[str, Any] = field(default_factory=dict)
    shown: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    others: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReasonGroup:
    stage: str
    reason: str
    meaning: str
    count: int
    rows: list[Reject]
    has_fields: bool


@dataclass
class SplitPage:
    """One split's section of the page."""

    name: str
    counts: dict[str, Any]
    sources: list[dict[str, Any]]
    groups: list[ReasonGroup]
    kept: list[dict[str, Any]]
    kept_total: int
    numbers: dict[str, np.ndarray]
    stats: dict[str, Any]
    disagree: list[dict[str, Any]] = field(default_factory=list)
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    charts: list[dict[str, Any]] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    flow_chart: Any = None
    disagree_note: str = ""
    sampling: str = ""
    drawn: bool = False


def cut(text: Any, limit: int = MAX_CHARS) -> Any:
    """A string longer than ``limit`` characters cut there, with how much was left out."""
    if isinstance(text, str) and len(text) > limit:
        return f"{text[:limit]} … [{len(text) - limit:,} more characters not shown]"
    return text


def messages(value: Any) -> list[dict[str, Any]]:
    """A field as messages for the page: messages as they are (contents cut), a string as one ``text`` turn."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "text", "content": cut(value)}]
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return [{**m, "content": cut(m.get("content")), "reasoning_content": cut(m.get("reasoning_content")),
                 "tool_calls": json_value(m.get("tool_calls"))} for m in value]  # fmt: skip
    return [{"role": "value", "content": cut(repr(value))}]


def json_value(value: Any) -> Any:
    """A value the data files hold as JSON text (``tools``, a message's ``tool_calls``: the ``Json`` feature)
    decoded; any other value as it is."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def sample_indices(total: int, size: int, seed: int) -> np.ndarray:
    """``size`` row numbers of ``total`` drawn uniformly without replacement (all when ``size >= total``),
    sorted."""
    if total <= size:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size, replace=False))


def read_rows(paths: list[Path], wanted: np.ndarray, columns: list[str], ids: set[str]) -> tuple[list, dict]:
    """The rows at ``wanted`` (sorted row numbers over the shards in order) and the rows whose ``id`` is in
    ``ids``, reading the shards batch by batch. Returns (rows at wanted, {id: row})."""
    rows: list[dict] = []
    by_id: dict[str, dict] = {}
    offset, at = 0, 0
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=8192, columns=columns):
            end = offset + batch.num_rows
            stop = int(np.searchsorted(wanted, end))
            if stop > at:
                rows += batch.take(pa.array(wanted[at:stop] - offset)).to_pylist()
                at = stop
            if ids and "id" in batch.schema.names:
                hit = pa.compute.is_in(batch.column("id"), value_set=pa.array(sorted(ids)))
                for row in batch.filter(hit).to_pylist():
                    by_id[row["id"]] = row
            offset = end
    return rows, by_id


def reject_groups(path: Path, examples: int, seed: int) -> list[tuple[str, str, int, pl.DataFrame]]:
    """Per (stage, reason), its count and up to ``examples`` rejected rows (sampled uniformly with ``seed``; all
    columns), read from ``rejects/<split>.parquet``."""
    if not path.is_file():
        return []
    meta = pl.scan_parquet(path).select(STAGE, REASON).with_row_index("_row").collect()
    out = []
    for (stage, reason), group in meta.group_by([STAGE, REASON], maintain_order=True):
        picked = group["_row"].to_numpy()[sample_indices(group.height, examples, seed)]
        rows = (
            pl.scan_parquet(path)
            .with_row_index("_row")
            .filter(pl.col("_row").is_in(picked.tolist()))
            .collect()
        )
        out.append((str(stage), str(reason), group.height, rows.drop("_row")))
    order: dict[str, int] = {Stage.INVALID: 0, Stage.DROPPED: 1}
    return sorted(out, key=lambda g: (order.get(g[0], 2), -g[2], g[1]))


NEAR_DUP = re.compile(r"kept id (\S+)")
EVAL_ITEM = re.compile(r"eval set (.+) item (\d+)$")


def evidence(reason: str, row: Reject, kept_by_id: dict[str, dict], eval_items: dict[str, list]) -> None:
    """Fill ``row.evidence`` for the reasons that have some (see the module :mod:`prefkit.report.evidence`)."""
    text = row_text(row.fields)
    if reason == TEMPLATE_RESIDUE.reason.name and row.detail:
        row.evidence = {"kind": "residue", "marker": row.detail, "text": mark_all(text, row.detail)}
    elif reason == NEAR_DUPLICATE.name and row.detail and (m := NEAR_DUP.search(row.detail)):
        kept = kept_by_id.get(m.group(1))
        if kept is not None:
            left, right = word_diff(
                text, row_text({k: kept.get(k) for k in ("prompt", "chosen", "rejected")})
            )
            row.evidence = {"kind": "near_dup", "kept_id": m.group(1), "dropped": left, "kept": right}
    elif reason == CONTAMINATED.name and row.detail and (m := EVAL_ITEM.search(row.detail)):
        items = eval_items.get(m.group(1))
        index = int(m.group(2))
        if items is not None and index < len(items):
            item = "\n".join(items[index])
            mine, theirs, run = shared_run(text, item)
            row.evidence = {"kind": "contaminated", "text": mine, "item": theirs, "run": run}
    elif reason == TEMPLATE_REFUSED.name and row.detail:
        row.evidence = {"kind": "refused", "message": row.detail}


def load_eval_items(manifest: Manifest, files: tuple[str, ...] = ()) -> dict[str, list[list[str]]]:
    """The items of the eval sets the build decontaminated against, for those found offline: one of ``files``
    whose name is the eval set's name, else the path the manifest records (relative to the working folder).
    A Hub eval set is not downloaded by the report; its rows show the item's index only."""

    by_name = {Path(f).name: f for f in files}
    items: dict[str, list[list[str]]] = {}
    for entry in (manifest.decontamination.sets if manifest.decontamination else None) or []:
        name = entry.name
        path = by_name.get(str(name)) or entry.path
        if path and Path(path).expanduser().exists():
            try:
                _, values, _ = resolve_evalset(str(path))
            except Exception:  # evidence is optional: the page says when it is missing
                continue
            items[str(name)] = values
    return items


def make_reject(row: dict[str, Any]) -> Reject:
    fields = {k: as_messages(v) for k, v in row.items() if k not in META}
    return Reject(
        source=row.get("source") or "",
        source_index=int(row.get("source_index") or 0),
        margin=row.get("margin"),
        detail=row.get("detail"),
        fields=fields,
    )


def shown_fields(fields: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A rejected row's text fields for the page as conversations (strings and messages; messages a mix wrote
    as JSON text are read back); other values are in :func:`other_fields`."""
    return {k: messages(as_messages(v)) for k, v in fields.items() if isinstance(v, (str, list))}


def other_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A rejected row's fields that are not text (numbers, labels), non-null."""
    return {k: v for k, v in fields.items() if v is not None and not isinstance(v, (str, list))}


def as_messages(value: Any) -> Any:
    """Messages that a mix of sources wrote as JSON text (:func:`prefkit.output.rejects.concat_rejects`) read
    back; any other value as it is."""
    if isinstance(value, str) and value.startswith("[{") and value.endswith("}]"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if all(isinstance(m, dict) and "role" in m for m in parsed):
            return parsed
    return value


def cut_pieces(pieces: Pieces, limit: int = 4 * MAX_CHARS) -> Pieces:
    """Marked pieces cut after ``limit`` characters in all."""
    out: Pieces = []
    used = 0
    for text, mark in pieces:
        if used >= limit:
            out.append((" … [cut]", ""))
            break
        out.append((text[: limit - used], mark))
        used += len(text)
    return out
