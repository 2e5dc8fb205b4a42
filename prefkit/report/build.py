"""The report's pages: read each split (:mod:`prefkit.report.page`), draw its charts
(:mod:`prefkit.output.charts`) and render the template with autoescape."""

from __future__ import annotations

import json
from typing import Any

import jinja2
import numpy as np
import pyarrow.parquet as pq
from markupsafe import Markup

from prefkit.accounting import glossary, meaning, total
from prefkit.output.stats import folder_stats
from prefkit.report.figures import split_charts
from prefkit.report.page import (
    KEPT_COLUMNS,
    NEAR_DUP,
    NUMBER_COLUMNS,
    ReasonGroup,
    SplitPage,
    cut_pieces,
    evidence,
    json_value,
    load_eval_items,
    make_reject,
    messages,
    other_fields,
    read_rows,
    reject_groups,
    sample_indices,
    shown_fields,
)
from prefkit.resources import read_text
from prefkit.store.manifest_model import Manifest, SourceSplit
from prefkit.version import __version__

PAGE_SIZE = 20
#: manifest sections shown under provenance, with their titles
SECTIONS = (
    ("Options", "parameters"),
    ("Tokenizer and chat template", "tokenizer"),
    ("Reference log-probs (prefkit reflogps)", "reflogps"),
    ("Reward-model scores (prefkit score)", "rm_scores"),
    ("Decontamination", "decontamination"),
    ("Near-deduplication", "near_dedup"),
    ("Length balance", "length_balance"),
    ("Test split", "test_split"),
    ("Export", "export"),
)


def build_pages(
    out: Any, *, rows: int, examples: int, seed: int, target: Any, eval_sets: tuple[str, ...] = ()
) -> list[SplitPage]:
    """One :class:`SplitPage` per split of the manifest (a split that kept no rows too)."""

    stats = folder_stats(out, target, keep_values=True) if out.shards else {}
    manifest = Manifest.read(out.manifest)
    eval_items = load_eval_items(manifest, eval_sets)
    pages = []
    for name, counts in manifest.split_entries.items():
        page = read_split(out, name, counts.to_dict(), rows=rows, examples=examples, seed=seed)
        page.stats = stats.get(name, {})
        attach_evidence(page, eval_items)
        pages.append(page)
    return pages


def numbers(out: Any, split: str) -> dict[str, np.ndarray]:
    """The per-row number columns of a split (margin, rm_margin, reference log-probs) that it has."""
    if split not in out.shards:
        return {}
    present = pq.read_schema(out.shards[split][0]).names
    columns = [c for c in NUMBER_COLUMNS if c in present]
    if not columns:
        return {}
    table = out.read_split(split, columns)
    return {c: table.column(c).to_numpy(zero_copy_only=False).astype(float) for c in columns}


def read_split(out: Any, name: str, counts: dict, *, rows: int, examples: int, seed: int) -> SplitPage:
    """The rows of one split the page shows: reject samples per reason, kept sample, disagreeing rows."""

    groups = []
    for stage, reason, count, frame in reject_groups(out.rejects_path(name), examples, seed):
        rejects = [make_reject(r) for r in frame.to_dicts()]
        has_fields = any(v is not None for r in rejects for v in r.fields.values())
        groups.append(ReasonGroup(stage, reason, meaning(stage, reason), count, rejects, has_fields))
    nums = numbers(out, name)
    kept_total = int(counts.get("kept", 0)) if isinstance(counts, dict) else 0
    wanted = sample_indices(kept_total, rows, seed)
    disagree_at = np.empty(0, dtype=np.int64)
    if "rm_margin" in nums:
        bad = np.flatnonzero(nums["rm_margin"] <= 0)
        disagree_at = bad[sample_indices(bad.size, examples, seed)]
    ids = {m.group(1) for g in groups for r in g.rows if r.detail and (m := NEAR_DUP.search(r.detail))}
    kept_rows: list[dict] = []
    by_id: dict[str, dict] = {}
    if name in out.shards:
        present = pq.read_schema(out.shards[name][0]).names
        columns = [c for c in KEPT_COLUMNS if c in present]
        every = np.union1d(wanted, disagree_at)
        got, by_id = read_rows(out.shards[name], every, columns, ids)
        at = dict(zip(every.tolist(), got, strict=True))
        kept_rows = [at[i] for i in wanted.tolist()]
        disagree = [kept_view(at[i]) for i in disagree_at.tolist()]
    else:
        disagree = []
    page = SplitPage(
        name=name,
        counts=counts if isinstance(counts, dict) else {},
        sources=source_flows(Manifest.read(out.manifest), name),
        groups=groups,
        kept=[kept_view(r) for r in kept_rows],
        kept_total=kept_total,
        numbers=nums,
        stats={},
        disagree=disagree,
    )
    page.by_id = by_id
    return page


def attach_evidence(page: SplitPage, eval_items: dict[str, list]) -> None:
    by_id = page.by_id
    for group in page.groups:
        for row in group.rows:
            evidence(group.reason, row, by_id, eval_items)
            for key in ("text", "dropped", "kept", "item"):
                if key in row.evidence:
                    row.evidence[key] = cut_pieces(row.evidence[key])
            row.shown = shown_fields(row.fields)
            row.others = other_fields(row.fields)


def kept_view(row: dict[str, Any]) -> dict[str, Any]:
    """A data row as the page shows it: messages cut, the reference margin, tools as JSON text."""
    ref = None
    if row.get("ref_chosen_logps") is not None and row.get("ref_rejected_logps") is not None:
        ref = row["ref_chosen_logps"] - row["ref_rejected_logps"]
    tools = json_value(row.get("tools"))
    return {
        "id": row.get("id"),
        "source": row.get("source"),
        "source_index": row.get("source_index"),
        "margin": row.get("margin"),
        "rm_margin": row.get("rm_margin"),
        "ref_margin": ref,
        "prompt": messages(row.get("prompt")),
        "chosen": messages(row.get("chosen")),
        "rejected": messages(row.get("rejected")),
        "tools": json.dumps(tools, indent=1, ensure_ascii=False, default=str) if tools else None,
    }


def source_flows(manifest: Manifest, split: str) -> list[dict[str, Any]]:
    """Per source, its counts for ``split`` (the source split of that name; all its splits when none is)."""
    flows = []
    for src in manifest.source_entries:
        parts = src.splits or {}
        names = [split] if split in parts else list(parts)
        for part in names:
            c = parts[part]
            if not isinstance(c, SourceSplit):
                continue  # a source described before it was read: no counts
            flows.append(
                {
                    "source": src.source or src.id,
                    "split": part,
                    "format": c.format.get("family") if c.format is not None else None,
                    "read": c.read,
                    "kept": c.kept,
                    "dropped": c.dropped or {},
                    "invalid": c.invalid or {},
                }
            )
    return flows


def render_page(out: Any, pages: list[SplitPage], seed: int) -> str:
    """The page's HTML (the template with autoescape; charts drawn for each split)."""
    import matplotlib


    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined, keep_trailing_newline=True)
    env.filters["num"] = _num
    env.filters["tojson_text"] = lambda v: json.dumps(v, indent=1, ensure_ascii=False, default=str)
    template = env.from_string(read_text("prefkit.report", "templates", "report.html.jinja"))
    manifest = out.manifest  # shown as published (publish.public): free-form, as JSON
    typed = Manifest.read(manifest)
    for page in pages:
        if not page.drawn:
            split_charts(page, typed)
            page.drawn = True
        page.sampling = sampling_note(page, seed)
    counts = {k: v.to_dict() for k, v in typed.split_entries.items()}
    return template.render(
        title=out.path.name,
        version=__version__,
        manifest=manifest,
        totals=total(counts).to_dict() if counts else {"read": 0, "kept": 0},
        splits=pages,
        meanings={k: r.meaning for k, r in glossary().items()},
        sections=provenance_sections(manifest),
        css=Markup(read_text("prefkit.report", "templates", "report.css")),
        js=Markup(read_text("prefkit.report", "templates", "report.js")),
        page_size=PAGE_SIZE,
        matplotlib_version=matplotlib.__version__,
    )


#: manifest keys the page shows elsewhere (header, rows, figures, recipe)
SHOWN_ELSEWHERE = (
    "prefkit_version",
    "created",
    "command",
    "sources",
    "recipe",
    "splits",
    "totals",
    "stats",
    "report",
)


def provenance_sections(manifest: dict[str, Any]) -> list[tuple[str, Any]]:
    """The manifest's sections under provenance: the known ones with their titles (:data:`SECTIONS`), then any
    other section (e.g. the provenance a later command adds, such as generation) under its own key."""
    known = [(title, manifest[key]) for title, key in SECTIONS if manifest.get(key)]
    listed = {key for _, key in SECTIONS} | set(SHOWN_ELSEWHERE)
    return known + [(key, value) for key, value in manifest.items() if key not in listed and value]


def sampling_note(page: SplitPage, seed: int) -> str:
    shown, total = len(page.kept), page.kept_total
    if shown >= total:
        return f"All {total:,} kept rows, {PAGE_SIZE} per page; search looks through all of them."
    return (
        f"{shown:,} of {total:,} kept rows, a uniform random sample (numpy's default_rng, seed {seed}), "
        f"in data-file order, {PAGE_SIZE} per page; search looks through these {shown:,}. The charts "
        "and figures count every kept row."
    )


def _num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, float):
        return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)
