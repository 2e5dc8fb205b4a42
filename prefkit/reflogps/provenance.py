"""Provenance of precomputed reference values: what scored a set, and the one check that compares it with what a
later step uses (`reflogps` against the build's tokenizer, `verify` against the model it loads, the TRL trainer
against its model, tokenizer and ``max_length``).

The manifest's ``reflogps`` section records the model (id or path, resolved revision, weight / tokenizer /
chat-template hashes), dtype, ``max_length``, truncation mode, the TRL tokenization rule and the engine settings.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow.compute as pc

from prefkit.chat.trl_rules import installed_trl
from prefkit.errors import ModelError
from prefkit.output.reference import adapter_words, quantization_words
from prefkit.store.manifest_model import ModelRun, Tokenizer
from prefkit.version import __version__

#: what must match for the stored values to be the ones a trainer would compute: (key, what it is)
CHECKED = (
    ("weights_sha256", "the model's weights"),
    ("tokenizer_sha256", "the tokenizer"),
    ("chat_template_sha256", "the chat template"),
    ("max_length", "max_length"),
    ("truncation_mode", "the truncation mode"),
)


def differences(recorded: dict | ModelRun, actual: dict) -> list[str]:
    """Sentences for each checked key present in ``actual`` whose value differs from ``recorded``.

    A key in ``actual`` is compared even when its value is ``None`` (``max_length=None`` means "no truncation",
    not "unknown"); hashes are compared only when both sides have one.
    """
    problems = []
    for key, what in CHECKED:
        if key not in actual:
            continue
        have, want = actual[key], recorded.get(key)
        if key.endswith("sha256") and (have is None or want is None):
            continue
        if key == "truncation_mode" and want is None:
            want = "keep_start"
        if have != want:
            detail = f" ({have!r}; the set was scored with {want!r})" if not key.endswith("sha256") else ""
            problems.append(f"{what} differs from the one the set was scored with{detail}")
    return problems


def setup_differences(recorded: dict | ModelRun, actual: dict) -> list[str]:
    """Sentences for a quantization or adapter (compared by its content hashes) other than the recorded ones
    (``actual``: a model provenance or :func:`prefkit.loading.model_identity`-like dict)."""
    problems = []
    if (recorded.get("quantization") or None) != (actual.get("quantization") or None):
        problems.append(
            f"the quantization ({quantization_words(actual.get('quantization'))}) differs from the one the set was "
            f"scored with ({quantization_words(recorded.get('quantization'))})"
        )
    have, want = adapter_identity(actual.get("adapter")), adapter_identity(recorded.get("adapter"))
    if (have or {}).get("tensors_sha256") != (want or {}).get("tensors_sha256"):
        problems.append(
            f"the adapter ({adapter_words(actual.get('adapter'))}) differs from the one the set was scored with "
            f"({adapter_words(recorded.get('adapter'))})"
        )
    return problems


def check_build_tokenizer(built: dict | Tokenizer, prov: dict, model: str) -> None:
    """Refuse to score a set that `build --tokenizer` filtered or rendered for another tokenizer or template."""
    pairs = (
        ("hash", "tokenizer_sha256", "tokenizer"),
        ("chat_template_hash", "chat_template_sha256", "chat template"),
    )
    for built_key, prov_key, what in pairs:
        if built.get(built_key) and prov.get(prov_key) and built.get(built_key) != prov[prov_key]:
            name = built.get("chat_template") if what == "chat template" else None
            name = name or built.get("name_or_path")
            shown = f" ({name})" if name else ""
            raise ModelError(
                f"the set was built for another {what}{shown} than {model}'s",
                "score with the model whose tokenizer built the set, rebuild with --tokenizer MODEL, "
                "or pass --allow-mismatch to score anyway",
            )


def scoring_settings(
    prov: dict, device_type: str, max_length: int, rule: str, engine: dict, extra: dict
) -> dict:
    """The settings that decide the values (their hash is the work folder's fingerprint)."""
    settings = {
        "model": prov["model"],
        "model_source": prov["source"],
        "revision": prov["revision"],
        "weights_sha256": prov["weights_sha256"],
        "tokenizer_sha256": prov["tokenizer_sha256"],
        "chat_template_sha256": prov["chat_template_sha256"],
        "dtype": prov["dtype"],
        "device_type": device_type,
        "attn_implementation": prov["attn_implementation"],
        "max_length": max_length,
        "trl_tokenization_rule": rule,
        "engine": engine,
        **extra,
    }
    if prov.get("quantization") or prov.get("adapter"):  # (absent otherwise: older work folders stay valid)
        settings["quantization"] = prov.get("quantization")
        settings["adapter"] = adapter_identity(prov.get("adapter"))
    return settings


def engine_records(
    settings_of: Callable[..., dict], self_test: Callable[[Any], dict], model: Any, options: Any
) -> tuple[dict, dict]:
    """(the engine settings that decide the values, fingerprinted: the automatic token budget follows free memory,
    so it is left out; the settings the manifest records, with the self-test's largest difference per path) of
    an engine (``settings_of``: :func:`prefkit.reflogps.engine.engine_settings` or the reward engine's) run with
    ``options``' ``token_budget`` and ``prefix_sharing``."""
    budget, sharing = options.token_budget, options.prefix_sharing
    fixed = settings_of(token_budget=budget, prefix_sharing=sharing)
    recorded = settings_of(model, token_budget=budget, prefix_sharing=sharing)
    recorded.pop("device", None)
    recorded["self_test_max_abs_diff"] = self_test(model)
    return fixed, recorded


def adapter_identity(adapter: dict | None) -> dict | None:
    """What identifies an adapter's values (its content hashes, never its path)."""
    if not adapter:
        return None
    return {k: adapter.get(k) for k in ("weights_sha256", "tensors_sha256")}


def section(prov: dict, settings: dict, run: dict) -> dict:
    """The manifest's ``reflogps`` section: the model's provenance, the settings, the counts and the run."""
    return {
        "prefkit_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": run.get("command"),
        "columns": run.get("columns"),
        "model": prov["model"],
        "model_source": prov["source"],
        "model_path": prov["path"],
        "revision": prov["revision"],
        "model_class": prov["model_class"],
        "weights_sha256": prov["weights_sha256"],
        "weight_files": prov["weight_files"],
        "tokenizer_sha256": prov["tokenizer_sha256"],
        "chat_template": prov["chat_template"],
        "chat_template_sha256": prov["chat_template_sha256"],
        "dtype": prov["dtype"],
        "device": settings["device_type"],
        "world_size": run.get("world_size", 1),
        "workers": run["counts"].get("workers"),
        "attn_implementation": prov["attn_implementation"],
        "quantization": prov.get("quantization"),
        "adapter": prov.get("adapter"),
        "max_length": settings["max_length"],
        "truncation_mode": "keep_start",
        "trl_tokenization_rule": settings["trl_tokenization_rule"],
        "trl_releases": _rule_releases(settings["trl_tokenization_rule"]),
        "trl_version": installed_trl(),
        "engine": run.get("engine"),
        "splits": run["counts"]["splits"],
        "totals": run["counts"]["totals"],
        "seconds": run.get("seconds"),
    }


def _rule_releases(rule: str) -> str:
    """The TRL releases whose DPOTrainer tokenizes by ``rule`` (``1.14.2..1.16``: the rule's first release and
    the last one checked), as recorded in the rule's name."""
    return rule.split(":", 1)[0].removeprefix("trl-dpo-").removeprefix("trl-kto-")


class ReferenceMismatchError(ValueError):
    """The stored reference values do not apply to how a trainer tokenizes the rows (raised at construction)."""


def check_rows(table: Any, max_length: int | None, truncation_mode: str = "keep_start") -> dict:
    """Compare a trainer's own tokenization of the rows with the scoring run, row by row, from the stored counts.

    ``table``: Arrow columns ``prompt_ids``, ``chosen_ids``, ``rejected_ids`` (what TRL's ``_prepare_dataset``
    made), ``ref_chosen_logps``/``ref_rejected_logps`` and, when present, ``chosen_tokens``/``rejected_tokens``
    (the completion tokens the scoring run summed). A row's values apply when the trainer keeps the same
    completion tokens: ``min(len(completion), max_length - len(prompt))`` with ``keep_start`` (TRL's collator).
    Returns ``{"rows", "nulls", "mismatched", "example", "checked"}``.
    """

    def lengths(name: str) -> np.ndarray:
        return pc.list_value_length(table.column(name)).to_numpy(zero_copy_only=False).astype(np.int64)

    nulls = table.column("ref_chosen_logps").is_null().to_numpy(zero_copy_only=False)
    nulls |= table.column("ref_rejected_logps").is_null().to_numpy(zero_copy_only=False)
    out = {
        "rows": table.num_rows,
        "nulls": int(nulls.sum()),
        "mismatched": 0,
        "example": None,
        "checked": False,
    }
    if not {"chosen_tokens", "rejected_tokens"} <= set(table.column_names) or not table.num_rows:
        return out
    p, c, r = lengths("prompt_ids"), lengths("chosen_ids"), lengths("rejected_ids")
    bad = np.zeros(table.num_rows, dtype=bool)
    cut_other_end = np.zeros(table.num_rows, dtype=bool)
    examples: list[tuple[Any, str, Any, Any]] = []  # (rows that differ, column, scored, kept by the trainer)
    for have, full in (("chosen_tokens", c), ("rejected_tokens", r)):
        stored = table.column(have).to_numpy(zero_copy_only=False).astype(float)
        want = full if max_length is None else np.minimum(full, np.maximum(max_length - p, 0))
        if max_length is not None and truncation_mode != "keep_start":
            cut_other_end |= (p + full) > max_length  # other tokens kept than the ones scored
        known = ~np.isnan(stored)
        differs = known & (stored != want)
        bad |= differs
        examples.append((differs, have, stored, want))
    bad |= cut_other_end
    out["checked"] = True
    out["mismatched"] = int(bad.sum())
    out["other_end"] = int(cut_other_end.sum())
    out["truncation_mode"] = truncation_mode
    if bad.any():
        i = int(np.argmax(bad))
        row = table.column("id")[i].as_py() if "id" in table.column_names else i
        for differs, have, stored, want in examples:
            if differs[i]:
                side = have.removesuffix("_tokens")
                out["example"] = (
                    f"row {row}: {int(stored[i])} {side} tokens scored, this trainer keeps {int(want[i])}"
                )
                break
        else:
            out["example"] = (
                f"row {row}: {int(p[i] + max(c[i], r[i]))} tokens, over max_length={max_length}, cut from the start "
                f"by truncation_mode={truncation_mode!r}"
            )
    return out


def row_problems(check: dict, scored_max_length: Any, max_length: int | None) -> list[tuple[str, str]]:
    """(message, fix) for each way the rows do not fit the trainer (see :func:`check_rows`); each fix can be
    followed as written (a max_length of None is not a flag value, a truncation mode is not a max_length)."""
    problems = []
    if check["nulls"]:
        rescore = (
            f"score again with the trainer's max_length (`prefkit reflogps OUT --model M --max-length {max_length} "
            "--overwrite`)"
            if max_length is not None
            else f"give the trainer the scoring run's max_length (DPOConfig(max_length={scored_max_length}))"
        )
        problems.append(
            (
                f"{check['nulls']} of {check['rows']} rows have no reference values (their prompt alone filled the "
                f"scoring max_length={scored_max_length}) but this trainer keeps them (max_length={max_length}); "
                "TRL's collator fails on the first batch that holds one",
                f"{rescore}, or drop those rows (`dataset.filter(lambda r: r['ref_chosen_logps'] is not None)`)",
            )
        )
    other_end = check.get("other_end", 0)
    if other_end:
        mode = check.get("truncation_mode")
        problems.append(
            (
                f"{other_end} of {check['rows']} rows are longer than max_length={max_length} and this trainer "
                f"truncates them with truncation_mode={mode!r}, keeping other tokens than the scoring run, which "
                f"kept the start ({check['example']})",
                "train with truncation_mode='keep_start' (what the values were scored with), or drop the rows "
                f"longer than max_length={max_length}",
            )
        )
    if check["mismatched"] - other_end > 0:
        problems.append(
            (
                f"{check['mismatched'] - other_end} of {check['rows']} rows are tokenized differently by this trainer "
                f"than by the scoring run ({check['example']}; scored with max_length={scored_max_length}, trained "
                f"with max_length={max_length}): their reference values do not apply",
                "train with the scoring run's max_length, tokenizer and chat template, or score again with the "
                "trainer's (`prefkit reflogps OUT --model M --max-length N --overwrite`)",
            )
        )
    return problems
