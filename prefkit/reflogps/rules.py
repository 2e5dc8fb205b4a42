"""The rules of the TRL releases prefkit's reference values are checked against, in one place.

Each rule is how a release's trainer turns a row into the token ids it scores (read from that release's
``trl/trainer/*_trainer.py`` and checked against it installed in its own environment).
"""

from __future__ import annotations

from prefkit.chat.tokenize import _release

#: TRL releases whose ``KTOTrainer`` precompute was checked against :mod:`prefkit.reflogps.kto` (first, last)
KTO_CHECKED: tuple[tuple[str, str], ...] = (("1.16", "1.16"),)


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
