"""The rules by which TRL releases turn a row into the token ids their precompute scores, in one place.

A DPO **profile** (``prefkit reflogps --trl-rule NAME``) is one TRL release range's rule: how the prompt and the
completions are split, and what happens to rows whose prompt alone fills ``max_length``. Each was read from that
release's ``trl/trainer/dpo_trainer.py`` and checked against it installed in its own environment
(``tests/test_trl_profiles.py``): the values equal its precompute, and ``PrecomputedRefDPOTrainer`` trains one step at
ln 2 on them. The default is the installed TRL's profile (the newest when TRL is not installed).

========== ================ ============================================================================================
profile    releases         rule
========== ================ ============================================================================================
trl-1.16   1.14.2 - 1.16    ``n = min(common_prefix(P, PC), common_prefix(P, PR))``: prompt ``P[:n]``, completions
                            ``PC[n:]`` / ``PR[n:]``; prompt+completion cut to ``max_length`` (``keep_start``); rows with
                            ``n >= max_length`` dropped
trl-1.8    1.0 - 1.8        prompt ``P`` (whole), completions ``PC[len(P):]`` / ``PR[len(P):]``; ``keep_start``; rows
                            with ``len(P) >= max_length`` kept: no completion token is left, their values are 0.0
                            (axolotl pins ``trl==1.8.0``)
trl-0.24   0.24             (LLaMA-Factory ``trl>=0.18,<=0.24``, Unsloth ``trl<=0.24``) messages rendered to text
                            (``maybe_apply_chat_template``), prompt and each completion tokenized separately without
                            special tokens, ``eos_token_id`` appended to each completion, the prompt's last
                            ``max_prompt_length`` (512) tokens, prompt+completion cut to ``max_length`` keeping the
                            end (``keep_end``); every row kept. The profile follows 0.24's ``DPOConfig`` defaults for
                            ``max_prompt_length``, ``max_completion_length`` (None) and ``truncation_mode``; the
                            trainer refuses others, and IPO (0.24 stores means for it)
========== ================ ============================================================================================

KTO: :mod:`prefkit.reflogps.kto` reproduces TRL 1.16's ``KTOTrainer`` (:data:`KTO_CHECKED`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from prefkit.chat.render import common_text_prefix
from prefkit.chat.trl_split import (
    TRL_LEGACY_RULES,
    TokenizedPair,
    _check_tokenizer,
    _release,
    common_prefix_length,
    is_conversational,
    split_common_prefix,
)
from prefkit.errors import OptionError

#: a row TRL keeps although its prompt fills ``max_length``: no completion token is scored, its values are 0.0
KEPT_EMPTY = "kept_empty"


def split_prompt_length(p: list[int], pc: list[int], pr: list[int], max_length: int | None) -> TokenizedPair:
    """TRL 1.0 - 1.8: prompt ids ``P``, completions ``PC[len(P):]`` / ``PR[len(P):]`` (whether or not ``P`` is
    their prefix), ``keep_start``; a prompt that fills ``max_length`` leaves empty completions (:data:`KEPT_EMPTY`)."""
    n = len(p)
    chosen, rejected = pc[n:], pr[n:]
    if max_length is None:
        return TokenizedPair(p, chosen, rejected, None, False, n)
    room = max(max_length - n, 0)
    truncated = len(chosen) > room or len(rejected) > room
    if room == 0:
        return TokenizedPair(p[:max_length], [], [], KEPT_EMPTY, True, n)
    return TokenizedPair(p, chosen[:room], rejected[:room], None, truncated, n)


@dataclass(frozen=True)
class Profile:
    """One TRL release range's DPO rule: ``name`` (``--trl-rule``), the releases (first, last checked), the rule's
    body as :data:`prefkit.chat.tokenize.TRL_RULES` names it, and the split of ``(P, PC, PR, max_length)``."""

    name: str
    first: str
    last: str
    body: str
    split: Callable[[list[int], list[int], list[int], int | None], TokenizedPair]
    #: a whole-row tokenizer, for rules that are not a split of the ids of ``P``, ``PC``, ``PR`` (TRL <= 0.28)
    tokenize: Callable[..., list] | None = None

    @property
    def rule(self) -> str:
        """The rule as recorded in the manifest (``trl_tokenization_rule``)."""
        return f"trl-dpo-{self.first}..{self.last}:{self.body}"


PROFILES: dict[str, Profile] = {
    "trl-1.16": Profile(
        "trl-1.16",
        "1.14.2",
        "1.16",
        "common-prefix-split,keep_start,drop-prompt>=max_length",
        split_common_prefix,
    ),
    "trl-1.8": Profile(
        "trl-1.8", "1.0", "1.8", "prompt-length-split,keep_start,keep-prompt>=max_length", split_prompt_length
    ),
}
DEFAULT_PROFILE = "trl-1.16"
#: TRL releases whose ``KTOTrainer`` precompute was checked against :mod:`prefkit.reflogps.kto` (first, last)
KTO_CHECKED: tuple[tuple[str, str], ...] = (("1.16", "1.16"),)


def installed_trl() -> str | None:
    """The installed TRL's version (None when TRL is not installed: it is optional)."""
    try:
        return metadata.version("trl")
    except metadata.PackageNotFoundError:
        return None


def profile_for(version: str | None) -> Profile | None:
    """The profile whose releases hold TRL ``version`` (None: no profile reproduces that release)."""
    if version is None:
        return None
    release = _release(version)
    for profile in PROFILES.values():
        if _release(profile.first) <= release and release[:2] <= _release(profile.last)[:2]:
            return profile
    return None


def resolve_profile(name: str | None) -> Profile:
    """``--trl-rule``: the named profile, or (None) the installed TRL's, or the newest. Raises ``OptionError``."""

    if name is None:
        return profile_for(installed_trl()) or PROFILES[DEFAULT_PROFILE]
    if name not in PROFILES:
        raise OptionError(
            f"unknown --trl-rule {name!r}",
            f"use one of: {', '.join(PROFILES)}",
        )
    return PROFILES[name]


def rule_profile(rule: str | None) -> Profile:
    """The profile of a recorded rule (``trl_tokenization_rule``; None or unknown: the newest)."""
    body = (rule or PROFILES[DEFAULT_PROFILE].rule).split(":", 1)[-1]
    for profile in PROFILES.values():
        if profile.body == body:
            return profile
    return PROFILES[DEFAULT_PROFILE]


def split_for(rule: str | None) -> Callable[[list[int], list[int], list[int], int | None], TokenizedPair]:
    """The split of a recorded rule (``trl_tokenization_rule``; None: the newest)."""
    return rule_profile(rule).split


def check_kto_release(version: str) -> str | None:
    """A sentence when TRL ``version``'s ``KTOTrainer`` was not checked against prefkit's KTO rule (the trainer's
    row check still compares every row's tokens), None when it was."""
    release = _release(version)[:2]
    if any(_release(a)[:2] <= release <= _release(b)[:2] for a, b in KTO_CHECKED):
        return None
    checked = ", ".join(a if a == b else f"{a}-{b}" for a, b in KTO_CHECKED)
    return (
        f"TRL {version}'s KTOTrainer was not checked against prefkit's KTO rule (checked: {checked}); the rows' "
        "tokens and KL pairing are checked, the values themselves are not"
    )


__all__ = [
    "KEPT_EMPTY",
    "PROFILES",
    "Profile",
    "check_kto_release",
    "common_prefix_length",
    "profile_for",
    "resolve_profile",
    "split_for",
    "split_prompt_length",
]


# --- TRL <= 0.28 (checked: 0.24) -----------------------------------------------------------------------------------

#: ``DPOConfig`` defaults of TRL 0.24 that its rule depends on (the trl-0.24 profile follows them)
LEGACY_DEFAULTS: dict[str, Any] = {
    "max_prompt_length": 512,
    "max_completion_length": None,
    "truncation_mode": "keep_end",
}


@dataclass
class LegacyPair(TokenizedPair):
    """A row as TRL <= 0.28 scores it: with ``keep_end`` truncation the chosen and rejected sequences may keep
    different ends of the prompt, so the rejected one has its own prompt ids (None: the same as ``prompt_ids``)."""

    rejected_prompt_ids: list[int] | None = None


def _legacy_texts(row: Mapping[str, Any], tokenizer: Any) -> tuple[str, str, str]:
    """TRL 0.24's ``maybe_apply_chat_template`` on a preference row: the prompt rendered with the generation prompt
    (``continue_final_message`` after an assistant turn), then cut to its common text prefix with prompt+chosen, then
    with prompt+rejected, each completion the rest of its rendering (in that order, as TRL does). A row's ``tools``
    are not passed (0.24 passes ``DPOConfig.tools``); its ``chat_template_kwargs`` are."""
    if not isinstance(row["prompt"], list):
        return row["prompt"], row["chosen"], row["rejected"]
    kwargs = dict(row.get("chat_template_kwargs") or {})

    def render(messages: list, **extra: Any) -> str:
        convs = [[dict(m) for m in messages]]
        return tokenizer.apply_chat_template(convs, tools=None, tokenize=False, **extra, **kwargs)[0]

    last_user = row["prompt"][-1]["role"] == "user"
    prompt = render(row["prompt"], add_generation_prompt=last_user, continue_final_message=not last_user)
    prompt_chosen = render(row["prompt"] + row["chosen"])
    prompt = common_text_prefix(prompt, prompt_chosen)
    chosen = prompt_chosen[len(prompt) :]
    prompt_rejected = render(row["prompt"] + row["rejected"])
    prompt = common_text_prefix(prompt, prompt_rejected)
    return prompt, chosen, prompt_rejected[len(prompt) :]


def _legacy_cut(
    prompt: list[int], completion: list[int], max_length: int | None, mode: str
) -> tuple[list, list]:
    """``concatenated_forward``'s truncation of prompt+completion to ``max_length``: ``keep_end`` keeps the last
    tokens, ``keep_start`` the first. The first kept token is never scored (no position predicts it), so a window
    that starts inside the completion moves that token into the prompt."""
    if max_length is None or len(prompt) + len(completion) <= max_length:
        return prompt, completion
    if mode == "keep_start":
        return prompt[:max_length], completion[: max(max_length - len(prompt), 0)]
    cut = len(prompt) + len(completion) - max_length
    if cut < len(prompt):
        return prompt[cut:], completion
    rest = completion[cut - len(prompt) :]
    return rest[:1], rest[1:]


def tokenize_pairs_legacy(rows: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int | None) -> list:
    """Tokenize preference rows as TRL 0.24's ``DPOTrainer`` does with its default ``DPOConfig`` (module docstring):
    texts rendered by the chat template, ``tokenizer(text, add_special_tokens=False)`` for the prompt and each
    completion, ``eos_token_id`` appended to each completion, the prompt's last ``max_prompt_length`` (512) tokens,
    then prompt+completion cut to ``max_length`` with ``keep_end``. Returns :class:`LegacyPair` per row (never
    dropped; a completion cut to nothing is :data:`KEPT_EMPTY`)."""
    eos = getattr(tokenizer, "eos_token_id", None)
    limit, mode = LEGACY_DEFAULTS["max_prompt_length"], str(LEGACY_DEFAULTS["truncation_mode"])
    out = []
    for row in rows:
        _check_tokenizer(tokenizer, is_conversational(row))
        prompt, chosen, rejected = _legacy_texts(row, tokenizer)
        p, c, r = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in (prompt, chosen, rejected))
        c, r = [*c, eos], [*r, eos]
        p = p[-limit:] if limit else p
        pc, cc = _legacy_cut(p, c, max_length, mode)
        pr, rr = _legacy_cut(p, r, max_length, mode)
        truncated = (pc, cc) != (p, c) or (pr, rr) != (p, r)
        empty = KEPT_EMPTY if not cc and not rr else None
        out.append(LegacyPair(pc, cc, rr, empty, truncated, len(p), None if pr == pc else pr))
    return out


def score_split_prompts(score: Callable[[list], tuple[Any, Any]], pairs: Sequence[Any]) -> tuple[list, list]:
    """``score(pairs) -> (chosen, rejected)`` for rows whose chosen and rejected may have different prompts
    (:class:`LegacyPair`): such a row is scored as two pairs. Returns two lists, one value per row."""
    flat: list = []
    where: list[tuple[int, int | None]] = []
    for pair in pairs:
        other = getattr(pair, "rejected_prompt_ids", None)
        if other is None:
            where.append((len(flat), None))
            flat.append(pair)
            continue
        where.append((len(flat), len(flat) + 1))
        flat.append(TokenizedPair(pair.prompt_ids, pair.chosen_ids, pair.chosen_ids, pair.dropped))
        flat.append(TokenizedPair(other, pair.rejected_ids, pair.rejected_ids, pair.dropped))
    chosen, rejected = (v.tolist() if hasattr(v, "tolist") else list(v) for v in score(flat))
    return [chosen[i] for i, _ in where], [rejected[i] if j is None else chosen[j] for i, j in where]


LEGACY_BODY = TRL_LEGACY_RULES[0][2]  # TRL 0.24's rule, as prefkit.chat.tokenize's release table names it
PROFILES["trl-0.24"] = Profile(
    "trl-0.24", "0.24", "0.24", LEGACY_BODY, split_common_prefix, tokenize=tokenize_pairs_legacy
)
