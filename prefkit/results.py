"""What the commands return: one result dataclass per command, each with ``summary()`` (the human text the CLI
prints) and ``to_dict()`` (the JSON object ``--json`` prints).

:class:`~prefkit.pipeline.BuildResult` (``build``) and :class:`~prefkit.publish.hub.PushResult` (``push``) live
beside their functions, ``presets``' beside its function, the sharded jobs' in :mod:`prefkit.job_results`; this module
holds ``detect``'s and ``stats``', the base class and the text renderers they share. Import-light: no polars, pyarrow or
numpy, so the CLI can render without them.

Results of 0.2 were plain dicts: ``result["key"]`` and ``result.get("key")`` still read a key of
``to_dict()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from prefkit.accounting import meaning

__all__ = [
    "DetectResult",
    "Result",
    "StatsResult",
    "counts_table",
    "num",
]


class Result:
    """The base of every command's result (a dataclass): ``to_dict()`` is the JSON object, ``summary()`` the
    text. Keys the declared fields do not name stay in ``extra`` and are appended to ``to_dict()``."""

    extra: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready object ``--json`` prints (the declared fields in order, then ``extra``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}  # type: ignore[arg-type]
        return {**out, **self.extra}

    def summary(self) -> str:
        """The human text the CLI prints (no trailing newline)."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """The result of a summary dict: declared keys become fields, any other key goes to ``extra``."""
        names = {f.name for f in fields(cls)} - {"extra"}  # type: ignore[arg-type]
        known = {k: v for k, v in data.items() if k in names}
        make: Any = cls  # a dataclass subclass: its fields are the keywords
        return make(**known, extra={k: v for k, v in data.items() if k not in names})

    # dict-style reading, as the 0.2 results (plain dicts) were read
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)


def _lines(*parts: str | list[str]) -> str:
    out: list[str] = []
    for p in parts:
        out += p if isinstance(p, list) else [p]
    return "\n".join(out)


def counts_table(
    splits: dict[str, dict],
    seconds: float | None = None,
    output: str | None = None,
    export: dict | None = None,
) -> str:
    """A build's counts as text: read / kept / dropped / invalid (/ added) per split, the reasons with their
    meaning (:func:`prefkit.accounting.meaning`), what an export wrote, where and how long."""

    lines: list[str] = []
    added_any = any(c.get("added") for c in splits.values())
    header = f"{'split':<16} {'read':>9} {'kept':>9} {'dropped':>9} {'invalid':>9}" + (
        f" {'added':>9}" if added_any else ""
    )
    lines += [header, "-" * len(header)]
    for name, c in splits.items():
        row = f"{name:<16} {c['read']:>9,} {c['kept']:>9,} {sum(c['dropped'].values()):>9,} {sum(c['invalid'].values()):>9,}"
        lines.append(row + (f" {sum((c.get('added') or {}).values()):>9,}" if added_any else ""))
    reasons: dict[tuple[str, str], int] = {}
    for c in splits.values():
        for stage in ("dropped", "invalid", "added", "flags"):
            for r, n in c.get(stage, {}).items():
                reasons[(stage, r)] = reasons.get((stage, r), 0) + n
    if reasons:
        lines.append("")
        for (stage, r), n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {stage:<8} {r:<28} {n:>9,}  {meaning(stage, r)}")
    if export:
        rows = sum(s.get("rows", 0) for s in export.get("splits", {}).values())
        kept = sum(c["kept"] for c in splits.values())
        lines += ["", f"  export {export['shape']}: {rows:,} rows written from {kept:,} kept pairs"]
    tail = []
    if output:
        tail.append(f"wrote {output}")
    if seconds is not None:
        tail.append(f"in {seconds:.1f}s")
    if tail:
        lines += ["", " ".join(tail)]
    return "\n".join(lines)


@dataclass
class DetectResult(Result):
    """What ``detect`` found: per split (``splits[name]``), the rows read, the family (``format``, its letter
    ``family`` and ``description``), the column ``mapping``, the split's ``columns`` and the ``unused`` ones."""

    source: str
    sampled_rows: int
    splits: dict[str, dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"source: {self.source}"]
        for name, info in self.splits.items():
            lines += ["", f"split {name} ({info['rows']:,} rows read)"]
            lines.append(f"  format:  {info['format']} (family {info['family']}: {info['description']})")
            extra = info["mapping"].get("extra", {})
            for key, col in info["mapping"].items():
                if key not in ("family", "extra"):
                    lines.append(f"  {key:<15}<- {col}")
            for key, col in extra.get("columns", {}).items():
                lines.append(f"  {key:<15}<- {col}")
            for key, value in extra.items():
                if key != "columns":
                    lines.append(f"  {key:<15}   {value}")
            if info["unused"]:
                lines.append(f"  unused columns: {', '.join(info['unused'])}")
        return "\n".join(lines)


@dataclass
class StatsResult(Result):
    """The statistics of a built set (:func:`prefkit.output.stats.compute_stats`, without the per-row arrays):
    ``path``, ``splits`` (per split: rows, margin and length distributions, length bias, residue, the build's
    counts …), ``tokenizer`` when lengths were counted in tokens; ``plots``: the PNGs written (not in
    ``to_dict()``, which is the JSON of 0.2)."""

    path: str
    splits: dict[str, dict[str, Any]]
    tokenizer: dict[str, Any] | None = None
    plots: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "splits": self.splits}
        if self.tokenizer is not None:
            out["tokenizer"] = self.tokenizer
        return {**out, **self.extra}

    def summary(self) -> str:
        lines: list[str] = []
        for name, s in self.splits.items():
            lines += _split_stats_lines(name, s)
        return "\n".join(lines).rstrip()


def num(x: Any) -> str:
    """A number for a table: thousands separators, 3 significant digits for small floats, '-' for None."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{x:,}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _dist_rows(title: str, dists: dict) -> list[str]:
    head = f"  {title:<18} {'mean':>8} {'p5':>8} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"
    lines = [head]
    for col, d in dists.items():
        if d is None:
            lines.append(f"  {col:<18} {'-':>8}")
            continue
        lines.append(
            f"  {col:<18} " + " ".join(f"{num(d[k]):>8}" for k in ("mean", "p5", "p50", "p95", "p99", "max"))
        )
    return lines


def _split_stats_lines(name: str, s: dict[str, Any]) -> list[str]:
    """One split's block of `prefkit stats`."""
    c = s.get("build_counts") or {}
    counts = (
        f" (build: read {num(c.get('read'))}, dropped {num(sum(c.get('dropped', {}).values()))}, "
        f"invalid {num(sum(c.get('invalid', {}).values()))})"
        if c
        else ""
    )
    lines = [f"split {name}: {num(s['rows'])} rows, {s['format']}{counts}"]
    if s.get("margin"):
        lines += _dist_rows("margin", {"margin": s["margin"]})
    lines += _dist_rows("characters", s["chars"])
    if s.get("tokens"):
        lines += _dist_rows("tokens (TRL rule)", s["tokens"])
    bias = s["length_bias"]
    text = f"  length bias: chosen longer in {_pct(bias['chosen_longer_chars'])} of rows (characters)"
    if "chosen_longer_tokens" in bias:
        text += f", {_pct(bias['chosen_longer_tokens'])} (tokens)"
    unit = "tokens" if "chosen_longer_tokens" in bias else "chars"
    ratio, corr = bias.get(f"median_ratio_{unit}"), bias.get(f"margin_length_spearman_{unit}")
    text += f"; median length ratio {'-' if ratio is None else f'{ratio:.2f}'}"
    text += f"; margin~length rank correlation {'-' if corr is None else f'{corr:+.2f}'}"
    lines.append(text)
    rm = s.get("rm_audit")
    if rm:
        ids = ", ".join(map(str, rm["disagree_ids"][:5])) + (" …" if rm["disagree"] > 5 else "")
        rho = "-" if rm["spearman"] is None else f"{rm['spearman']:+.2f}"
        lines.append(
            f"  reward model: agrees with the labels on {_pct(rm['agree_fraction'])} of {num(rm['scored'])} "
            f"scored pairs; {num(rm['disagree'])} disagree ({ids or 'none'}); rank correlation with the "
            f"source margin {rho}"
        )
    residue = s.get("template_residue_rows")
    lines.append(f"  template residue: {'-' if residue is None else num(residue)} rows")
    if "system_share" in s:
        lines.append(
            f"  system prompt: {_pct(s['system_share'])} of rows, multi-turn: {_pct(s['multi_turn_share'])}"
        )
    lines.append("")
    return lines


