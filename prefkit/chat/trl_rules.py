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
========== ================ ============================================================================================

Releases up to 0.28 (LLaMA-Factory and Unsloth cap ``trl<=0.24``) render messages to text first, tokenize prompt and
completions separately, append EOS, cut the prompt to ``max_prompt_length`` from the left and the completions to
``max_completion_length``, then cut the concatenation to ``max_length`` (``keep_end`` by default) and precompute in
``get_train_dataloader``. No profile reproduces that rule yet: ``--trl-rule`` names only the profiles above.

KTO: :mod:`prefkit.reflogps.kto` reproduces TRL 1.16's ``KTOTrainer`` (:data:`KTO_CHECKED`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prefkit.chat.tokenize import TokenizedPair, _release, common_prefix_length, split_common_prefix

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
    try:
        from importlib.metadata import version

        return version("trl")
    except Exception:  # TRL is optional
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
    from prefkit.errors import OptionError

    if name is None:
        return profile_for(installed_trl()) or PROFILES[DEFAULT_PROFILE]
    if name not in PROFILES:
        raise OptionError(
            f"unknown --trl-rule {name!r}",
            f"use one of: {', '.join(PROFILES)} (TRL <= 0.28, e.g. LLaMA-Factory's and Unsloth's trl<=0.24, has no "
            "profile yet: its rule is described in prefkit/chat/trl_rules.py)",
        )
    return PROFILES[name]


def split_for(rule: str | None) -> Callable[[list[int], list[int], list[int], int | None], TokenizedPair]:
    """The split of a recorded rule (``trl_tokenization_rule``; None: the newest)."""
    body = (rule or PROFILES[DEFAULT_PROFILE].rule).split(":", 1)[-1]
    for profile in PROFILES.values():
        if profile.body == body:
            return profile.split
    return PROFILES[DEFAULT_PROFILE].split


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
