"""The target model's tokenizer, loaded without weights, and its identity (the hash every stage compares)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from prefkit.chat.templates import resolve_chat_template
from prefkit.errors import ModelError
from prefkit.hub_client import fetch_snapshot, looks_like_path

#: files a tokenizer can need (never weights)
TOKENIZER_PATTERNS = [
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
    "additional_chat_templates/*",
    "config.json",
    "generation_config.json",
    "vocab.*",
    "merges.txt",
    "*.model",
    "*.tiktoken",
]


def locate_tokenizer(spec: str, revision: str | None = None) -> tuple[Path, str | None]:
    """A local folder or Hub id → (folder with the tokenizer files, resolved revision or None)."""
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(
                f"tokenizer {spec!r} is a file, not a folder", "pass the model or tokenizer folder"
            )
        if not any(
            (path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
        ):
            raise ModelError(
                f"{spec!r} has no tokenizer files (tokenizer.json / tokenizer_config.json)",
                "pass the folder written by save_pretrained, or a Hub model id",
            )
        return path.resolve(), revision
    if looks_like_path(spec):
        raise ModelError(
            f"tokenizer folder {spec!r} does not exist", "check the path, or pass a Hub id like org/name"
        )

    folder = fetch_snapshot(spec, revision, TOKENIZER_PATTERNS, what="tokenizer")
    return folder, folder.name


def tokenizer_hash(tokenizer: Any) -> str:
    """SHA-256 of what decides token ids: the vocabulary/merges/normaliser/post-processor and special tokens.

    Computed from the tokenizer object (not its files), so a trainer's ``processing_class`` can be compared
    with the manifest. The chat template is hashed separately (:func:`prefkit.chat.templates.template_hash`).
    """
    parts: dict[str, Any] = {}
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)  # runtime settings, not identity
        spec.pop("padding", None)
        parts["backend"] = spec
    else:
        parts["vocab"] = sorted(tokenizer.get_vocab().items())
    parts["special"] = {
        name: getattr(tokenizer, name, None) for name in ("bos_token", "eos_token", "pad_token", "unk_token")
    }
    parts["added"] = sorted((str(k), int(v)) for k, v in tokenizer.get_added_vocab().items())
    for flag in ("add_bos_token", "add_eos_token"):
        value = getattr(tokenizer, flag, None)
        if isinstance(value, bool):
            parts[flag] = value
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def load_error(err: ValueError, subject: str, failure: str, first_line: bool = False) -> ModelError:
    """The one-line error of a transformers ``from_pretrained`` that raised ``ValueError``: ``subject`` needs
    custom code (``--trust-remote-code``), else ``failure``: the message (its first line with ``first_line``)."""
    if "trust_remote_code" in str(err):
        return ModelError(f"{subject} needs custom code", "pass --trust-remote-code if you trust it")
    message = str(err).splitlines()[0] if first_line else str(err)
    return ModelError(f"{failure}: {message}", "check the model folder")


def load_tokenizer(
    folder: Path | str, *, trust_remote_code: bool = False, chat_template: str | None = None
) -> tuple[Any, str]:
    """The tokenizer of a model folder, with an optional chat-template override → (tokenizer, template origin)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except ValueError as err:
        raise load_error(err, f"the tokenizer in {folder}", f"cannot load the tokenizer from {folder}") from None
    except (OSError, TypeError) as err:
        raise ModelError(
            f"cannot load the tokenizer from {folder}: {err}", "check the model folder"
        ) from None
    origin = "tokenizer" if getattr(tokenizer, "chat_template", None) else "none"
    if chat_template:
        tokenizer.chat_template, origin = resolve_chat_template(chat_template)
    return tokenizer, origin
