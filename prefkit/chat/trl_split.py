"""What every TRL release's DPO tokenization shares: the releases' rules as a table, the tokenized pair
(:class:`TokenizedPair`), TRL's ``is_conversational``, and the split of TRL 1.14.2 - 1.16 at the common prefix of
the rendered prompt and prompt+answer (:func:`split_common_prefix`; the rule in :mod:`prefkit.chat.tokenize`'s
docstring). :mod:`prefkit.chat.tokenize` (the rows, rendered and tokenized) and :mod:`prefkit.chat.trl_rules`
(the other releases' splits) both build on it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefkit.chat.templates import no_chat_template
from prefkit.errors import ModelError

#: How each range of TRL releases tokenizes DPO rows (read from their ``trl/trainer/dpo_trainer.py``):
#: (first release, first release after the range or None, the rule). 1.9.0 started dropping rows whose prompt
#: fills ``max_length``; 1.14.2 split prompt and completion at the common prefix of the rendered prompt and
#: prompt+answer instead of at the prompt's length. EOS handling of text rows, tools and chat-template keyword
#: arguments are the same in every 1.x release.
TRL_RULES: tuple[tuple[str, str | None, str], ...] = (
    ("1.0", "1.9", "prompt-length-split,keep_start,keep-prompt>=max_length"),
    ("1.9", "1.14.2", "prompt-length-split,keep_start,drop-prompt>=max_length"),
    ("1.14.2", None, "common-prefix-split,keep_start,drop-prompt>=max_length"),
)


#: Releases before 1.0 that have a profile (:mod:`prefkit.chat.trl_rules`), in the same form.
TRL_LEGACY_RULES: tuple[tuple[str, str | None, str], ...] = (
    (
        "0.24",
        "0.25",
        "text-render,separate-tokenize,eos-appended,max_prompt_length=512:keep_end,max_length:keep_end,keep-all",
    ),
)


#: The last TRL release checked against this module (a newer one gets a warning, not a refusal).
TRL_LAST_CHECKED = "1.16"


#: The rule reproduced here, with the TRL releases that follow it; recorded in the manifest.
TRL_TOKENIZATION_RULE = f"trl-dpo-{TRL_RULES[-1][0]}..{TRL_LAST_CHECKED}:{TRL_RULES[-1][2]}"


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = "".join(c for c in piece if c.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


#: Reason given for a row TRL would drop because its prompt alone fills ``max_length``.
DROPPED_PROMPT_TOO_LONG = "prompt_too_long"


@dataclass
class TokenizedPair:
    """Token ids of one preference pair, exactly as TRL's ``DPOTrainer`` feeds them to the model.

    ``chosen_ids`` / ``rejected_ids`` are the completion ids after the prompt/completion split and after
    ``keep_start`` truncation of prompt+completion to ``max_length``. ``dropped`` is ``"prompt_too_long"``
    when TRL would drop the row (completions are then empty); ``truncated`` says whether a completion was cut.
    """

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    dropped: str | None = None
    truncated: bool = False
    prompt_tokens_full: int = field(default=0, repr=False)  # len(P) before the common-prefix split


def is_conversational(row: Mapping[str, Any]) -> bool:
    """TRL's ``is_conversational``: a prompt/chosen/rejected value that is a list of ``{role, ...}`` dicts."""
    for key in ("prompt", "chosen", "rejected", "completion", "messages"):
        if key in row:
            value = row[key]
            return bool(
                isinstance(value, list) and value and isinstance(value[0], Mapping) and "role" in value[0]
            )
    return False


def common_prefix_length(ids: Sequence[int], other: Sequence[int]) -> int:
    """Number of leading tokens the two sequences share."""
    n = 0
    for a, b in zip(ids, other, strict=False):
        if a != b:
            break
        n += 1
    return n


def _check_tokenizer(tokenizer: Any, conversational: bool) -> None:
    if conversational and getattr(tokenizer, "chat_template", None) is None:
        raise no_chat_template()
    if not conversational and getattr(tokenizer, "eos_token", None) is None:
        raise ModelError(
            "the tokenizer has no eos_token, which TRL appends to text completions",
            hint="use a tokenizer with an eos_token, or write the rows as messages",
        )


def split_common_prefix(p: list[int], pc: list[int], pr: list[int], max_length: int | None) -> TokenizedPair:
    """TRL 1.14.2 - 1.16's split (the module docstring); other releases' splits: :mod:`prefkit.chat.trl_rules`."""
    n = min(common_prefix_length(p, pc), common_prefix_length(p, pr))
    prompt_ids = p[:n]
    chosen, rejected = pc[n:], pr[n:]
    if max_length is not None:
        if n >= max_length:
            return TokenizedPair(prompt_ids, [], [], DROPPED_PROMPT_TOO_LONG, True, len(p))
        room = max_length - n
        truncated = len(chosen) > room or len(rejected) > room
        return TokenizedPair(prompt_ids, chosen[:room], rejected[:room], None, truncated, len(p))
    return TokenizedPair(prompt_ids, chosen, rejected, None, False, len(p))
