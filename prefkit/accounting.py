"""Where every row ends: the one reason glossary, and counts that add with ``+``.

Every row read is kept, dropped by a filter or selection (with its reason) or invalid (with the validation
error). Each stage *declares* its reasons where it is defined (``declare(Reason(...))``); :func:`glossary`
collects them for the summary, the manifest, the card and the docs test. :class:`Counts` holds the numbers of
one part, one split or the whole build and adds with ``+`` (datatrove's ``MetricStatsDict`` idea), so per-part
counts merge without bookkeeping code. The identity that always holds (tested)::

    read + sum(added) == kept + sum(dropped) + sum(invalid)

``added`` counts rows beyond one per source row (binarised pairs, upsampled copies); ``flags`` counts rows
with a property worth reporting that is not an outcome (PKU-SafeRLHF axes that disagree).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from prefkit.errors import EmptyResultError
from prefkit.frame import DETAIL, FLAG_PREFIX, REASON, STAGE, Stage, flag, flag_columns

#: where a reason's rows are counted: the frame's ``invalid`` / ``dropped`` stages, or ``added`` (rows beyond one
#: per source row) and ``flags`` (a ``flag_<name>`` column: a property counted, not an outcome)
Outcome = Literal["invalid", "dropped", "added", "flags"]


@dataclass(frozen=True)
class Reason:
    """One reason a row ends where it does.

    ``selection``: a choice among good rows (``--top``, weights), not a judgement on the row; its rejects entry
    holds no text unless ``--full-rejects``. ``fix``: what to do when rows end here and no option brings them
    back (an empty build's hint says it instead of "loosen the options").
    """

    name: str
    stage: Outcome
    meaning: str
    selection: bool = False
    #: what to do when rows end here and no option brings them back (the hint of an empty build)
    fix: str | None = None

    def lit(self) -> pl.Expr:
        """The reason as a polars literal (a ``reason`` value)."""
        return pl.lit(self.name)

    @property
    def flag(self) -> str:
        """The frame column a ``flags`` reason is counted from (``flag_<name>``)."""
        if self.stage != "flags":
            raise ValueError(f"{self.stage}/{self.name} is not a flag")
        return flag(self.name)


_GLOSSARY: dict[tuple[str, str], Reason] = {}


def declare(*reasons: Reason) -> tuple[Reason, ...]:
    """Register reasons in the glossary (each stage module calls this once, at import)."""
    for reason in reasons:
        known = _GLOSSARY.get((reason.stage, reason.name))
        if known is not None and known != reason:
            raise ValueError(f"reason {reason.stage}/{reason.name} declared twice with different meanings")
        _GLOSSARY[(reason.stage, reason.name)] = reason
    return reasons


#: rows beyond one per source row, counted by :meth:`Counts.of_frame`
EXTRA_PAIRS, UPSAMPLED = declare(
    Reason("extra_pairs", "added", "pairs beyond one per source row (ranked/rated sets are binarised)"),
    Reason("upsampled", "added", "extra copies drawn by a source weight above its size"),
)

#: the packages whose modules declare reasons
STAGE_PACKAGES = ("prefkit.formats", "prefkit.filters", "prefkit.select")


def glossary() -> dict[tuple[str, str], Reason]:
    """Every declared reason, keyed by ``(stage, name)`` (imports every module of the stage packages first, so
    the glossary does not depend on what happened to be imported)."""

    for name in STAGE_PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{name}.{info.name}")
    return dict(_GLOSSARY)


def meaning(stage: str, name: str) -> str:
    """The glossary's sentence for a reason ('' when unknown)."""
    reason = glossary().get((stage, name))
    return reason.meaning if reason else ""


def selection_reasons() -> frozenset[str]:
    """Drop reasons that are a choice among good rows (see :class:`Reason`)."""
    return frozenset(r.name for r in glossary().values() if r.selection)


def _sorted(counter: Counter) -> dict[str, int]:
    return dict(sorted((k, v) for k, v in counter.items() if v))


@dataclass
class Counts:
    """Counts of one part, split or build; ``a + b`` merges two."""

    read: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    invalid: Counter = field(default_factory=Counter)
    added: Counter = field(default_factory=Counter)
    flags: Counter = field(default_factory=Counter)

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.read + other.read,
            self.kept + other.kept,
            self.dropped + other.dropped,
            self.invalid + other.invalid,
            self.added + other.added,
            self.flags + other.flags,
        )

    @property
    def balanced(self) -> bool:
        """``read + added == kept + dropped + invalid``."""
        ins = self.read + sum(self.added.values())
        return ins == self.kept + sum(self.dropped.values()) + sum(self.invalid.values())

    def to_dict(self) -> dict[str, Any]:
        """The manifest form: ``read``, ``kept``, ``dropped``/``invalid`` by reason; ``added``/``flags`` when any."""
        out: dict[str, Any] = {
            "read": self.read,
            "kept": self.kept,
            "dropped": _sorted(self.dropped),
            "invalid": _sorted(self.invalid),
        }
        if any(self.added.values()):
            out["added"] = _sorted(self.added)
        if any(self.flags.values()):
            out["flags"] = _sorted(self.flags)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Counts:
        return cls(
            int(data.get("read", 0)),
            int(data.get("kept", 0)),
            Counter(data.get("dropped") or {}),
            Counter(data.get("invalid") or {}),
            Counter(data.get("added") or {}),
            Counter(data.get("flags") or {}),
        )

    @classmethod
    def of_frame(cls, df: pl.DataFrame, read: int | None = None, upsampled: int = 0) -> Counts:
        """Counts of classified rows (``stage``/``reason`` columns, ``flag_*`` booleans).

        ``read`` is the number of source rows (default: one per row); rows beyond one per source row are
        ``added.extra_pairs``, upsampled copies ``added.upsampled`` and kept.
        """
        by: Counter = Counter()
        for stage, reason, n in df.group_by(STAGE, REASON).len().iter_rows():
            by[(stage, reason)] += n
        read = df.height if read is None else read
        flags = Counter({c.removeprefix(FLAG_PREFIX): int(df[c].sum()) for c in flag_columns(df.columns)})
        return cls(
            read=read,
            kept=by[(Stage.KEPT, None)] + upsampled,
            dropped=Counter({r: n for (s, r), n in by.items() if s == Stage.DROPPED}),
            invalid=Counter({r: n for (s, r), n in by.items() if s == Stage.INVALID}),
            added=Counter({EXTRA_PAIRS.name: df.height - read, UPSAMPLED.name: upsampled}),
            flags=flags,
        )


def total(counts: dict[str, dict] | list[Counts]) -> Counts:
    """The sum of manifest-form counts (a ``{split: counts}`` dict) or of :class:`Counts`."""
    items = counts.values() if isinstance(counts, dict) else counts
    out = Counts()
    for c in items:
        out = out + (c if isinstance(c, Counts) else Counts.from_dict(c))
    return out


def mark_dropped(
    df: pl.DataFrame, rows: pl.Series, reasons: pl.Series | Reason, details: pl.Series | None = None
) -> pl.DataFrame:
    """Mark the rows at positions ``rows`` dropped with ``reasons`` (one per row, each a declared reason's name,
    or one :class:`Reason` for all) and, when given, their ``details`` (the evidence the rejects show in
    ``detail``)."""
    if isinstance(reasons, Reason):
        reasons = pl.Series([reasons.name] * rows.len(), dtype=pl.String)
    at = rows.cast(pl.Int64)
    if not at.is_sorted():  # older polars scatter only to ascending positions
        order = at.arg_sort()
        at, reasons = at.gather(order), reasons.gather(order)
        details = details.gather(order) if details is not None else None
    reason = pl.Series("_new", [None] * df.height, dtype=pl.String).scatter(at, reasons)
    df = df.with_columns(reason)
    if DETAIL not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.String).alias(DETAIL))
    new_detail = pl.Series("_d", [None] * df.height, dtype=pl.String)
    if details is not None:
        new_detail = new_detail.scatter(at, details.cast(pl.String))
    marked = pl.col("_new").is_not_null()
    return df.with_columns(
        pl.when(marked).then(pl.lit(Stage.DROPPED.value)).otherwise(pl.col(STAGE)).alias(STAGE),
        pl.coalesce("_new", REASON).alias(REASON),
        pl.when(marked).then(pl.lit(new_detail)).otherwise(pl.col(DETAIL)).alias(DETAIL),
    ).drop("_new")


def drop_where(
    df: pl.DataFrame, where: pl.Expr | pl.Series, reason: Reason, detail: pl.Series | None = None
) -> pl.DataFrame:
    """Mark the rows where ``where`` holds dropped with ``reason`` and, when given, their ``detail``."""
    marked = [
        pl.when(where).then(pl.lit(Stage.DROPPED.value)).otherwise(pl.col(STAGE)).alias(STAGE),
        pl.when(where).then(reason.lit()).otherwise(pl.col(REASON)).alias(REASON),
    ]
    if detail is not None:
        marked.append(pl.when(where).then(detail).otherwise(pl.col(DETAIL)).alias(DETAIL))
    return df.with_columns(*marked)


def _why(counts: dict) -> str:
    """The three largest reasons rows ended elsewhere: ``"below_min_margin 12, tie 3"``."""
    top = sorted({**counts.get("dropped", {}), **counts.get("invalid", {})}.items(), key=lambda kv: -kv[1])[
        :3
    ]
    return ", ".join(f"{r} {n:,}" for r, n in top) or "no reason: nothing was read"


def empty_sentences(manifest: dict) -> list[str]:
    """Plain sentences for a build that kept no row, or for each output split that kept none (with the reasons
    the rows ended elsewhere); empty when every split kept rows. The rule (docs/cli.md, "Empty results"): a build
    that would write an empty set or split refuses with :class:`~prefkit.errors.EmptyResultError` (exit code 4)
    and writes nothing; a dry run or a build without an output folder says the same as a warning."""
    splits = manifest["splits"]
    totals = manifest["totals"]
    if totals["read"] == 0:
        return ["no row was read: the sources hold no rows (a file with a header only?)"]
    if totals["kept"] == 0:
        dropped, invalid = sum(totals["dropped"].values()), sum(totals["invalid"].values())
        return [
            f"no row was kept: {totals['read']:,} read, {dropped:,} dropped, {invalid:,} invalid ({_why(totals)})"
        ]
    return [
        f"split {name!r} kept no row ({c['read']:,} read: {_why(c)})"
        for name, c in splits.items()
        if c["kept"] == 0
    ]


def check_not_empty(manifest: dict) -> None:
    """Raise :class:`~prefkit.errors.EmptyResultError` when the build would write an empty set or split
    (:func:`empty_sentences`)."""

    sentences = empty_sentences(manifest)
    if sentences:
        totals = manifest["totals"]
        found = [(stage, name) for stage in (Stage.DROPPED, Stage.INVALID) for name in totals.get(stage, {})]
        fixes = [r.fix for key in found if (r := _GLOSSARY.get(key)) is not None and r.fix]
        raise EmptyResultError(
            "; ".join(sentences) + "; nothing was written (datasets cannot load an empty split)",
            "; ".join(dict.fromkeys(fixes))
            or "loosen the options behind the reasons named (`prefkit build ... --dry-run` prints the counts per "
            "reason and writes nothing), or leave the empty split out (--split)",
        )
