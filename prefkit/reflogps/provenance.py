"""Provenance of precomputed reference values: what scored a set, and the one check that compares it with what a
later step uses (`reflogps` against the build's tokenizer, `verify` against the model it loads, the TRL trainer
against its model, tokenizer and ``max_length``).

The manifest's ``reflogps`` section records the model (id or path, resolved revision, weight / tokenizer /
chat-template hashes), dtype, ``max_length``, truncation mode, the TRL tokenization rule and the engine settings.
"""

from __future__ import annotations

from datetime import datetime, timezone

from prefkit import __version__
from prefkit.errors import ModelError

#: what must match for the stored values to be the ones a trainer would compute: (key, what it is)
CHECKED = (
    ("weights_sha256", "the model's weights"),
    ("tokenizer_sha256", "the tokenizer"),
    ("chat_template_sha256", "the chat template"),
    ("max_length", "max_length"),
    ("truncation_mode", "the truncation mode"),
)


def differences(recorded: dict, actual: dict) -> list[str]:
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


def check_build_tokenizer(built: dict, prov: dict, model: str) -> None:
    """Refuse to score a set that `build --tokenizer` filtered or rendered for another tokenizer or template."""
    pairs = (
        ("hash", "tokenizer_sha256", "tokenizer"),
        ("chat_template_hash", "chat_template_sha256", "chat template"),
    )
    for built_key, prov_key, what in pairs:
        if built.get(built_key) and prov.get(prov_key) and built[built_key] != prov[prov_key]:
            raise ModelError(
                f"the set was built for another {what} ({built.get('name_or_path') or 'unknown'}) than {model}'s",
                "score with the model whose tokenizer built the set, rebuild with --tokenizer MODEL, "
                "or pass --allow-mismatch to score anyway",
            )


def scoring_settings(
    prov: dict, device_type: str, max_length: int, rule: str, engine: dict, extra: dict
) -> dict:
    """The settings that decide the values (their hash is the work folder's fingerprint)."""
    return {
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
        "attn_implementation": prov["attn_implementation"],
        "max_length": settings["max_length"],
        "truncation_mode": "keep_start",
        "trl_tokenization_rule": settings["trl_tokenization_rule"],
        "trl_version": trl_version(),
        "engine": run.get("engine"),
        "splits": run["counts"]["splits"],
        "totals": run["counts"]["totals"],
        "seconds": run.get("seconds"),
    }


def trl_version() -> str | None:
    """The installed TRL's version (None when TRL is not installed)."""
    try:
        from importlib.metadata import version

        return version("trl")
    except Exception:  # optional dependency; informational only
        return None


__all__ = ["CHECKED", "check_build_tokenizer", "differences", "scoring_settings", "section", "trl_version"]
