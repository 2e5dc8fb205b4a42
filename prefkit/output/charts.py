"""The set's charts, drawn by matplotlib: PNG files for the dataset card (`prefkit stats --plot`) and SVG text for
the HTML page (`prefkit report`), from the same figures.

Every histogram counts rows (integer y ticks); series compared in one chart share their bins and have a colour of
their own, named in the legend (step outlines, so overlapping series stay readable). Needs matplotlib
(``pip install 'prefkit[plot]'`` or ``'prefkit[report]'``); it is imported inside the functions.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prefkit.errors import require

#: one colour per series, the same in every chart (colour-blind safe: Okabe and Ito's palette)
COLOURS = {
    "prompt": "#999999",
    "chosen": "#009E73",
    "rejected": "#D55E00",
    "prompt+chosen": "#0072B2",
    "prompt+rejected": "#E69F00",
    "margin": "#56B4E9",
    "agree": "#009E73",
    "disagree": "#D55E00",
}
BINS = 40


def _plt() -> Any:
    matplotlib = require("matplotlib", "plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False})
    plt.rcParams["axes.spines.right"] = False
    return plt


def _finite(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


def _integer_counts(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("rows")


def shared_bins(series: Sequence[np.ndarray], bins: int = BINS, integer: bool = False) -> np.ndarray:
    """Bin edges covering every series (one set of bins for all, so bar heights compare). ``integer`` values
    (token or character counts) get edges on whole numbers."""
    values = np.concatenate([s for s in series if s.size] or [np.zeros(1)])
    low, high = float(values.min()), float(values.max())
    if integer:
        step = max(1.0, float(np.ceil((high - low + 1) / bins)))
        return np.arange(np.floor(low), high + step + 1, step) - 0.5
    if low == high:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


def histogram_figure(
    series: Mapping[str, Any], title: str, xlabel: str, limit: tuple[str, float] | None = None
) -> Any:
    """One histogram of several series on shared bins, step outlines in :data:`COLOURS` with a legend; ``limit``
    (label, x) draws a vertical line (``max_length``)."""
    plt = _plt()
    data = {k: _finite(v) for k, v in series.items()}
    integer = all(np.array_equal(v, np.round(v)) for v in data.values())
    edges = shared_bins(list(data.values()), integer=integer)
    fig, ax = plt.subplots(figsize=(5.6, 3.2))
    single = len(data) == 1
    for label, values in data.items():
        if values.size:
            style = (
                {"histtype": "stepfilled", "alpha": 0.85}
                if single
                else {"histtype": "step", "linewidth": 1.6}
            )
            ax.hist(values, bins=edges, color=COLOURS.get(label), label=label, **style)
    if limit is not None:
        ax.axvline(limit[1], color="black", linestyle="--", linewidth=1, label=f"{limit[0]} = {limit[1]:g}")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    _integer_counts(ax)
    if len(data) > 1 or limit is not None:
        ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def lengths_figure(lengths: Mapping[str, Any], unit: str, title: str, max_length: int | None = None) -> Any:
    """Two panels: the answers (chosen vs rejected, and the prompt) and what ``max_length`` truncates
    (prompt+chosen, prompt+rejected) with its line when known and the lengths are in tokens."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    panels = (("prompt", "chosen", "rejected"), ("prompt+chosen", "prompt+rejected"))
    for ax, keys, name in zip(axes, panels, ("prompt and answers", "prompt + answer"), strict=True):
        data = {k: _finite(lengths[k]) for k in keys if k in lengths}
        integer = all(np.array_equal(v, np.round(v)) for v in data.values())
        edges = shared_bins(list(data.values()), integer=integer)
        for label, values in data.items():
            if values.size:
                ax.hist(values, bins=edges, histtype="step", linewidth=1.6, color=COLOURS[label], label=label)
        if max_length and unit == "tokens" and "prompt+chosen" in keys:
            ax.axvline(
                max_length, color="black", linestyle="--", linewidth=1, label=f"max_length = {max_length}"
            )
        ax.set_title(f"{name} ({unit})")
        ax.set_xlabel(unit)
        _integer_counts(ax)
        ax.legend(frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def length_bias_figure(chosen: Any, rejected: Any, unit: str, title: str) -> Any:
    """Two panels: pairs by log2(chosen / rejected length) (right of 0: chosen longer), and the share of pairs
    whose chosen answer is the longer one by pair length (the mean of both answers, in deciles)."""
    plt = _plt()
    ch, rj = np.asarray(chosen, dtype=float), np.asarray(rejected, dtype=float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    ratio = np.log2((ch + 1) / (rj + 1))
    left.hist(ratio, bins=shared_bins([ratio]), color=COLOURS["chosen"], alpha=0.8)
    left.axvline(0, color="black", linewidth=1)
    left.set_title(f"log2(chosen / rejected {unit})")
    left.set_xlabel("← rejected longer · chosen longer →")
    _integer_counts(left)
    mean = (ch + rj) / 2
    if mean.size >= 2:
        edges = np.unique(np.percentile(mean, np.linspace(0, 100, 11)))
        which = np.clip(np.searchsorted(edges, mean, side="right") - 1, 0, max(len(edges) - 2, 0))
        centres, shares = [], []
        for b in range(max(len(edges) - 1, 1)):
            mask = (which == b) & (ch != rj)
            if mask.any():
                centres.append(float(np.median(mean[which == b])))
                shares.append(float((ch[mask] > rj[mask]).mean()))
        right.plot(centres, shares, marker="o", color=COLOURS["chosen"], label="chosen is longer")
    right.axhline(0.5, color="black", linestyle="--", linewidth=1, label="no bias (50%)")
    right.set_ylim(0, 1)
    right.set_title(f"win rate of the longer answer by length ({unit})")
    right.set_xlabel(f"pair length (mean of both answers, {unit}; deciles)")
    right.set_ylabel("share of pairs")
    right.legend(frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def rm_figure(margin: Any, rm_margin: Any, title: str) -> Any:
    """The reward model's margin against the source's margin, pairs it orders like the label in one colour and
    the others in another."""
    plt = _plt()
    m, r = np.asarray(margin, dtype=float), np.asarray(rm_margin, dtype=float)
    ok = np.isfinite(m) & np.isfinite(r)
    m, r = m[ok], r[ok]
    fig, ax = plt.subplots(figsize=(5.6, 3.2))
    for name, mask in (("agree", r > 0), ("disagree", r <= 0)):
        ax.scatter(m[mask], r[mask], s=8, color=COLOURS[name], label=f"{name} ({int(mask.sum()):,})")
    ax.axhline(0, color="black", linewidth=1)
    ax.set(title=title, xlabel="source margin", ylabel="rm_margin (chosen − rejected reward)")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def flow_figure(bars: Mapping[str, Mapping[str, int]], title: str) -> Any:
    """One horizontal stacked bar per source: its rows by where they went (``kept``, ``dropped: …``,
    ``invalid: …``), kept in green, drops in warm colours, invalid rows in greys; counts on the x axis."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    names = list(bars)
    kinds = list(dict.fromkeys(k for b in bars.values() for k in b))
    warm = plt.get_cmap("Oranges")
    grey = plt.get_cmap("Purples")
    drops = [k for k in kinds if k.startswith("dropped")]
    bad = [k for k in kinds if k.startswith("invalid")]
    colour = {"kept": COLOURS["chosen"]}
    colour.update({k: warm(0.35 + 0.5 * i / max(len(drops), 1)) for i, k in enumerate(drops)})
    colour.update({k: grey(0.35 + 0.5 * i / max(len(bad), 1)) for i, k in enumerate(bad)})
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.45 * len(names) + 0.18 * len(kinds)))
    left = np.zeros(len(names))
    for kind in kinds:
        widths = np.array([bars[n].get(kind, 0) for n in names], dtype=float)
        ax.barh(names, widths, left=left, color=colour.get(kind), label=kind)
        left += widths
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("rows")
    ax.set_title(title)
    ax.invert_yaxis()
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def to_svg(fig: Any) -> str:
    """The figure as SVG text (text kept as text: small and searchable), without the XML prologue."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def save_png(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
