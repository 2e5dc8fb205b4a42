"""`prefkit stats`: what a built set looks like, per split.

For each split: row counts (with the build's read/dropped/invalid counts from the manifest), the margin
distribution, lengths per column in characters and, with a tokenizer, in tokens counted by TRL's rule
(:mod:`prefkit.token_filters`: prompt = TRL's prompt ids, chosen/rejected = completion ids, plus prompt+answer
totals, what ``max_length`` truncates), length bias (how often the chosen answer is longer than the rejected
one, which DPO can learn as "longer is better"), and template residue (rows whose message text holds
chat-template tokens). ``plot(stats, folder)`` writes PNG histograms (matplotlib, Agg backend).

Percentiles are linear-interpolated (numpy's default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PERCENTILES = (5, 25, 50, 75, 95, 99)


def distribution(values: list[float] | Any) -> dict[str, float] | None:
    """count, mean, min, percentiles (p5 … p99) and max of the non-null values (None when there are none)."""
    import numpy as np

    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return None
    out: dict[str, float] = {"count": int(arr.size), "mean": float(arr.mean()), "min": float(arr.min())}
    for p, v in zip(PERCENTILES, np.percentile(arr, PERCENTILES), strict=True):
        out[f"p{p}"] = float(v)
    out["max"] = float(arr.max())
    return out


def _content_chars(values: list[Any]) -> list[int]:
    """Characters of a message list's contents (or of a string, for text-format sets)."""
    out = []
    for v in values:
        if v is None:
            out.append(0)
        elif isinstance(v, str):
            out.append(len(v))
        else:
            out.append(sum(len(m.get("content") or "") for m in v))
    return out


def _share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def residue_rows(table: Any) -> int | None:
    """Rows whose message text holds chat-template residue (``prefkit.filters``'s check); None for text sets."""
    import polars as pl

    from prefkit.filters import _any_content, _residue

    df = pl.from_arrow(table.select(["prompt", "chosen", "rejected"]))
    if df.schema["prompt"] == pl.String:
        return None
    expr = (
        _any_content("prompt", _residue)
        | _any_content("chosen", _residue)
        | _any_content("rejected", _residue)
    )
    return int(df.select(expr.fill_null(False).sum()).item())


def split_stats(table: Any, target: Any = None) -> dict[str, Any]:
    """Statistics of one split (an Arrow table with prompt/chosen/rejected and optionally margin)."""
    prompts = table.column("prompt").to_pylist()
    chosen = table.column("chosen").to_pylist()
    rejected = table.column("rejected").to_pylist()
    text_format = bool(prompts) and isinstance(prompts[0], str)
    chars = {
        "prompt": _content_chars(prompts),
        "chosen": _content_chars(chosen),
        "rejected": _content_chars(rejected),
    }
    margins = table.column("margin").to_pylist() if "margin" in table.column_names else []
    out: dict[str, Any] = {
        "rows": table.num_rows,
        "format": "text" if text_format else "messages",
        "margin": distribution(margins),
        "chars": {k: distribution(v) for k, v in chars.items()},
        "length_bias": {
            "chosen_longer_chars": _share(
                [c > r for c, r in zip(chars["chosen"], chars["rejected"], strict=True)]
            ),
            "equal_chars": _share([c == r for c, r in zip(chars["chosen"], chars["rejected"], strict=True)]),
        },
        "template_residue_rows": residue_rows(table),
        "_margins": [m for m in margins if m is not None],
        "_chars": chars,
    }
    if not text_format:
        out["system_share"] = _share([bool(p) and p[0]["role"] == "system" for p in prompts])
        out["multi_turn_share"] = _share([sum(m["role"] == "user" for m in p) > 1 for p in prompts])
    if target is not None and getattr(target, "tokenizer", None) is not None and table.num_rows:
        from prefkit.token_filters import message_token_lengths, text_token_lengths

        if text_format:
            lengths = text_token_lengths(target.tokenizer, prompts, chosen, rejected)
        else:
            lengths = message_token_lengths(target.tokenizer, target.renderer, prompts, chosen, rejected)
        out["tokens"] = {
            "prompt": distribution(lengths.prompt),
            "chosen": distribution(lengths.chosen),
            "rejected": distribution(lengths.rejected),
            "prompt+chosen": distribution(lengths.chosen_total),
            "prompt+rejected": distribution(lengths.rejected_total),
        }
        out["length_bias"]["chosen_longer_tokens"] = _share(
            [c > r for c, r in zip(lengths.chosen, lengths.rejected, strict=True)]
        )
        out["_lengths"] = lengths
    return out


def compute_stats(folder: str | Path, target: Any = None, splits: list[str] | None = None) -> dict[str, Any]:
    """Statistics of every split of a built set (``prefkit build -o OUT``)."""
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
    result: dict[str, Any] = {"path": str(out.path), "splits": {}}
    if target is not None:
        result["tokenizer"] = target.manifest_entry()
    for name in names:
        present = _columns(out, name)
        if not {"prompt", "chosen", "rejected"} <= set(present):
            raise OutputError(
                f"split {name!r} of {str(folder)!r} has no prompt/chosen/rejected columns (columns: "
                f"{', '.join(present)})",
                "stats reads sets in TRL's shape: build without --export (or with --export trl)",
            )
        columns = [c for c in ("prompt", "chosen", "rejected", "margin") if c in present]
        stats = split_stats(out.read_split(name, columns), target)
        stats["build_counts"] = {
            k: v for k, v in out.manifest.get("splits", {}).get(name, {}).items() if k != "files"
        }
        result["splits"][name] = stats
    return result


def _columns(out: Any, split: str) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_schema(out.shards[split][0]).names


def public(stats: dict[str, Any]) -> dict[str, Any]:
    """``stats`` without the private per-row arrays (for JSON and the manifest)."""
    return {
        **stats,
        "splits": {
            n: {k: v for k, v in s.items() if not k.startswith("_")} for n, s in stats["splits"].items()
        },
    }


def plot(stats: dict[str, Any], folder: str | Path, tables: dict[str, Any] | None = None) -> list[Path]:
    """Write ``margin-<split>.png`` and ``lengths-<split>.png`` histograms into ``folder``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, s in stats["splits"].items():
        values = s.get("_margins")
        if values:
            fig, ax = plt.subplots(figsize=(6, 3.5))
            ax.hist(values, bins=50, color="#4c72b0")
            ax.set(title=f"{name}: margin", xlabel="margin", ylabel="rows")
            fig.tight_layout()
            written.append(_save(fig, folder / f"margin-{name}.png"))
            plt.close(fig)
        lengths = s.get("_lengths")
        unit = "tokens" if lengths is not None else "characters"
        series = (
            {"prompt": lengths.prompt, "chosen": lengths.chosen, "rejected": lengths.rejected}
            if lengths is not None
            else s.get("_chars")
        )
        if series:
            fig, ax = plt.subplots(figsize=(6, 3.5))
            for label, vals in series.items():
                ax.hist(vals, bins=50, alpha=0.5, label=label)
            ax.set(title=f"{name}: lengths ({unit})", xlabel=unit, ylabel="rows")
            ax.legend()
            fig.tight_layout()
            written.append(_save(fig, folder / f"lengths-{name}.png"))
            plt.close(fig)
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    return path


def record_plots(folder: str | Path, plots: list[Path], stats: dict[str, Any]) -> list[str]:
    """Record the statistics and the plots that lie inside the set folder in ``prefkit.json``
    (``manifest["stats"]``: ``plots`` as paths relative to the folder) and rewrite the dataset card."""
    from prefkit.output import read_output, refresh_card, write_manifest

    out = read_output(folder)
    root = out.path.resolve()
    inside = []
    for p in plots:
        try:
            inside.append(Path(p).resolve().relative_to(root).as_posix())
        except ValueError:
            continue
    manifest = out.manifest
    manifest["stats"] = {
        "plots": inside,
        "splits": {
            n: {k: v for k, v in s.items() if k != "build_counts"} for n, s in stats["splits"].items()
        },
    }
    write_manifest(out.path, manifest)
    refresh_card(out.path)
    return inside
