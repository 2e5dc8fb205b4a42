"""The label audit of a scored set: how often the reward model orders a pair like its labels, and how its margin
ranks against the source's.

Figures per split (and over all splits, ``totals``), from the columns ``rm_margin`` (`prefkit score`), ``margin``
(the source's, optional) and ``id``:

* ``pairs``: rows; ``scored``: rows with a finite ``rm_margin``; ``nulls``: the others (texts longer than the
  reward model's ``max_length``, or a non-finite score);
* ``agree``: scored pairs with ``rm_margin > 0`` (the reward model prefers the chosen answer, like the label);
  ``agree_fraction = agree / scored`` (None when nothing was scored);
* ``disagree``: scored pairs with ``rm_margin <= 0`` (ties count here: the model does not prefer the chosen answer),
  ``ties`` of them exactly 0; ``disagree_ids``: the first :data:`MAX_IDS` of their ids in row order
  (``disagree_ids_truncated`` says when there are more);
* ``spearman``: Spearman's rank correlation of ``rm_margin`` with ``margin`` over the rows that have both
  (``spearman_pairs``), with average ranks for ties (the textbook definition, as ``scipy.stats.spearmanr``);
  None when fewer than two rows have both or either side is constant.

numpy only; no model is loaded. Spearman's rho is :func:`prefkit.ranks.spearman`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.output import read_output
from prefkit.ranks import spearman

#: most disagreeing ids listed per split (the count is always complete)
MAX_IDS = 100
#: the columns the audit reads (those present)
AUDIT_COLUMNS = ("id", "margin", "rm_margin")


def _floats(table: pa.Table, name: str) -> np.ndarray:
    """A column as float64 with NaN for nulls (all NaN when the column is missing)."""
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    column = table.column(name).cast(pa.float64())
    return column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def split_audit(table: pa.Table, max_ids: int = MAX_IDS) -> dict[str, Any]:
    """The audit figures (see the module docstring) of one table with ``rm_margin`` and optionally ``margin``
    and ``id`` (row numbers stand in for missing ids)."""
    rm = _floats(table, "rm_margin")
    scored = np.isfinite(rm)
    agree = scored & (rm > 0)
    disagree = scored & ~agree
    rows = np.flatnonzero(disagree)
    ids_column = table.column("id") if "id" in table.column_names else None
    ids = [ids_column[int(i)].as_py() if ids_column is not None else int(i) for i in rows[:max_ids]]
    n_scored = int(scored.sum())
    margin = _floats(table, "margin")
    both = scored & np.isfinite(margin)
    return {
        "pairs": table.num_rows,
        "scored": n_scored,
        "nulls": int(table.num_rows - n_scored),
        "agree": int(agree.sum()),
        "agree_fraction": float(agree.sum() / n_scored) if n_scored else None,
        "disagree": int(disagree.sum()),
        "ties": int((scored & (rm == 0)).sum()),
        "disagree_ids": ids,
        "disagree_ids_truncated": bool(len(rows) > max_ids),
        "spearman": spearman(rm[both], margin[both]),
        "spearman_pairs": int(both.sum()),
    }


def audit(table: pa.Table | Mapping[str, pa.Table], max_ids: int = MAX_IDS) -> dict[str, Any]:
    """The label audit of scored rows → ``{"splits": {split: figures}, "totals": figures}``.

    ``table``: one Arrow table (its ``split`` column, when present, groups the rows; else the rows are one split
    named ``"all"``) or a mapping split → table. Each needs ``rm_margin`` (float); ``margin`` and ``id`` are used
    when present. Raises ``KeyError`` when no table has ``rm_margin`` (score the set first with `prefkit score`).
    """
    if isinstance(table, Mapping):
        tables = dict(table)
    elif "split" in table.column_names:
        names = table.column("split").to_pylist()
        tables = {name: table.filter(pa.array([s == name for s in names])) for name in dict.fromkeys(names)}
    else:
        tables = {"all": table}
    if not any("rm_margin" in t.column_names for t in tables.values()):
        raise KeyError("rm_margin")
    splits = {name: split_audit(t, max_ids) for name, t in tables.items()}
    columns = [c for c in AUDIT_COLUMNS if all(c in t.column_names for t in tables.values())]
    parts = [t.select(columns) for t in tables.values()]
    whole = pa.concat_tables(parts, promote_options="permissive") if parts else pa.table({})
    return {"splits": splits, "totals": split_audit(whole, max_ids)}


def audit_folder(folder: str | Path | Any, max_ids: int = MAX_IDS) -> dict[str, Any]:
    """:func:`audit` of every split of an output folder (a path or an open ``OutputFolder``), reading only
    ``id``, ``margin`` and ``rm_margin``. Raises ``OutputError`` for a folder that is not a set."""


    out = read_output(folder) if isinstance(folder, str | Path) else folder
    self_margin = margin_is_rm(out.manifest)
    tables = {}
    for split in out.splits:
        present = pq.read_schema(out.shards[split][0]).names
        wanted = [c for c in AUDIT_COLUMNS if c in present and not (self_margin and c == "margin")]
        tables[split] = out.read_split(split, columns=wanted)
    return audit(tables, max_ids)


def margin_is_rm(manifest: dict) -> bool:
    """Whether the set's ``margin`` was read from ``rm_margin`` (``build --margin-col rm_margin`` of a scored set):
    then correlating the two says nothing, and the audit leaves ``spearman`` out."""
    if (manifest.get("parameters") or {}).get("margin_col") == "rm_margin":
        return True
    return any(
        ((split.get("format") or {}).get("margin")) == "rm_margin"
        for source in manifest.get("sources") or []
        for split in (source.get("splits") or {}).values()
        if isinstance(split, dict)
    )
