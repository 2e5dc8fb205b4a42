"""Statistics of a built set, per split: the one function behind `prefkit stats`, the dataset card and `push`.

For each split: row counts, the margin distribution, lengths per column in characters and, with a tokenizer,
in tokens counted by TRL's rule (:mod:`prefkit.chat.lengths`: prompt = TRL's prompt ids, chosen/rejected =
completion ids, plus prompt+answer totals, what ``max_length`` truncates), length bias (how often the chosen
answer is longer than the rejected one, which DPO can learn as "longer is better"), template residue (rows whose
message text holds chat-template tokens), after `prefkit reflogps` the reference margin, and after `prefkit score`
the label audit (:mod:`prefkit.output.audit`: how often the reward model orders a pair like its label). `build` stores
the figures in the manifest (``stats``) and the card shows them; `prefkit stats` recomputes them from the data.

Percentiles are linear-interpolated (numpy's default).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import field_validator

from prefkit.chat.render import MessageRows
from prefkit.chat.target import TargetOptions
from prefkit.optionspec import option
from prefkit.store.folder import MANIFEST_NAME
from prefkit.store.manifest_model import Manifest, Stats, Tokenizer
from prefkit.values import names

if TYPE_CHECKING:
    from prefkit.results import StatsResult

import pyarrow.parquet as pq

from prefkit.chat.lengths import message_token_lengths, text_token_lengths
from prefkit.errors import OutputError
from prefkit.filters.residue import residue_markers
from prefkit.output import charts, read_output, refresh_card, require_trl_shape, write_manifest
from prefkit.output.audit import AUDIT_COLUMNS, split_audit
from prefkit.progress import bar
from prefkit.record import frame_rows
from prefkit.results import StatsResult
from prefkit.select.length_balance import length_bias as measure
from prefkit.spill import batch_rows
from prefkit.store.folder import stderr_warning
from prefkit.store.lock import out_lock

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

    m = measure(chosen, rejected, margin)
    pairs, equal = m["pairs"], m["equal_length"]
    return {
        f"chosen_longer_{unit}": m["chosen_longer_fraction"],
        f"equal_{unit}": equal / pairs if pairs and equal is not None else None,
        f"median_ratio_{unit}": m["median_length_ratio"],
        f"margin_length_spearman_{unit}": None if margin is None else m["margin_length_spearman"],
    }


def _trl_shaped(df: pl.DataFrame) -> bool:
    """prompt/chosen/rejected as messages or as text (not another trainer's export shape)."""
    if not {"prompt", "chosen", "rejected"} <= set(df.columns):
        return False
    kind = df.schema["chosen"]
    return kind == pl.String or (isinstance(kind, pl.List) and isinstance(kind.inner, pl.Struct))


def kto_weight_ranges(desirable: int, undesirable: int) -> dict[str, Any] | None:
    """TRL's recommended ``KTOConfig`` ``desirable_weight`` / ``undesirable_weight`` for these label counts: the
    ratio ``(desirable_weight * n_desirable) / (undesirable_weight * n_undesirable)`` in ``[1, 4/3]`` (KTO paper,
    Eq. 8, as TRL 1.16's ``KTOTrainer`` checks it): either weight in its range with the other at 1, bounds rounded
    to 2 places, 4/3 taken as 1.33. None when the counts are equal or one is zero (TRL gives no range then)."""
    if desirable == undesirable or not desirable or not undesirable:
        return None
    return {
        "desirable_weight": [round(undesirable / desirable, 2), round(undesirable / desirable * 1.33, 2)],
        "undesirable_weight": [round(desirable / undesirable / 1.33, 2), round(desirable / undesirable, 2)],
        "rule": "(desirable_weight * n_desirable) / (undesirable_weight * n_undesirable) in [1, 4/3]",
    }


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
        self.labels: list[int] | None = None  # KTO rows: [desirable, undesirable]

    def add(self, table: pa.Table) -> None:
        df = cast(pl.DataFrame, pl.from_arrow(table))
        self.rows += table.num_rows
        self.has_margin = "margin" in df.columns
        if self.has_margin:
            self.margin.append(df["margin"].cast(pl.Float64).to_numpy())
        self.trl = _trl_shaped(df)
        if "label" in table.column_names and pa.types.is_boolean(table.schema.field("label").type):
            yes = int(pc.sum(table.column("label")).as_py() or 0)
            done = self.labels or [0, 0]
            self.labels = [done[0] + yes, done[1] + table.num_rows - yes]
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
            self.audit.append(table.select([c for c in AUDIT_COLUMNS if c in table.column_names]))
        if self.target is not None and getattr(self.target, "tokenizer", None) is not None and df.height:
            for k, v in _token_lengths(df, self.target, self.text).items():
                self.tokens.setdefault(k, []).extend(v)

    def result(self, columns: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.rows, "columns": columns}
        margin = np.concatenate(self.margin) if self.has_margin else None
        out["margin"] = None if margin is None else distribution(margin)
        if self.labels is not None:
            yes, no = self.labels
            out["labels"] = {"desirable": yes, "undesirable": no, "recommended_weights": kto_weight_ranges(yes, no)}
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

    return int(residue_markers(df).is_not_null().sum())


def _token_lengths(df: pl.DataFrame, target: Any, text: bool) -> dict[str, list[int]]:
    if text:
        prompts, chosen, rejected = (df[c].to_list() for c in ("prompt", "chosen", "rejected"))
        lengths = text_token_lengths(target.tokenizer, prompts, chosen, rejected)
    else:
        prompts, chosen, rejected, extras = frame_rows(df)
        lengths = message_token_lengths(target, MessageRows(prompts, chosen, rejected, extras))
    assert lengths.prompt is not None, "both counters compute prompt lengths when asked for answers"
    return {
        "prompt": lengths.prompt,
        "chosen": lengths.chosen,
        "rejected": lengths.rejected,
        "prompt+chosen": lengths.chosen_total,
        "prompt+rejected": lengths.rejected_total,
    }


#: data columns the statistics read (the rest of a split is not loaded)
STATS_COLUMNS = (
    "label",
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

    stored = out.typed_manifest.split_stats()
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

    out = read_output(folder, warn=stderr_warning)
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
    entries = out.typed_manifest.split_entries
    for name, stats in result["splits"].items():
        entry = entries[name].to_dict() if name in entries else {}
        stats["build_counts"] = {k: v for k, v in entry.items() if k != "files"}
    return result


def public(stats: dict[str, Any]) -> dict[str, Any]:
    """``stats`` without the private per-row arrays (for JSON and the manifest)."""
    return {
        **stats,
        "splits": {
            n: {k: v for k, v in s.items() if not k.startswith("_")} for n, s in stats["splits"].items()
        },
    }


def plot(stats: dict[str, Any], folder: str | Path, max_length: int | None = None) -> list[Path]:
    """Write ``margin-<split>.png`` and ``lengths-<split>.png`` histograms into ``folder``; returns the paths.

    Drawn by :mod:`prefkit.output.charts`: integer row counts, chosen and rejected on shared bins in colours of
    their own (named in the legend), the prompt+answer series and, with token lengths, a line at ``max_length``
    (the set's, from its manifest, when not given). Needs matplotlib (``pip install 'prefkit[plot]'``)."""

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if max_length is None:
        max_length = set_max_length(stats)
    written: list[Path] = []
    for name, s in stats["splits"].items():
        if s.get("_margins"):
            fig = charts.histogram_figure({"margin": s["_margins"]}, f"{name}: margin", "margin")
            written.append(charts.save_png(fig, folder / f"margin-{name}.png"))
        series, unit = plot_lengths(s)
        if series:
            fig = charts.lengths_figure(series, unit, f"{name}: lengths", max_length)
            written.append(charts.save_png(fig, folder / f"lengths-{name}.png"))
    return written


def plot_lengths(split: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The per-row lengths of a split's statistics (:func:`split_stats` with ``keep_values``) and their unit:
    tokens when a tokenizer counted them, else characters (prompt+answer added up)."""
    if split.get("_lengths"):
        return split["_lengths"], "tokens"
    chars = split.get("_chars")
    if not chars:
        return {}, "characters"
    prompt = np.asarray(chars["prompt"], dtype=float)
    totals = {f"prompt+{k}": prompt + np.asarray(chars[k], dtype=float) for k in ("chosen", "rejected")}
    return {**chars, **totals}, "characters"


def set_max_length(stats: dict[str, Any]) -> int | None:
    """The ``max_length`` the set was built with (its manifest's ``tokenizer`` entry or ``parameters``), if any."""
    try:
        manifest = Manifest.load(Path(stats["path"]) / MANIFEST_NAME)
    except (KeyError, OSError, ValueError):  # (a pydantic ValidationError is a ValueError)
        return None
    return manifest.built_max_length


def record_stats(folder: str | Path, stats: dict[str, Any], plots: list[Path] | None = None) -> list[str]:
    """Record the statistics (and the plots that lie inside the set folder, as paths relative to it) in
    ``prefkit.json`` (``manifest["stats"]``) and rewrite the dataset card. Returns the recorded plot paths."""

    with out_lock(folder, "stats"):
        return _record(folder, stats, plots)


def plot_and_record(folder: str | Path, stats: dict[str, Any], plot_dir: str | Path) -> list[Path]:
    """Write the plots into ``plot_dir`` and record the statistics in the set (:func:`record_stats`), both under
    OUT's writer lock (plots inside OUT are not lost to another command's swap). Returns the plots' paths."""

    with out_lock(folder, "stats"):
        paths = plot(stats, plot_dir)
        record_stats(folder, stats, paths)
    return paths


def _record(folder: str | Path, stats: dict[str, Any], plots: list[Path] | None) -> list[str]:
    out = read_output(folder)
    root = out.path.resolve()
    inside = []
    for p in plots or []:
        try:
            inside.append(Path(p).resolve().relative_to(root).as_posix())
        except ValueError:
            continue
    manifest = out.typed_manifest
    splits = {
        n: {k: v for k, v in s.items() if k != "build_counts"} for n, s in public(stats)["splits"].items()
    }
    manifest.stats = Stats(plots=inside, splits=splits)
    if "tokenizer" in stats:
        manifest.stats.tokenizer = Tokenizer.model_validate(stats["tokenizer"])
    write_manifest(out.path, manifest)
    refresh_card(out.path)
    return inside


class StatsOptions(TargetOptions):
    """What `prefkit stats` describes and writes besides the numbers; with a tokenizer or chat template
    (:class:`~prefkit.chat.target.TargetOptions`) lengths are in tokens by TRL's rule."""

    COMMAND: ClassVar[str] = "stats"

    split: tuple[str, ...] = option((), "Split(s) to describe (repeatable). Default: all.")
    plot: str | Path | None = option(
        None,
        "Write PNG histograms (margin, lengths) into this folder. Inside the set folder (e.g. OUT/plots) they "
        "are recorded in prefkit.json and embedded in the dataset card.",
        path="dir",
    )

    @field_validator("split", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return names(value, None) or ()


def stats(
    folder: str | Path, options: StatsOptions | None = None, *, progress: bool = False, **keywords: Any
) -> StatsResult:
    """`prefkit stats`: the statistics of a set built by ``build`` (:func:`compute_stats`), lengths in tokens by
    TRL's rule with ``tokenizer`` (a folder or Hub id; ``chat_template``, ``tokenizer_revision`` and
    ``trust_remote_code`` as in ``build``), else in characters; ``split``: only these splits (default: all).
    The keywords are the flags' names (or ``options``, :class:`StatsOptions`; keywords win).

    ``plot``: a folder to write PNG histograms into (``margin-<split>.png``, ``lengths-<split>.png``; needs
    ``prefkit[plot]``); the statistics and the plots inside the set folder are then recorded in ``prefkit.json``
    and the dataset card (so are token statistics); ``progress``: a progress bar over the rows. Returns a
    :class:`~prefkit.results.StatsResult` (``summary()``: the table `prefkit
    stats` prints; ``plots``: the PNGs written). Raises ``OutputError`` (not a set, an unknown split, another
    export shape), ``ModelError`` (the tokenizer cannot load), ``DependencyError`` (no matplotlib for ``plot``).

    >>> stats("hermes2k", tokenizer="./my-sft-model").splits["train"]["tokens"]["prompt"]["p95"]  # doctest: +SKIP
    412.0
    """

    opts = StatsOptions.create(options, **keywords)
    target = opts.load()
    computed = compute_stats(folder, target, list(opts.split) or None, progress=progress)
    written: list[Path] = []
    if opts.plot is not None:  # under OUT's writer lock: plots inside OUT are not lost to another command's swap
        written = plot_and_record(folder, computed, opts.plot)
    elif target is not None:  # token statistics: recorded, so the local card shows them as the pushed one does
        record_stats(folder, computed, [])
    result = StatsResult.from_dict(public(computed))
    result.plots = [str(p) for p in written]
    return result


#: :func:`plot` under a name the ``plot`` keyword of :func:`stats` does not hide
plot_stats = plot
