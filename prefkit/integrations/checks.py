"""What prefkit's TRL trainers check before they use stored reference log-probs, shared by the DPO trainer
(:mod:`prefkit.integrations.trl`), the KTO trainer (:mod:`prefkit.integrations.trl_kto`) and the TRL <= 0.28 path
(:mod:`prefkit.integrations.trl_legacy`): the manifest read, its ``reflogps`` section compared with the trainer's
model, tokenizer, chat template and ``max_length`` by content (:func:`check_against_manifest`), the warning and the
refusal a difference leads to. Imports nothing from TRL."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from prefkit.chat.templates import template_hash
from prefkit.chat.tokenizer import tokenizer_hash
from prefkit.loading import model_identity
from prefkit.loading.model import weights_hash
from prefkit.reflogps.provenance import ReferenceMismatchError, differences, setup_differences
from prefkit.store.manifest_model import Manifest, Reflogps

REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


MANIFEST_FIX = (
    "train with the tokenizer and chat template the set was scored with, or score it again with yours"
)


class PrefkitWarning(UserWarning):
    """The precomputed columns may not match the trainer (other model, tokenizer, template or max_length)."""


def has_ref_columns(dataset: Any) -> bool:
    """Whether a ``datasets.Dataset`` has both reference log-prob columns."""
    names = getattr(dataset, "column_names", None) or []
    return set(REF_COLUMNS) <= set(names)


def load_manifest(source: str | os.PathLike | dict) -> dict:
    """A prefkit manifest from a dict, an output folder, or a ``prefkit.json`` path."""
    if isinstance(source, dict):
        return source
    path = Path(source)
    if path.is_dir():
        path = path / "prefkit.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"cannot read the prefkit manifest {str(path)!r}: {err}") from None


def scoring_section(manifest: dict | Manifest | None) -> Reflogps:
    """The manifest's ``reflogps`` section (empty when there is no manifest or no such section)."""
    section = Manifest.read(manifest).reflogps if manifest else None
    return section if section is not None else Reflogps()


def _same_model(section: Reflogps | dict, name_or_path: str | None) -> bool:
    section = Reflogps.model_validate(section) if isinstance(section, dict) else section
    if not name_or_path:
        return True  # nothing to compare with
    if name_or_path == section.model:
        return True
    candidates = [section.model_path, section.model]
    if os.path.exists(name_or_path):
        real = os.path.realpath(name_or_path)
        if any(c and os.path.exists(c) and os.path.realpath(c) == real for c in candidates):
            return True
        return _same_weights(section, name_or_path)
    return False


def base_weights_hash(name_or_path: str | None, commit: str | None = None) -> str | None:
    """SHA-256 of a model's weight files as `reflogps` records it (:func:`prefkit.loading.model.weights_hash`):
    from its folder, or from the Hub cache at ``commit`` (what transformers loaded); None when they are not there."""

    if not name_or_path:
        return None
    if os.path.isdir(name_or_path):
        return weights_hash(Path(name_or_path))
    try:
        from huggingface_hub import snapshot_download

        patterns = ["*.safetensors", "*.bin", "*.pt", "*.pth"]
        folder = snapshot_download(
            name_or_path, revision=commit, allow_patterns=patterns, local_files_only=True
        )
    except Exception:  # not in the cache (or not a Hub id): nothing to hash
        return None
    return weights_hash(Path(folder))


def _same_weights(section: Reflogps, folder: str) -> bool:
    """Whether a local model folder holds the weights the set was scored with (the recorded hash): the same model
    under another path (a copy, a published set whose command names the folder only)."""


    recorded = section.weights_sha256
    return bool(recorded) and os.path.isdir(folder) and weights_hash(Path(folder)) == recorded


def check_against_manifest(
    manifest: dict | Manifest,
    *,
    model: Any = None,
    tokenizer: Any = None,
    max_length: int | None = None,
    truncation_mode: str | None = "keep_start",
) -> list[str]:
    """Differences between the run that scored a set (its manifest) and a trainer's setup, as sentences.

    Compares the model by content, never by path: the SHA-256 of its base weight files (found from the model's
    ``name_or_path``: a folder, or the Hub cache at the loaded commit; by name only when they cannot be found), its
    quantization and the adapter TRL uses as the reference (:func:`prefkit.loading.model_identity`); the tokenizer (hash of its vocabulary/merges/special tokens), the chat
    template (hash), ``max_length`` (``None``, no truncation, is a value like any other) and the truncation mode,
    with the one provenance check (:func:`prefkit.reflogps.provenance.differences`). An empty list: no difference.
    """

    section = Manifest.read(manifest).reflogps
    if section is None or not section.to_dict():
        return ["the manifest has no 'reflogps' section: the set was not scored by `prefkit reflogps`"]
    problems = []
    actual: dict[str, Any] = {"max_length": max_length}
    if model is not None:
        identity = model_identity(model)
        weights = base_weights_hash(identity["name_or_path"], identity.get("commit"))
        if weights is not None:  # by content: another path to the same files is the same model
            actual["weights_sha256"] = weights
        elif not _same_model(section, identity["name_or_path"]):
            problems.append(
                f"the trainer's model ({identity['name_or_path']}) is not the model that scored the set "
                f"({section.model}), and its weight files cannot be found to compare them"
            )
        tensors = identity["adapter_tensors_sha256"]
        adapter = {"adapter": "the PeftModel's adapter", "tensors_sha256": tensors} if tensors else None
        problems += setup_differences(section, {"quantization": identity["quantization"], "adapter": adapter})
    if truncation_mode is not None:
        actual["truncation_mode"] = truncation_mode
    if tokenizer is not None:
        tok = getattr(tokenizer, "tokenizer", tokenizer)  # a processor wraps the tokenizer
        actual["tokenizer_sha256"] = tokenizer_hash(tok)
        actual["chat_template_sha256"] = template_hash(getattr(tok, "chat_template", None))
    return problems + differences(section, actual)


#: differences that make the stored values wrong for every row (the others may leave rows untouched)
FATAL = ("the tokenizer", "the chat template", "the model's weights", "the quantization", "the adapter")


def prefkit_state(trainer: Any, manifest: str | os.PathLike | dict | None, strict: bool) -> None:
    """The state prefkit's trainers keep: whether the stored columns were used, strictness, the manifest."""
    trainer._prefkit_used_columns = False
    trainer._prefkit_strict = strict
    trainer._prefkit_manifest = load_manifest(manifest) if manifest is not None else None


def refuse(trainer: Any, problems: list[tuple[str, str]]) -> None:
    """Raise on what makes the stored values wrong (``prefkit_strict=False``: warn instead)."""

    for message, fix in problems:
        if trainer._prefkit_strict:
            raise ReferenceMismatchError(f"prefkit reference log-probs: {message}. Fix: {fix}")
        warnings.warn(f"prefkit reference log-probs: {message}", PrefkitWarning, stacklevel=4)
