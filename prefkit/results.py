"""What the commands return: one result dataclass per command, each with ``summary()`` (the human text the CLI
prints) and ``to_dict()`` (the JSON object ``--json`` prints).

:class:`~prefkit.pipeline.BuildResult` (``build``) and :class:`~prefkit.publish.hub.PushResult` (``push``) live
beside their functions; this module holds the others (``detect``, ``presets``, ``stats``, ``reflogps``,
``score``, ``verify``), the base class and the text renderers they share. Import-light: no polars, pyarrow or
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
    "ReflogpsResult",
    "Result",
    "ScoreResult",
    "StatsResult",
    "VerifyResult",
    "counts_table",
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


def shard_line(shards: dict) -> str:
    """What a worker did with the shards of a sharded job, in words."""
    text = f"scored {shards['scored']} of {shards['total']} shards"
    if shards["taken_over"]:
        text += f" ({shards['taken_over']} taken over from stopped workers)"
    if shards["resumed"]:
        text += f", {shards['resumed']} found done"
    if shards["by_others"]:
        text += f", {shards['by_others']} by other workers"
    if shards["lost"]:
        text += f", {shards['lost']} lost to other workers (lease expired)"
    return text + (", merged here" if shards["merged_here"] else "")


@dataclass
class ReflogpsResult(Result):
    """This worker's summary of a ``reflogps`` job (summed over torchrun ranks): the set (``output``), the model
    and how it ran, ``max_length``, the totals (``pairs``, ``scored``, ``dropped`` by reason, ``truncated``,
    ``tokens``), this worker's time and rates (``seconds``, ``pairs_per_s`` …, ``outcome``, ``shards``: total,
    resumed, scored, taken_over, by_others, lost, merged_here) and the counts per split."""

    output: str
    model: str
    revision: str | None
    dtype: str
    device: str
    world_size: int
    workers: int | None
    max_length: int
    pairs: int
    scored: int
    dropped: dict[str, int]
    truncated: int
    tokens: int
    seconds: float
    scoring_seconds: float
    pairs_per_s: float | None
    tokens_per_s: float | None
    outcome: str
    shards: dict[str, Any]
    splits: dict[str, dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        header = f"{'split':<16} {'pairs':>9} {'scored':>9} {'dropped':>9} {'truncated':>9} {'tokens':>12}"
        lines = [header, "-" * len(header)]
        for name, c in self.splits.items():
            lines.append(
                f"{name:<16} {c['rows']:>9,} {c['scored']:>9,} {sum(c['dropped'].values()):>9,} "
                f"{c['truncated']:>9,} {c['tokens']:>12,}"
            )
        for reason, n in self.dropped.items():
            lines.append(
                f"  dropped {reason}: {n:,} rows (TRL drops them at this --max-length; their columns are null)"
            )
        rate = (
            f"scoring {self.pairs_per_s:,.1f} pairs/s, {self.tokens_per_s or 0:,.0f} tokens/s of model time; "
            if self.pairs_per_s
            else ""
        )
        workers = f", {self.workers} workers" if (self.workers or 0) > 1 else ""
        where = f"{self.model} ({self.dtype}, {self.device} x{self.world_size}{workers})"
        lines.append("")
        if self.outcome == "already_complete":
            lines.append(
                f"{self.output} already has the reference log-probs of {where} from this job: nothing to do"
            )
            return "\n".join(lines)
        verb = "wrote" if self.shards["merged_here"] else "another worker wrote"
        took = f"this worker took {self.seconds:.1f}s wall time ({rate}{shard_line(self.shards)})"
        lines.append(f"{verb} reference log-probs of {where} to {self.output}; {took}")
        if self.pairs and not self.scored:
            lines.append(
                f"Warning: no row was scored: TRL drops every row at max_length {self.max_length} (the columns are "
                "null); rescore with a larger --max-length"
            )
        return "\n".join(lines)


@dataclass
class ScoreResult(Result):
    """This worker's summary of a ``score`` job: the set, the reward model and how it ran, ``max_length``, the
    totals (``pairs``, ``scored``, ``dropped`` (nulls) by reason, ``tokens``, ``forward_tokens``), time, rates,
    ``shards`` as in :class:`ReflogpsResult`, the counts per split and the label ``audit`` (per split and in
    total: pairs, scored, nulls, agree_fraction, disagree, disagree_ids, spearman)."""

    output: str
    reward_model: str
    revision: str | None
    dtype: str
    device: str
    world_size: int
    max_length: int
    pairs: int
    scored: int
    dropped: dict[str, int]
    tokens: int
    forward_tokens: int
    seconds: float
    scoring_seconds: float
    pairs_per_s: float | None
    tokens_per_s: float | None
    outcome: str
    shards: dict[str, Any]
    splits: dict[str, dict[str, Any]]
    audit: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        header = f"{'split':<16} {'pairs':>9} {'scored':>9} {'null':>7} {'agree':>8} {'disagree':>9} {'spearman':>9}"
        lines = [header, "-" * len(header)]
        audit = self.audit
        for name, a in [*audit["splits"].items(), ("all", audit["totals"])]:
            if name == "all" and len(audit["splits"]) < 2:
                continue
            lines.append(
                f"{name:<16} {a['pairs']:>9,} {a['scored']:>9,} {a['nulls']:>7,} {_share(a['agree_fraction']):>8} "
                f"{a['disagree']:>9,} {_rho(a['spearman']):>9}"
            )
        lines += [
            "",
            "  agree: share of scored pairs with rm_margin > 0 (the reward model prefers the chosen answer)",
            "  spearman: rank correlation of rm_margin with the source's margin ('-': no margin, or constant)",
        ]
        for reason, n in self.dropped.items():
            why = f"a text is longer than --max-length {self.max_length}" if reason == "too_long" else reason
            lines.append(f"  null {reason}: {n:,} pairs ({why})")
        for name, a in audit["splits"].items():
            if a["disagree_ids"]:
                more = (
                    f" (first {len(a['disagree_ids'])} of {a['disagree']:,})"
                    if a["disagree_ids_truncated"]
                    else ""
                )
                ids = ", ".join(str(i) for i in a["disagree_ids"][:5])
                lines.append(f"  {name}: disagreeing ids{more}: {ids}{', ...' if a['disagree'] > 5 else ''}")
        shards = self.shards
        resumed = f", {shards['resumed']} of {shards['total']} shards resumed" if shards["resumed"] else ""
        rate = (
            f"{self.pairs_per_s:,.1f} pairs/s, {self.tokens_per_s or 0:,.0f} tokens/s"
            if self.pairs_per_s
            else ""
        )
        where = f"{self.reward_model} ({self.dtype}, {self.device} x{self.world_size})"
        lines.append("")
        if self.outcome == "already_complete":
            lines.append(f"{self.output} already has the reward-model scores of {where} from this job: nothing to do")
            return "\n".join(lines)
        lines.append(f"wrote reward-model scores of {where} to {self.output} in {self.seconds:.1f}s ({rate}{resumed})")
        return "\n".join(lines)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _rho(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


@dataclass
class VerifyResult(Result):
    """What ``verify`` found: the sample it recomputed (``rows_checked``, ``values_compared``), the largest
    absolute (nats) and relative differences, the tolerance used, how many values are beyond it (``failing``),
    token count and null mismatches, the ``worst`` rows, provenance ``warnings``, and ``ok``."""

    output: str
    model: str | None
    dtype: str
    device: str
    max_length: int
    seed: int
    rows_checked: int
    values_compared: int
    max_abs_diff: float
    max_rel_diff: float
    atol: float
    rtol: float
    failing: int
    null_mismatches: int
    token_mismatches: int
    worst: list[dict[str, Any]]
    ok: bool
    warnings: list[str] = field(default_factory=list)
    #: on a mismatch, what to do (verify with the recorded setup, or rescore)
    hint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"Warning: {w}" for w in self.warnings]
        lines.append(
            f"checked {self.rows_checked} rows ({self.values_compared} values) of {self.output} "
            f"against {self.model} ({self.dtype}, plain path)"
        )
        lines.append(f"  max |diff| {self.max_abs_diff:.3g} nats, max relative diff {self.max_rel_diff:.3g}")
        lines.append(f"  tolerance: atol {self.atol:g}, rtol {self.rtol:g}")
        if self.token_mismatches or self.null_mismatches:
            lines.append(
                f"  token count mismatches {self.token_mismatches}, null mismatches {self.null_mismatches}"
            )
        if self.ok:
            lines.append("OK")
        return "\n".join(lines)


@dataclass
class CompletionScoreResult(Result):
    """What ``score`` did on a set written by `prefkit generate`: every completion got ``rm_score``; per split
    (``splits[name]``) the prompts (``rows``), ``completions`` and ``scored``; completions left null by reason
    (``dropped``)."""

    output: str
    reward_model: str = ""
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    max_length: int | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"{name:<16} {c['rows']:>9,} prompts {c['completions']:>9,} completions {c['scored']:>9,} scored"
            for name, c in self.splits.items()
        ]
        for reason, n in self.dropped.items():
            why = f"longer than --max-length {self.max_length}" if reason == "too_long" else reason
            lines.append(f"  null rm_score {reason}: {n:,} completions ({why})")
        lines.append(
            f"wrote rm_score of {self.reward_model} to every completion of {self.output} in {self.seconds:.1f}s"
        )
        return "\n".join(lines)


@dataclass
class JudgeResult(Result):
    """What ``score(judge=...)`` did: every completion of a generated set got ``judge_score`` from the LLM judge
    by ``rubric``; per split the prompts, completions and scored ones; judge answers that did not parse, by reason
    (``unparsed``: never guessed); pairwise comparisons whose verdict changed with the answers swapped."""

    output: str
    judge: str = ""
    rubric: str = ""
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    unparsed: dict[str, int] = field(default_factory=dict)
    position_swap_disagrees: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"{name:<16} {c['rows']:>9,} prompts {c['completions']:>9,} completions {c['scored']:>9,} scored"
            for name, c in self.splits.items()
        ]
        lines += [f"  unparsed {r}: {n:,} judge answers (no score taken from them)" for r, n in self.unparsed.items()]
        if self.position_swap_disagrees:
            lines.append(
                f"  {self.position_swap_disagrees:,} comparisons changed their verdict when the answers were "
                "swapped (ties)"
            )
        lines.append(
            f"wrote judge_score of {self.judge} ({self.rubric}) to the completions of {self.output} in "
            f"{self.seconds:.1f}s"
        )
        return "\n".join(lines)


@dataclass
class GenerateResult(Result):
    """What ``generate`` did: per split (``splits[name]``) the prompts (``rows``), ``completions`` and ``tokens``;
    the ``models``, the ``engine``, this worker's ``shards`` (as :class:`ReflogpsResult`'s) and throughput; with
    ``outcome="already_complete"`` the completions were there from the same job."""

    output: str
    models: list[str] = field(default_factory=list)
    engine: str = ""
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    completions: int = 0
    shards: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    tokens_per_s: float | None = None
    outcome: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        header = f"{'split':<16} {'prompts':>9} {'completions':>12} {'tokens':>12}"
        lines = [header, "-" * len(header)]
        lines += [
            f"{name:<16} {c['rows']:>9,} {c['completions']:>12,} {c['tokens']:>12,}" for name, c in self.splits.items()
        ]
        lines.append("")
        models = ", ".join(self.models)
        if self.outcome == "already_complete":
            lines.append(f"{self.output} already has the completions of {models} from this job: nothing to do")
            return "\n".join(lines)
        rate = f"{self.tokens_per_s:,.0f} tokens/s; " if self.tokens_per_s else ""
        verb = "wrote" if self.shards.get("merged_here") else "another worker wrote"
        line = shard_line(self.shards).replace("scored", "generated", 1) if self.shards else ""
        lines.append(
            f"{verb} {self.completions:,} completions of {models} ({self.engine}) to {self.output}; "
            f"this worker took {self.seconds:.1f}s ({rate}{line})"
        )
        return "\n".join(lines)
