"""Chat templates: the built-in ones (``--chat-template NAME``), resolving ``--chat-template``, the one "no chat
template" error, and rendering exactly as ``transformers`` does.

The built-in templates are data: ``prefkit/chat/builtin/<name>.jinja`` (the template) and ``<name>.json``
(``description``, ``order``, ``aliases``, ``special_tokens`` used when no tokenizer is given). Adding a template is
adding those two files (docs/architecture.md). Templates whose family has no system role (Mistral v0.1/v0.2,
Gemma) fold the system message into the first user turn the way the newer releases of those families do, so a
rendered prompt stays a prefix of prompt+answer (TRL's split needs that).

Rendering goes through ``transformers``' own sandboxed Jinja environment
(``transformers.utils.chat_template_utils.render_jinja_template``: ``ImmutableSandboxedEnvironment`` with
``trim_blocks``/``lstrip_blocks``, ``raise_exception``, ``tojson``, ``strftime_now``), with the tokenizer's
special tokens as template variables and ``None`` message keys dropped: the strings are those
``tokenizer.apply_chat_template(..., tokenize=False)`` returns, without its per-call overhead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError

from prefkit.errors import ModelError, read_user_file
from prefkit.resources import data_files, read_text

BUILTIN_DIR = "builtin"


@dataclass(frozen=True)
class BuiltinTemplate:
    """A built-in template: its name, what it reproduces, its aliases and its family's special tokens."""

    name: str
    description: str
    aliases: tuple[str, ...]
    special_tokens: dict[str, str]
    order: int

    @property
    def source(self) -> str:
        """The Jinja text."""
        return read_text("prefkit.chat", BUILTIN_DIR, f"{self.name}.jinja")


@cache
def builtin_templates() -> dict[str, BuiltinTemplate]:
    """Every built-in template (from the data files), in their listed order."""
    found = []
    for entry in data_files("prefkit.chat", BUILTIN_DIR, ".json"):
        data = json.loads(entry.read_text(encoding="utf-8"))
        name = entry.name.removesuffix(".json")
        found.append(
            BuiltinTemplate(
                name,
                data["description"],
                tuple(data.get("aliases", ())),
                dict(data.get("special_tokens", {})),
                int(data.get("order", 100)),
            )
        )
    return {t.name: t for t in sorted(found, key=lambda t: (t.order, t.name))}


#: name -> what the built-in template reproduces
BUILTIN_TEMPLATES: dict[str, str] = {t.name: t.description for t in builtin_templates().values()}


def builtin_names() -> list[str]:
    """The names ``--chat-template`` accepts (without aliases)."""
    return list(builtin_templates())


def _key(name: str) -> str:
    key = name.lower()
    for template in builtin_templates().values():
        if key in template.aliases:
            return template.name
    return key


def get_chat_template(name: str) -> str:
    """The Jinja source of a built-in template; ``KeyError`` for an unknown name."""
    key = _key(name)
    if key not in builtin_templates():
        raise KeyError(name)
    return builtin_templates()[key].source


def no_chat_template(what: str = "the tokenizer") -> ModelError:
    """The one error for rows that need a chat template when ``what`` has none."""
    return ModelError(
        f"{what} has no chat template, and the rows are conversations (messages)",
        f"pass --chat-template NAME ({', '.join(builtin_names())}) or a Jinja file",
    )


def require_chat_template(tokenizer: Any, what: str = "the tokenizer") -> None:
    """Raise :func:`no_chat_template` when ``tokenizer`` cannot render message rows."""
    if not getattr(tokenizer, "chat_template", None):
        raise no_chat_template(what)


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
    key = _key(spec)
    if key in builtin_templates() and not path.is_file():
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
        source = read_user_file(path, ModelError, f"chat template {spec!r}", "pass a UTF-8 Jinja file")
        check_renders_messages(source, spec)
        return source, f"file:{path.resolve()}"
    check_renders_messages(spec, "the inline template")
    return spec, "inline"


#: a user turn and an answer whose contents every chat template writes into its text
_PROBE = [
    {"role": "user", "content": "prefkit-probe-question"},
    {"role": "assistant", "content": "prefkit-probe-answer"},
]


def check_renders_messages(template: str, name: str) -> None:
    """Refuse a template that renders a conversation without its messages' contents (a data file or any text
    given as ``--chat-template``: every row would become the same text). A template that refuses the probe
    conversation (its own rules on roles) is left to fail on real rows, with its own message."""
    try:
        rendered = ChatRenderer(template, {"bos_token": "", "eos_token": ""}).render([_PROBE])[0]
    except ModelError:
        return
    if not all(m["content"] in rendered for m in _PROBE):
        raise ModelError(
            f"{name} is not a chat template: it renders a conversation without the messages' contents",
            "pass a Jinja chat template that loops over `messages` (a .jinja file, the template text or a "
            f"built-in name: {', '.join(builtin_names())})",
        )


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
            raise no_chat_template()
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
        return guarded_template(self.template)

    def render(
        self,
        conversations: Sequence[Sequence[Mapping[str, Any]]],
        add_generation_prompt: bool = False,
        extras: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]:
        """Render a batch of conversations to strings, like ``apply_chat_template(..., tokenize=False)``.

        ``extras[i]``: row ``i``'s ``tools`` and chat-template keyword arguments (what TRL passes). Raises
        :class:`ModelError` when the template fails on any row (see :meth:`render_rows` to keep going).
        """
        texts, failures = self.render_rows(conversations, add_generation_prompt, extras)
        if failures:
            raise next(iter(failures.values()))
        return texts

    def render_rows(
        self,
        conversations: Sequence[Sequence[Mapping[str, Any]]],
        add_generation_prompt: bool = False,
        extras: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> tuple[list[str], dict[int, ModelError]]:
        """Render each conversation; rows the template refuses (``raise_exception``, a type it cannot handle)
        are ``""`` with their error in the second value. A template that cannot compile or hits a limit raises.

        Plain ``{role: str, content: str}`` messages go straight to transformers' compiled template (what
        ``render_jinja_template`` does after copying them); anything else (tool calls, reasoning, None values,
        tools, keyword arguments) goes through ``render_jinja_template`` itself.
        """

        out: list[str] = []
        failures: dict[int, ModelError] = {}
        compiled = self._compiled_or_raise()
        for i, chat in enumerate(conversations):
            extra = extras[i] if extras is not None else None
            try:
                if not extra and all(
                    type(m) is dict and m.keys() == _PLAIN_KEYS and type(m["content"]) is str for m in chat
                ):
                    kwargs = {
                        "tools": None,
                        "documents": None,
                        "add_generation_prompt": add_generation_prompt,
                    }
                    out.append(compiled.render(messages=chat, **kwargs, **self.variables))
                else:
                    out.append(self._render_general(chat, add_generation_prompt, extra))
            except (jinja2.exceptions.TemplateSyntaxError, jinja2.exceptions.SecurityError) as err:
                raise template_error(err) from err
            except Exception as err:  # raise_exception(...) in the template, a role or type it cannot handle
                failures[i] = template_error(err)
                out.append("")
        return out, failures

    def _compiled_or_raise(self) -> Any:
        try:
            return self._compiled()
        except Exception as err:
            raise template_error(err) from err

    def _render_general(
        self,
        chat: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        from transformers.utils import chat_template_utils as ctu

        messages = [{k: v for k, v in dict(m).items() if v is not None} for m in chat]
        variables = dict(extra or {})
        tools = variables.pop("tools", None)
        real = ctu._compile_jinja_template
        ctu._compile_jinja_template = guarded_template  # transformers' preparation, prefkit's size limits
        try:
            # annotated `-> str`, returns (rendered conversations, generation indices)
            result: Any = ctu.render_jinja_template(
                conversations=[messages],
                tools=tools,
                chat_template=self.template,
                add_generation_prompt=add_generation_prompt,
                **{**self.variables, **variables},
            )
        finally:
            ctu._compile_jinja_template = real
        rendered, _ = result
        return rendered[0]


_PLAIN_KEYS = {"role": None, "content": None}.keys()


def template_error(err: Exception) -> ModelError:
    """One line for a template that fails: a syntax error, a limit, or the template refusing a row."""

    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    if isinstance(err, jinja2.exceptions.TemplateSyntaxError):
        return ModelError(
            f"the chat template failed to compile (not valid Jinja): {first}",
            "fix the template, or pass another one",
        )
    if isinstance(err, jinja2.exceptions.SecurityError):
        return ModelError(
            f"the chat template failed: {first}",
            "use the model's own template or a built-in one (--chat-template NAME)",
        )
    return ModelError(
        f"the chat template failed on a row: {first}",
        "check the template against the rows' roles (e.g. a template without a system role: --system drop)",
    )


#: the largest string or list (characters / items) a template may build with ``*`` or ``+``, and the largest
#: integer (bits) with ``**``: far above any real conversation, far below what exhausts memory
MAX_TEMPLATE_VALUE = 1 << 24
MAX_TEMPLATE_INT_BITS = 1 << 16


def _too_big(operator: str, left: Any, right: Any) -> bool:
    sized = (str, list, tuple)
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, sized) and isinstance(n, int) and len(seq) * max(n, 0) > MAX_TEMPLATE_VALUE:
                return True
        if isinstance(left, int) and isinstance(right, int):
            return abs(left).bit_length() + abs(right).bit_length() > MAX_TEMPLATE_INT_BITS
    if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        return abs(left).bit_length() * right > MAX_TEMPLATE_INT_BITS
    if operator == "+" and isinstance(left, sized) and isinstance(right, sized):
        return len(left) + len(right) > MAX_TEMPLATE_VALUE
    return False


def _guarded_class(base: type) -> type:
    class Guarded(base):
        """transformers' sandbox, with size limits on ``*``, ``**`` and ``+``."""

        intercepted_binops = frozenset({"*", "**", "+"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if _too_big(operator, left, right):
                raise SecurityError(f"the template builds a value beyond prefkit's limit with {operator!r}")
            return super().call_binop(context, operator, left, right)

    return Guarded


@cache
def guarded_template(template: str) -> Any:
    """``template`` compiled in transformers' own sandboxed environment (the one ``apply_chat_template`` uses),
    with limits on the size of what ``*``, ``**`` and ``+`` may build, so an untrusted template cannot exhaust
    memory (``{{ 'x' * 10**9 }}``). Renders exactly like transformers otherwise."""
    from transformers.utils.chat_template_utils import _compile_jinja_template

    env = _compile_jinja_template(template).environment.overlay()
    env.__class__ = _guarded_class(type(_compile_jinja_template(template).environment))
    return env.from_string(template)
