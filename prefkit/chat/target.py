"""The target model's tokenizer and chat template (``--tokenizer`` / ``--chat-template``), loaded without weights.

``load_target("./my-sft-model")`` reads only the tokenizer files of a local folder or a Hub repo (no weights
are downloaded); ``--chat-template NAME|FILE`` replaces or supplies its template. Without a tokenizer, a
built-in template still renders text (``--chat-template chatml --output-format text``) with that family's
usual special tokens; token-length filters need a tokenizer.

The manifest entry (:meth:`Target.manifest_entry`) records what decides token ids and rendered text, with the
same hashes ``prefkit reflogps`` records for its model (:func:`prefkit.chat.tokenizer.tokenizer_hash` /
:func:`prefkit.chat.templates.template_hash`), so a scoring run can refuse a set built for another tokenizer or template.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefkit.chat.templates import (
    ChatRenderer,
    builtin_names,
    builtin_templates,
    no_chat_template,
    resolve_chat_template,
)
from prefkit.chat.tokenizer import load_tokenizer, locate_tokenizer, tokenizer_hash
from prefkit.errors import ModelError, option, require
from prefkit.optionspec import OptionGroup
from prefkit.optionspec import option as field


@dataclass
class Target:
    """What the set is prepared for: a tokenizer (optional) and the chat template that renders the rows."""

    renderer: ChatRenderer
    template_origin: str
    tokenizer: Any = None
    name_or_path: str | None = None
    revision: str | None = None

    def require_tokenizer(self, what: str) -> Any:
        if self.tokenizer is None:
            raise ModelError(
                f"{what} needs the target model's tokenizer",
                "pass --tokenizer MODEL_OR_PATH (a folder or Hub id)",
            )
        return self.tokenizer

    @property
    def special_tokens(self) -> tuple[str, ...]:
        """The tokenizer's special tokens (or a built-in template's ``bos_token``/``eos_token``): text that
        should never appear inside a message where a turn starts or ends (:mod:`prefkit.filters.residue`)."""
        if self.tokenizer is not None:
            tokens = getattr(self.tokenizer, "all_special_tokens", None) or []
        else:
            tokens = [v for v in self.renderer.variables.values() if isinstance(v, str)]
        return tuple(dict.fromkeys(t for t in tokens if isinstance(t, str) and t))

    @property
    def bos_token(self) -> str | None:
        """The tokenizer's BOS token text (or a built-in template's ``bos_token``), None when it has none."""
        if self.tokenizer is not None:
            bos = getattr(self.tokenizer, "bos_token", None)
        else:
            bos = self.renderer.variables.get("bos_token")
        return bos if isinstance(bos, str) and bos else None

    def manifest_entry(self, **settings: Any) -> dict[str, Any]:
        """``manifest["tokenizer"]``: identity and hashes of tokenizer and template, plus ``settings``."""

        return {
            "name_or_path": self.name_or_path,
            "revision": self.revision,
            "hash": tokenizer_hash(self.tokenizer) if self.tokenizer is not None else None,
            "class": type(self.tokenizer).__name__ if self.tokenizer is not None else None,
            "chat_template": self.template_origin,
            "chat_template_hash": self.renderer.hash,
            "bos_token": self.bos_token,
            **{k: v for k, v in settings.items() if v is not None},
        }


def load_target(
    tokenizer: str | None = None,
    chat_template: str | None = None,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> Target:
    """Load the tokenizer (if given) and resolve the chat template.

    Raises :class:`~prefkit.errors.ModelError` when neither is given, the tokenizer cannot be loaded, the
    template name/file is unknown, or the tokenizer has no template and ``chat_template`` is not given.
    """
    if tokenizer is None and chat_template is None:
        raise ModelError(
            "no tokenizer and no chat template",
            f"pass {option('tokenizer')} and/or {option('chat_template')}",
        )
    require(
        "transformers", f"{option('tokenizer')} / {option('chat_template')} (rendering and counting tokens)"
    )

    template = origin = None
    if chat_template is not None:
        template, origin = resolve_chat_template(chat_template)
    if tokenizer is None:
        name = origin.split(":", 1)[1] if origin and origin.startswith("builtin:") else None
        builtin = builtin_templates().get(name) if name else None
        variables = dict(builtin.special_tokens) if builtin else {}
        return Target(ChatRenderer(template, variables), origin)  # type: ignore[arg-type]


    folder, resolved = locate_tokenizer(tokenizer, revision)
    tok, tok_origin = load_tokenizer(folder, trust_remote_code=trust_remote_code)
    if template is not None:
        tok.chat_template = template
    elif not getattr(tok, "chat_template", None):
        raise no_chat_template(f"the tokenizer {tokenizer!r}")
    renderer = ChatRenderer.from_tokenizer(tok)
    return Target(renderer, origin or tok_origin, tok, tokenizer, resolved)


class TargetOptions(OptionGroup):
    """The target model's tokenizer and chat template, as `build`, `stats` and `report` take them (their flags
    are generated from these fields; ``BuildOptions``' ``chat`` group adds the output format)."""

    tokenizer: str | None = field(
        None,
        "The target model's tokenizer: a local folder or a Hub id (only tokenizer files are read).",
        metavar="MODEL_OR_PATH",
    )
    chat_template: str | None = field(
        None,
        f"Chat template: a built-in name ({', '.join(builtin_names())}) or a Jinja file; replaces the "
        "tokenizer's own. Needed when the tokenizer has none.",
        metavar="NAME|FILE",
    )
    tokenizer_revision: str | None = field(None, "Hub branch, tag or commit of --tokenizer.")
    trust_remote_code: bool = field(False, "Allow a tokenizer that needs custom code.")

    def load(self) -> Target | None:
        """The target these options name (:func:`load_target`), None when they name no tokenizer or template."""
        if not (self.tokenizer or self.chat_template):
            return None
        return load_target(
            self.tokenizer,
            self.chat_template,
            revision=self.tokenizer_revision,
            trust_remote_code=self.trust_remote_code,
        )


#: the target options' names (the keywords of `stats` and `report` that choose the target)
TARGET_FIELDS = tuple(TargetOptions.model_fields)

__all__ = ["TARGET_FIELDS", "Target", "TargetOptions", "load_target"]
