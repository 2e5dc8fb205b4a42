"""`prefkit verify OUT`: recompute a seeded sample of reference log-probs the plain way and compare.

The plain path (:func:`prefkit.reflogps.plain.score_pairs_plain`) runs one full forward per sequence with
a full log-softmax: nothing of the fast engine (no packing, no prefix sharing, no chunked head). By default
the model, revision, dtype, max_length and chat-template file are the ones recorded in ``prefkit.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from prefkit.chat.tokenize import tokenize_pairs
from prefkit.errors import OutputError
from prefkit.job_results import VerifyResult
from prefkit.jobs.plan import REF_COLUMNS
from prefkit.loading import LoadOptions
from prefkit.loading.model import load_model
from prefkit.optionspec import OptionGroup
from prefkit.output import OutputFolder, read_output, require_trl_shape
from prefkit.progress import bar
from prefkit.record import decode_row
from prefkit.reflogps.job import ROW_COLUMNS
from prefkit.reflogps.options import VerifyOptions
from prefkit.reflogps.plain import score_pairs_plain
from prefkit.reflogps.provenance import differences, setup_differences

#: Default tolerances per compute dtype: |stored - recomputed| <= atol + rtol * |recomputed|.
DEFAULT_TOLERANCES = {"float32": (1e-3, 1e-4), "bfloat16": (0.5, 2e-2), "float16": (0.5, 2e-2)}


def default_tolerance(dtype: str) -> tuple[float, float]:
    return DEFAULT_TOLERANCES.get(dtype, DEFAULT_TOLERANCES["bfloat16"])


def _sample_rows(folder: OutputFolder, splits: list[str], sample: int, seed: int) -> list[tuple[str, int]]:
    population = [
        (split, i) for split in splits for i in range(folder.read_split(split, columns=["chosen"]).num_rows)
    ]
    if sample >= len(population):
        return population
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(population), size=sample, replace=False).tolist())
    return [population[i] for i in picks]


def _section(folder: OutputFolder, out_dir: Any, split: str | None) -> tuple[dict, list[str]]:
    require_trl_shape(
        folder, "verify"
    )  # a generated set (no pairs yet) or another trainer's shape: said so first
    section = folder.manifest.get("reflogps")
    if not section:
        raise OutputError(
            f"{out_dir} has no reference log-probs to verify",
            "score it first with `prefkit reflogps OUT --model MODEL`",
        )
    if split and split not in folder.splits:
        raise OutputError(f"split {split!r} not in {out_dir}", f"choose one of: {', '.join(folder.splits)}")
    return section, [split] if split else folder.splits


def _stored(folder: OutputFolder, splits: list[str], picks: list[tuple[str, int]]) -> tuple[list, list, dict]:
    """The sampled rows (what TRL tokenizes), their ids, and their stored reference columns."""

    stored: dict[str, list] = {name: [] for name in REF_COLUMNS}
    rows: list[dict] = []
    ids: list[Any] = []
    for name in splits:
        indices = [i for s, i in picks if s == name]
        if not indices:
            continue
        table = folder.read_split(name).take(pa.array(indices))
        missing = [c for c in REF_COLUMNS if c not in table.column_names]
        if missing:
            raise OutputError(
                f"split {name!r} has no {missing[0]} column", "rerun `prefkit reflogps` on the set"
            )
        rows += [
            decode_row(r)
            for r in table.select([c for c in ROW_COLUMNS if c in table.column_names]).to_pylist()
        ]
        ids += table.column("id").to_pylist() if "id" in table.column_names else indices
        for col in REF_COLUMNS:
            stored[col] += table.column(col).to_pylist()
    return rows, ids, stored


def verify(
    out_dir: str | Path, model: str | None = None, *, options: OptionGroup | None = None, **keywords: Any
) -> VerifyResult:
    """Recompute ``sample`` random rows (seeded) of a scored set with the plain path; report the differences.

    ``options`` / keywords are :class:`~prefkit.reflogps.options.VerifyOptions` (the flags of `prefkit verify`:
    ``sample``, ``seed``, ``split``, ``atol``, ``rtol``, ``max_length``, ``progress`` and the model's); ``model``
    and the model's options default to what ``prefkit.json`` recorded. Returns a
    :class:`~prefkit.results.VerifyResult` (``summary()``: the report `prefkit verify` prints) with
    ``max_abs_diff``, ``max_rel_diff``, ``failing`` (values beyond ``atol + rtol*|value|``), ``token_mismatches``,
    ``null_mismatches``, provenance ``warnings`` (e.g. other weights than recorded) and ``ok``. Raises
    ``OutputError`` for a set without reference columns.
    """

    given = {k: v for k, v in keywords.items() if v is not None}
    opts = VerifyOptions.create(options, **given, **({"model": model} if model is not None else {}))
    folder = read_output(out_dir)
    section, splits = _section(folder, out_dir, opts.split)
    opts = _recorded(out_dir, section, opts)
    max_length = opts.max_length or section["max_length"]
    loaded = load_model(str(opts.model), options=opts)
    prov = loaded.provenance
    warnings = _warnings(section, prov)
    picks = _sample_rows(folder, splits, opts.sample, opts.seed)
    rows, ids, stored = _stored(folder, splits, picks)
    pairs = tokenize_pairs(rows, loaded.tokenizer, max_length, section.get("trl_tokenization_rule"))
    with bar(desc="verifying", total=len(pairs), show=opts.progress, unit="pair") as pbar:
        chosen, rejected = score_pairs_plain(loaded.model, pairs, progress=lambda n, _t: pbar.update(n))
    default_atol, default_rtol = default_tolerance(prov["dtype"])
    tolerance = (
        default_atol if opts.atol is None else opts.atol,
        default_rtol if opts.rtol is None else opts.rtol,
    )
    report = _compare(pairs, ids, stored, chosen, rejected, tolerance)
    head = {"output": str(out_dir), "model": opts.model, "dtype": prov["dtype"], "device": prov["device"]}
    hint = _hint(report, warnings, max_length)
    return VerifyResult.from_dict(
        {**head, "max_length": max_length, "seed": opts.seed, **report, "warnings": warnings, "hint": hint}
    )


def _recorded(out_dir: Any, section: dict, opts: VerifyOptions) -> VerifyOptions:
    """The options with what was not given read from the manifest's ``reflogps`` section: the model, a chat
    template file, the dtype, the quantization and adapter (unless any of those was given)."""
    recorded: dict[str, Any] = {}
    if opts.model is None:
        local = section.get("model_source") == "local"
        recorded["model"] = section.get("model_path") if local else section.get("model")
        if recorded["model"] is None:
            raise OutputError(
                f"{out_dir} records no reference model to recompute with", "pass the model with --model"
            )
        if not recorded["model"]:
            raise OutputError(f"{out_dir}'s manifest names no reference model", "pass --model")
    if opts.chat_template is None and str(section.get("chat_template", "")).startswith("file:"):
        recorded["chat_template"] = section["chat_template"].removeprefix("file:")
    if opts.dtype is None:
        recorded["dtype"] = section.get("dtype") or "auto"
    given = opts.given()
    if not any(given.get(k) is not None for k in LoadOptions.model_fields):
        recorded |= LoadOptions.from_record(section.get("quantization"), section.get("adapter")).model_dump()
    return opts.replace(**recorded)


def _warnings(section: dict, prov: dict) -> list[str]:
    """Where the model loaded now differs from the one that scored the set."""

    keys = ("weights_sha256", "tokenizer_sha256", "chat_template_sha256")
    warnings = differences(section, {k: prov.get(k) for k in keys})
    warnings += setup_differences(section, prov)
    if prov["dtype"] != section.get("dtype"):
        warnings.append(f"recomputing in {prov['dtype']} but the set was scored in {section.get('dtype')}")
    return warnings


def _hint(report: dict, warnings: list[str], max_length: int) -> str | None:
    """What to do about a failed check (a check that compared nothing fails too: ``report["ok"]`` is set False)."""
    if report["ok"] and not report["values_compared"]:  # nothing was checked: not a pass
        report["ok"] = False
        return (
            f"every sampled row is null (TRL drops rows whose prompt fills max_length {max_length}): rescore with a "
            "larger --max-length, or verify a sample that has values (--sample, --split)"
        )
    if report["ok"]:
        return None
    if warnings:
        return (
            "this check ran another setup than the one that scored the set (see the warnings): verify with the "
            "recorded one (leave out --model and the other options), or rescore with this one (`prefkit reflogps "
            "OUT --model MODEL ... --overwrite`)"
        )
    return (
        "the stored values are not this model's: rescore with `prefkit reflogps OUT --model MODEL "
        "--overwrite` (same options as recorded in OUT/prefkit.json)"
    )


def _compare(pairs: list, ids: list, stored: dict, chosen: Any, rejected: Any, tolerance: tuple) -> dict:
    atol, rtol = tolerance

    def as_float(values: list) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    have = np.concatenate([as_float(stored["ref_chosen_logps"]), as_float(stored["ref_rejected_logps"])])
    want = np.concatenate([chosen.astype(np.float64), rejected.astype(np.float64)])
    both = ~np.isnan(have) & ~np.isnan(want)
    diff = np.abs(have - want)
    rel = diff / np.maximum(np.abs(want), 1e-6)
    failing = int((both & (diff > atol + rtol * np.abs(want))).sum())
    token_want = [len(p.chosen_ids) if not p.dropped else None for p in pairs]
    token_want += [len(p.rejected_ids) if not p.dropped else None for p in pairs]
    token_have = stored["chosen_tokens"] + stored["rejected_tokens"]
    token_mismatches = sum(a != b for a, b in zip(token_have, token_want, strict=True))
    null_mismatches = int(np.sum(np.isnan(have) != np.isnan(want)))
    n = len(pairs)
    worst = [
        {
            "row": str(ids[k % n]),
            "column": REF_COLUMNS[k // n],
            "stored": float(have[k]),
            "recomputed": float(want[k]),
            "abs_diff": float(diff[k]),
        }
        for k in np.argsort(-np.where(both, diff, -1.0))[:5]
        if both[k]
    ]
    return {
        "rows_checked": n,
        "values_compared": int(both.sum()),
        "max_abs_diff": float(diff[both].max()) if both.any() else 0.0,
        "max_rel_diff": float(rel[both].max()) if both.any() else 0.0,
        "atol": atol,
        "rtol": rtol,
        "failing": failing,
        "null_mismatches": null_mismatches,
        "token_mismatches": int(token_mismatches),
        "worst": worst,
        "ok": failing == 0 and null_mismatches == 0 and token_mismatches == 0,
    }
