"""A split's charts and figures on the page: matplotlib SVG from :mod:`prefkit.output.charts`, and the sentences
that state the numbers (length bias, reward-model audit, reference log-probs)."""

from __future__ import annotations

from typing import Any

import numpy as np
from markupsafe import Markup

from prefkit.output import charts
from prefkit.output.stats import plot_lengths
from prefkit.report.page import SplitPage
from prefkit.store.manifest_model import Manifest


def _svg(fig: Any) -> Markup:
    return Markup(charts.to_svg(fig))  # matplotlib writes the SVG and escapes its text


def split_charts(page: SplitPage, manifest: Manifest) -> None:
    """Set ``page.charts`` (name, svg, note), ``page.facts`` (sentences) and ``page.flow_chart``."""
    s, name, nums = page.stats, page.name, page.numbers
    page.charts, page.facts = [], []
    page.flow_chart = flow_chart(page)
    if s.get("_margins"):
        fig = charts.histogram_figure({"margin": s["_margins"]}, f"{name}: margin", "margin")
        page.charts.append({"name": "margin", "svg": _svg(fig), "note": "source margin of every kept row"})
    series, unit = plot_lengths(s)
    if series:
        max_length = manifest.built_max_length
        fig = charts.lengths_figure(series, unit, f"{name}: lengths", max_length)
        note = f"every kept row, in {unit}" + (
            f"; max_length {max_length} is drawn only for token lengths (pass --tokenizer)"
            if max_length and unit != "tokens"
            else ""
        )
        page.charts.append({"name": "lengths", "svg": _svg(fig), "note": note})
        fig = charts.length_bias_figure(series["chosen"], series["rejected"], unit, f"{name}: length bias")
        page.charts.append({"name": "length_bias", "svg": _svg(fig), "note": "chosen vs rejected length"})
        page.facts.append(bias_sentence(s.get("length_bias") or {}, unit))
    if "rm_margin" in nums:
        margin = nums.get("margin", np.full(nums["rm_margin"].shape, np.nan))
        fig = charts.rm_figure(margin, nums["rm_margin"], f"{name}: reward model vs source margin")
        page.charts.append({"name": "rm", "svg": _svg(fig), "note": "each scored kept row"})
        page.facts.append(rm_sentence(s.get("rm_audit") or {}))
        page.disagree_note = (
            f"Kept rows whose reward model prefers the rejected answer (rm_margin ≤ 0): {len(page.disagree)} "
            "shown, a uniform sample."
        )
    if "ref_chosen_logps" in nums and "ref_rejected_logps" in nums:
        ref = {"chosen": nums["ref_chosen_logps"], "rejected": nums["ref_rejected_logps"]}
        fig = charts.histogram_figure(ref, f"{name}: reference log-probs", "summed log-prob (nats)")
        page.charts.append({"name": "ref", "svg": _svg(fig), "note": "ref_chosen_logps, ref_rejected_logps"})
        diff = ref["chosen"] - ref["rejected"]
        fig = charts.histogram_figure(
            {"margin": diff}, f"{name}: reference margin", "chosen − rejected (nats)"
        )
        page.charts.append({"name": "ref_margin", "svg": _svg(fig), "note": "what the reference prefers"})
        finite = diff[np.isfinite(diff)]
        if finite.size:
            page.facts.append(
                f"The reference model gives the chosen answer the higher log-prob in {(finite > 0).mean():.1%} "
                f"of {finite.size:,} rows (median margin {np.median(finite):.3g} nats)."
            )


def bias_sentence(bias: dict[str, Any], unit: str) -> str:
    key = "tokens" if unit == "tokens" else "chars"
    longer, ratio = bias.get(f"chosen_longer_{key}"), bias.get(f"median_ratio_{key}")
    corr = bias.get(f"margin_length_spearman_{key}")
    text = "Length bias: the chosen answer is longer in " + ("-" if longer is None else f"{longer:.1%}")
    text += f" of pairs ({unit}); median length ratio chosen/rejected "
    text += "-" if ratio is None else f"{ratio:.2f}"
    return (
        text
        + "; rank correlation of margin with length difference "
        + ("-." if corr is None else f"{corr:+.2f}.")
    )


def rm_sentence(rm: dict[str, Any]) -> str:
    if not rm:
        return ""
    agree = "-" if rm.get("agree_fraction") is None else f"{rm['agree_fraction']:.1%}"
    corr = "-" if rm.get("spearman") is None else f"{rm['spearman']:+.2f}"
    return (
        f"Reward model: agrees with the labels on {agree} of {rm.get('scored', 0):,} scored pairs; "
        f"{rm.get('disagree', 0):,} disagree; rank correlation of rm_margin with the source margin {corr}."
    )


def flow_chart(page: SplitPage) -> Markup | None:
    """Horizontal bars per source: kept, then each drop and invalid reason (counts from the manifest)."""
    if not page.sources:
        return None
    bars = {
        f"{f['source']} [{f['split']}]": {
            "kept": f.get("kept") or 0,
            **{f"dropped: {k}": v for k, v in f["dropped"].items()},
            **{f"invalid: {k}": v for k, v in f["invalid"].items()},
        }
        for f in page.sources
    }
    return _svg(charts.flow_figure(bars, f"{page.name}: where the rows went"))
