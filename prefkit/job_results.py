"""What the sharded jobs return (:mod:`prefkit.results`' kind of result, one per command): ``reflogps``
(:class:`ReflogpsResult`), ``score`` (:class:`ScoreResult`, on a generated set :class:`CompletionScoreResult` or
:class:`JudgeResult`), ``verify`` (:class:`VerifyResult`) and ``generate`` (:class:`GenerateResult`), with the line
that says what a worker did with the shards. Import-light, like :mod:`prefkit.results`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefkit.results import Result

__all__ = [
    "CompletionScoreResult",
    "GenerateResult",
    "JudgeResult",
    "ReflogpsResult",
    "ScoreResult",
    "VerifyResult",
    "shard_line",
]


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
