"""Statistics of a built set, per split: the one function behind `prefkit stats`, the dataset card and `push`.

For each split: row counts, the margin distribution, lengths per column in characters and, with a tokenizer,
in tokens counted by TRL's rule (:mod:`prefkit.chat.lengths`: prompt = TRL's prompt ids, chosen/rejected =
completion ids, plus prompt+answer totals, what ``max_length`` truncates), length bias (how often the chosen
answer is longer than the rejected one, which DPO can learn as "longer is better"), template residue (rows whose
message text holds chat-template tokens), after `prefkit reflogps` the reference margin, and after `prefkit score`
the label audit (:mod:`prefkit.reflogps.audit`: how often the reward model orders a pair like its label). `build` stores
the figures in the manifest (``stats``) and the card shows them; `prefkit stats` recomputes them from the data.

Percentiles are linear-interpolated (numpy's default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

PERCENTILES = (5, 10, 25, 50, 75, 90, 95, 99)


def distribution(values: Any) -> dict[str, float] | None:
    """count, mean, min, percentiles (p5 … p99) and max of the finite non-null values (None when there are none)."""
    arr = np.asarray(
        [v for v in values if v is not None] if isinstance(values, list) else values, dtype=float
    )
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return None
    out: dict[str, float] = {"count": int(arr.size), "mean": float(arr.mean()), "min": float(arr.min())}
    for p, v in zip(PERCENTILES, np.percentile(arr, PERCENTILES), strict=True):
        out[f"p{p}"] = float(v)
    out["max"] = float(arr.max())
    return out


def _share(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if mask.size else None


def _chars(df: pl.DataFrame, column: str) -> np.ndarray:
    """Characters of each row's message contents (or of the string, for text sets)."""
    if df.schema[column] == pl.String:
        expr = pl.col(column).str.len_chars()
    else:
        expr = pl.col(column).list.eval(pl.element().struct.field("content").str.len_chars()).list.sum()
    return df.select(expr.fill_null(0)).to_series().to_numpy().astype(float)


def length_bias(chosen: np.ndarray, rejected: np.ndarray, margin: np.ndarray | None, unit: str) -> dict:
    """How answer length relates to preference, in ``unit`` (chars or tokens): share of pairs whose chosen answer
    is longer, share of equal lengths, median ratio chosen/rejected, and Spearman's rank correlation of the
    margin with the length difference (:func:`prefkit.select.length_balance.length_bias` computes them)."""
    from prefkit.select.length_balance import length_bias as measure

    m = measure(chosen, rejected, margin)
    pairs = m["pairs"]
    return {
        f"chosen_longer_{unit}": m["chosen_longer_fraction"],
        f"equal_{unit}": m["equal_length"] / pairs if pairs else None,
        f"median_ratio_{unit}": m["median_length_ratio"],
        f"margin_length_spearman_{unit}": None if margin is None else m["margin_length_spearman"],
    }


def _trl_shaped(df: pl.DataFrame) -> bool:
    """prompt/chosen/rejected as messages or as text (not another trainer's export shape)."""
    if not {"prompt", "chosen", "rejected"} <= set(df.columns):
        return False
    kind = df.schema["chosen"]
    return kind == pl.String or (isinstance(kind, pl.List) and isinstance(kind.inner, pl.Struct))


def split_stats(table: pa.Table, target: Any = None, keep_values: bool = False) -> dict[str, Any]:
    """Statistics of one split (an Arrow table of records: messages or text; other export shapes get rows and
    margins only). ``keep_values`` adds the per-row arrays the plots need (keys starting with ``_``)."""
    acc = SplitStats(target, keep_values)
    acc.add(table)
    return acc.result(table.column_names)


class SplitStats:
    """:func:`split_stats` of a split given batch by batch (:meth:`add`): per-row numbers (margins, lengths) and
    counts are kept, never the text; :meth:`result` gives what :func:`split_stats` of the whole table gives."""

    def __init__(self, target: Any = None, keep_values: bool = False) -> None:
        self.target = target
        self.keep_values = keep_values
        self.rows = 0
        self.trl = True
        self.text = False
        self.has_margin = False
        self.has_ref = False
        self.margin: list[np.ndarray] = []
        self.chars: dict[str, list[np.ndarray]] = {c: [] for c in ("prompt", "chosen", "rejected")}
        self.residue = 0
        self.system = 0
        self.multi_turn = 0
        self.ref: list[np.ndarray] = []
        self.audit: list[pa.Table] = []
        self.tokens: dict[str, list] = {}

    def add(self, table: pa.Table) -> None:
        df = pl.from_arrow(table)
        self.rows += table.num_rows
        self.has_margin = "margin" in df.columns
        if self.has_margin:
            self.margin.append(df["margin"].cast(pl.Float64).to_numpy())
        self.trl = _trl_shaped(df)
        if not self.trl:
            return
        self.text = df.schema["prompt"] == pl.String
        for c in self.chars:
            self.chars[c].append(_chars(df, c))
        if not self.text:
            self.residue += int(residue_count(df))
        if not self.text and df.height:
            first_role = pl.col("prompt").list.first().struct.field("role")
            users = pl.col("prompt").list.eval(pl.element().struct.field("role") == "user").list.sum()
            self.system += int(df.select((first_role == "system").fill_null(False).sum()).item())
            self.multi_turn += int(df.select((users > 1).fill_null(False).sum()).item())
        self.has_ref = {"ref_chosen_logps", "ref_rejected_logps"} <= set(df.columns)
        if self.has_ref:
            self.ref.append(
                (
                    df["ref_chosen_logps"].cast(pl.Float64) - df["ref_rejected_logps"].cast(pl.Float64)
                ).to_numpy()
            )
        if "rm_margin" in df.columns:  # a set scored by `prefkit score`: the label audit's columns
            from prefkit.reflogps.audit import AUDIT_COLUMNS

            self.audit.append(table.select([c for c in AUDIT_COLUMNS if c in table.column_names]))
        if self.target is not None and getattr(self.target, "tokenizer", None) is not None and df.height:
            for k, v in _token_lengths(df, self.target, self.text).items():
                self.tokens.setdefault(k, []).extend(v)

    def result(self, columns: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.rows, "columns": columns}
        margin = np.concatenate(self.margin) if self.has_margin else None
        out["margin"] = None if margin is None else distribution(margin)
        if not self.trl:
            return out  # other export shapes (kto, llamafactory, openrlhf): row counts and margins only
        chars = {c: np.concatenate(v) if v else np.empty(0) for c, v in self.chars.items()}
        out["format"] = "text" if self.text else "messages"
        out["chars"] = {c: distribution(v) for c, v in chars.items()}
        out["length_bias"] = length_bias(chars["chosen"], chars["rejected"], margin, "chars")
        out["template_residue_rows"] = None if self.text else self.residue
        if not self.text and self.rows:
            out["system_share"] = self.system / self.rows
            out["multi_turn_share"] = self.multi_turn / self.rows
        if self.has_ref:
            diff = np.concatenate(self.ref)
            out["ref_margin"] = distribution(diff)
            finite = diff[np.isfinite(diff)]
            out["ref_prefers_chosen"] = _share(finite > 0)
        if self.audit:
            from prefkit.reflogps.audit import split_audit

            out["rm_audit"] = split_audit(pa.concat_tables(self.audit))
        if self.tokens:
            lengths = self.tokens
            out["tokens"] = {k: distribution(np.asarray(v, dtype=float)) for k, v in lengths.items()}
            ch, rj = (np.asarray(lengths[k], dtype=float) for k in ("chosen", "rejected"))
            out["length_bias"].update(length_bias(ch, rj, margin, "tokens"))
            if self.keep_values:
                out["_lengths"] = lengths
        if self.keep_values:
            out["_margins"] = [] if margin is None else margin[np.isfinite(margin)].tolist()
            out["_chars"] = {k: v.tolist() for k, v in chars.items()}
        return out


def residue_count(df: pl.DataFrame) -> int:
    """Rows whose message text holds template residue."""
    from prefkit.filters.residue import residue_markers

    return int(residue_markers(df).is_not_null().sum())


def _token_lengths(df: pl.DataFrame, target: Any, text: bool) -> dict[str, list[int]]:
    from prefkit.chat.lengths import message_token_lengths, text_token_lengths
    from prefkit.record import frame_rows

    if text:
        prompts, chosen, rejected = (df[c].to_list() for c in ("prompt", "chosen", "rejected"))
        lengths = text_token_lengths(target.tokenizer, prompts, chosen, rejected)
    else:
        prompts, chosen, rejected, extras = frame_rows(df)
        lengths = message_token_lengths(
            target.tokenizer, target.renderer, prompts, chosen, rejected, extras=extras
        )
    return {
        "prompt": lengths.prompt,
        "chosen": lengths.chosen,
        "rejected": lengths.rejected,
        "prompt+chosen": lengths.chosen_total,
        "prompt+rejected": lengths.rejected_total,
    }


#: data columns the statistics read (the rest of a split is not loaded)
STATS_COLUMNS = (
    "prompt",
    "chosen",
    "rejected",
    "margin",
    "tools",
    "chat_template_kwargs",
    "ref_chosen_logps",
    "ref_rejected_logps",
    "rm_margin",
    "id",
)


def folder_stats(
    out: Any,
    target: Any = None,
    splits: list[str] | None = None,
    keep_values: bool = False,
    progress: bool = False,
) -> dict:
    """:func:`split_stats` of every split (or ``splits``) of an open output folder, read batch by batch;
    ``progress``: a bar of rows per split on stderr (counting tokens takes minutes on large sets)."""
    import pyarrow.parquet as pq

    from prefkit.progress import bar
    from prefkit.spill import batch_rows

    result = {}
    for name in splits or out.splits:
        present = pq.read_schema(out.shards[name][0]).names
        columns = [c for c in STATS_COLUMNS if c in present]
        acc = SplitStats(target, keep_values)
        rows = sum(pq.read_metadata(p).num_rows for p in out.shards[name])
        with bar(desc=f"stats {name}", total=rows, show=progress, unit="rows") as shown:
            for path in out.shards[name]:  # batch by batch: a split of any size
                for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows(), columns=columns):
                    acc.add(pa.Table.from_batches([batch]))
                    shown.update(batch.num_rows)
        stats = acc.result(columns)
        stats["columns"] = present
        result[name] = stats
    return result


def current_stats(out: Any) -> dict[str, dict]:
    """The statistics in the manifest when they describe the data files as they are (same rows and columns),
    else computed now (a folder changed by hand, or written by an older prefkit)."""
    import pyarrow.parquet as pq

    stored = (out.manifest.get("stats") or {}).get("splits") or {}
    fresh = {}
    for name, paths in out.shards.items():
        s = stored.get(name)
        rows = sum(pq.read_metadata(p).num_rows for p in paths)
        if not s or s.get("rows") != rows or s.get("columns") != pq.read_schema(paths[0]).names:
            return folder_stats(out)
        fresh[name] = s
    return fresh


def compute_stats(
    folder: str | Path, target: Any = None, splits: list[str] | None = None, progress: bool = False
) -> dict[str, Any]:
    """Statistics of every split of a built set (``prefkit build -o OUT``), with the build's counts;
    ``progress``: bars on stderr.

    Raises :class:`~prefkit.errors.OutputError` for a folder that is not a set, a split it does not have, or a set
    exported in another trainer's shape.
    """
    from prefkit.errors import OutputError
    from prefkit.output import read_output, require_trl_shape

    out = read_output(folder)
    require_trl_shape(out, "stats")
    names = splits or out.splits
    unknown = [s for s in names if s not in out.splits]
    if unknown:
        raise OutputError(
            f"split {unknown[0]!r} is not in {str(folder)!r}", f"the set has: {', '.join(out.splits)}"
        )
    result: dict[str, Any] = {
        "path": str(out.path),
        "splits": folder_stats(out, target, names, keep_values=True, progress=progress),
    }
    if target is not None:
        result["tokenizer"] = target.manifest_entry()
    for name, stats in result["splits"].items():
        stats["build_counts"] = {
            k: v for k, v in out.manifest.get("splits", {}).get(name, {}).items() if k != "files"
        }
    return result


def public(stats: dict[str, Any]) -> dict[str, Any]:
    """``stats`` without the private per-row arrays (for JSON and the manifest)."""
    return {
        **stats,
        "splits": {
            n: {k: v for k, v in s.items() if not k.startswith("_")} for n, s in stats["splits"].items()
        },
    }


def plot(stats: dict[str, Any], folder: str | Path) -> list[Path]:
    """Write ``margin-<split>.png`` and ``lengths-<split>.png`` histograms into ``folder``; returns the paths.

    Needs matplotlib (``pip install 'prefkit[plot]'``)."""
    from prefkit.errors import require

    matplotlib = require("matplotlib", "--plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, s in stats["splits"].items():
        if s.get("_margins"):
            fig, ax = plt.subplots(figsize=(6, 3.5))
            ax.hist(s["_margins"], bins=50, color="#4c72b0")
            ax.set(title=f"{name}: margin", xlabel="margin", ylabel="rows")
            written.append(_save(fig, folder / f"margin-{name}.png"))
        lengths = s.get("_lengths")
        unit = "tokens" if lengths is not None else "characters"
        series = {k: lengths[k] for k in ("prompt", "chosen", "rejected")} if lengths else s.get("_chars")
        if series:
            fig, ax = plt.subplots(figsize=(6, 3.5))
            for label, vals in series.items():
                ax.hist(vals, bins=50, alpha=0.5, label=label)
            ax.set(title=f"{name}: lengths ({unit})", xlabel=unit, ylabel="rows")
            ax.legend()
            written.append(_save(fig, folder / f"lengths-{name}.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def record_stats(folder: str | Path, stats: dict[str, Any], plots: list[Path] | None = None) -> list[str]:
    """Record the statistics (and the plots that lie inside the set folder, as paths relative to it) in
    ``prefkit.json`` (``manifest["stats"]``) and rewrite the dataset card. Returns the recorded plot paths."""
    from prefkit.output import read_output, refresh_card, write_manifest

    out = read_output(folder)
    root = out.path.resolve()
    inside = []
    for p in plots or []:
        try:
            inside.append(Path(p).resolve().relative_to(root).as_posix())
        except ValueError:
            continue
    manifest = out.manifest
    splits = {
        n: {k: v for k, v in s.items() if k != "build_counts"} for n, s in public(stats)["splits"].items()
    }
    manifest["stats"] = {"plots": inside, "splits": splits}
    if "tokenizer" in stats:
        manifest["stats"]["tokenizer"] = stats["tokenizer"]
    write_manifest(out.path, manifest)
    refresh_card(out.path)
    return inside
