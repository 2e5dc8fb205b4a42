"""Built-in chat templates (``--chat-template NAME``) and rendering exactly as ``transformers`` does.

The templates are data: ``prefkit/templates/<name>.jinja`` (package data). Each reproduces the text-only
template of a model family (see :data:`BUILTIN_TEMPLATES`). Templates whose family has no system role
(Mistral v0.1/v0.2, Gemma) fold the system message into the first user turn the way the newer releases of
those families do, so a rendered prompt stays a prefix of prompt+answer (TRL's split needs that).

Rendering goes through ``transformers``' own sandboxed Jinja environment
(``transformers.utils.chat_template_utils.render_jinja_template``: ``ImmutableSandboxedEnvironment`` with
``trim_blocks``/``lstrip_blocks``, ``raise_exception``, ``tojson``, ``strftime_now``), with the tokenizer's
special tokens as template variables and ``None`` message keys dropped: the strings are those
``tokenizer.apply_chat_template(..., tokenize=False)`` returns, without its per-call overhead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from prefkit.errors import ModelError

#: name -> the model family whose template it reproduces (and what differs, if anything)
BUILTIN_TEMPLATES: dict[str, str] = {
    "chatml": "ChatML (<|im_start|>role ... <|im_end|>), as OpenHermes/Nous models use it; no BOS",
    "llama-3": "Meta Llama 3 Instruct (<|start_header_id|> ... <|eot_id|>), BOS first",
    "mistral": "Mistral 7B Instruct v0.1 ([INST] ... [/INST]); system message folded into the first user turn",
    "zephyr": "HuggingFaceH4 Zephyr (<|user|> / <|assistant|>, each turn ends with EOS)",
    "gemma": "Google Gemma Instruct (<start_of_turn>user/model); system message folded into the first user "
    "turn, as Gemma 3 does",
    "phi-3": "Microsoft Phi-3 Instruct (<|user|> ... <|end|>); EOS after a conversation without generation prompt",
    "qwen": "Qwen2.5 Instruct (ChatML with Qwen's default system message when the row has none); no tools",
}

#: aliases accepted for the names above
ALIASES: dict[str, str] = {
    "llama3": "llama-3",
    "phi3": "phi-3",
    "qwen2": "qwen",
    "qwen2.5": "qwen",
    "hermes": "chatml",
}

TEMPLATE_DIR = "templates"


def builtin_names() -> list[str]:
    """The names ``--chat-template`` accepts (without aliases)."""
    return list(BUILTIN_TEMPLATES)


def get_chat_template(name: str) -> str:
    """The Jinja source of a built-in template; ``KeyError`` for an unknown name."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in BUILTIN_TEMPLATES:
        raise KeyError(name)
    return (resources.files("prefkit") / TEMPLATE_DIR / f"{key}.jinja").read_text(encoding="utf-8")


def template_hash(template: str | dict | None) -> str | None:
    """SHA-256 of the chat template that renders rows (for a dict of named templates: its ``default``).

    The one hash of a template: `build --tokenizer`, `reflogps` and the TRL trainer all compare it."""
    if isinstance(template, dict):
        template = template.get("default")
    if template is None:
        return None
    return hashlib.sha256(template.encode()).hexdigest()


def resolve_chat_template(spec: str) -> tuple[str, str]:
    """``--chat-template`` value → (Jinja source, origin for the manifest: ``builtin:NAME``/``file:PATH``/``inline``).

    A built-in name wins over a file of the same name only when no such file exists.
    """
    path = Path(spec).expanduser()
    key = ALIASES.get(spec.lower(), spec.lower())
    if key in BUILTIN_TEMPLATES and not path.is_file():
        return get_chat_template(key), f"builtin:{key}"
    looks_like_name = not any(c in spec for c in "/\\{%\n") and not spec.endswith((".jinja", ".j2", ".txt"))
    if looks_like_name and not path.exists():
        raise ModelError(
            f"unknown chat template {spec!r}",
            f"use a built-in name ({', '.join(builtin_names())}) or a path to a Jinja file",
        )
    if not ("{{" in spec or "{%" in spec) and not path.is_file():
        raise ModelError(
            f"chat template file {spec!r} does not exist",
            f"pass an existing .jinja file or a built-in name ({', '.join(builtin_names())})",
        )
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8"), f"file:{path.resolve()}"
        except (OSError, UnicodeDecodeError) as err:
            raise ModelError(
                f"cannot read chat template {spec!r}: {err}", "pass a UTF-8 Jinja file"
            ) from None
    return spec, "inline"


@dataclass
class ChatRenderer:
    """Renders conversations with one chat template, like ``tokenizer.apply_chat_template(tokenize=False)``.

    ``variables`` are the extra template variables: the tokenizer's special tokens (``bos_token``,
    ``eos_token``, ...), as ``apply_chat_template`` passes them.
    """

    template: str
    variables: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> ChatRenderer:
        """The tokenizer's own template and special tokens (``ModelError`` when it has no template)."""
        template = getattr(tokenizer, "chat_template", None)
        if not template:
            raise ModelError(
                "the tokenizer has no chat template",
                f"pass --chat-template NAME ({', '.join(builtin_names())}) or a .jinja file",
            )
        if isinstance(template, dict):  # several named templates: apply_chat_template uses "default"
            if "default" not in template:
                raise ModelError(
                    f"the tokenizer has several chat templates ({', '.join(sorted(template))}) and no default",
                    "pick one with --chat-template",
                )
            template = template["default"]
        return cls(template, dict(tokenizer.special_tokens_map))

    @property
    def hash(self) -> str:
        return template_hash(self.template)  # type: ignore[return-value]

    def _compiled(self) -> Any:
        from transformers.utils.chat_template_utils import _compile_jinja_template

        return _compile_jinja_template(self.template)

    def render(
        self, conversations: Sequence[Sequence[Mapping[str, Any]]], add_generation_prompt: bool = False
    ) -> list[str]:
        """Render a batch of conversations (lists of ``{role, content}``) to strings.

        Plain ``{role: str, content: str}`` messages (every canonical record) go straight to transformers'
        compiled template, which is what ``render_jinja_template`` does after copying them; anything else
        (tool calls, reasoning fields, None values) goes through ``render_jinja_template`` itself.
        """
        if not conversations:
            return []
        try:
            compiled = self._compiled()
            out = []
            for chat in conversations:
                if all(
                    type(m) is dict and m.keys() == _PLAIN_KEYS and type(m["content"]) is str for m in chat
                ):
                    out.append(
                        compiled.render(
                            messages=chat,
                            tools=None,
                            documents=None,
                            add_generation_prompt=add_generation_prompt,
                            **self.variables,
                        )
                    )
                else:
                    out.append(self._render_general(chat, add_generation_prompt))
            return out
        except Exception as err:  # jinja syntax errors, raise_exception(...) in the template, bad roles
            raise ModelError(
                f"the chat template failed: {err}",
                "check the template against the rows' roles (e.g. a template without a system role)",
            ) from err

    def _render_general(self, chat: Sequence[Mapping[str, Any]], add_generation_prompt: bool) -> str:
        from transformers.utils.chat_template_utils import render_jinja_template

        chat = [{k: v for k, v in dict(m).items() if v is not None} for m in chat]
        rendered, _ = render_jinja_template(
            conversations=[chat],
            chat_template=self.template,
            add_generation_prompt=add_generation_prompt,
            **self.variables,
        )
        return rendered[0]


_PLAIN_KEYS = {"role": None, "content": None}.keys()
