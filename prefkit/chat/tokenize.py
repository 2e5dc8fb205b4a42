"""TRL-exact tokenization of preference rows.

``tokenize_pair`` / ``tokenize_pairs`` turn a
preference row into the token ids TRL's ``DPOTrainer`` (1.14.2 - 1.16) trains and scores on, so reference
log-probs computed on them equal TRL's ``precompute_ref_log_probs`` values. The rule, read from
``trl/trainer/dpo_trainer.py`` (``_prepare_dataset`` + ``DataCollatorForPreference``):

* implicit prompt (no ``prompt`` column): the longest common prefix of chosen/rejected (``extract_prompt``);
* standard text rows: ``eos_token`` appended as text to chosen/rejected unless already there, then
  ``P = tok(prompt)``, ``PC = tok(prompt + completion)`` with the tokenizer's default special tokens;
* conversational rows: ``P = apply_chat_template(prompt, add_generation_prompt=True)``,
  ``PC = apply_chat_template(prompt + completion)``, with the row's ``tools`` (list or JSON string) and
  ``chat_template_kwargs``;
* ``n = min(common_prefix(P, PC_chosen), common_prefix(P, PC_rejected))``; prompt ids ``P[:n]``,
  completion ids ``PC[n:]``;
* ``keep_start`` truncation of prompt+completion to ``max_length``; rows with ``n >= max_length`` are
  dropped by TRL (here: ``dropped="prompt_too_long"``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from prefkit.chat.trl_rules import rule_profile
from prefkit.chat.trl_split import (  # noqa: F401 (the release table and the pair: this module's API too)
    DROPPED_PROMPT_TOO_LONG,
    TRL_LAST_CHECKED,
    TRL_LEGACY_RULES,
    TRL_RULES,
    TRL_TOKENIZATION_RULE,
    TokenizedPair,
    _check_tokenizer,
    _release,
    common_prefix_length,
    is_conversational,
    split_common_prefix,
)
from prefkit.errors import FormatError, ModelError
from prefkit.formats.implicit_text import extract_prompt as split


def trl_rule_for(version: str) -> str | None:
    """The tokenization rule of TRL ``version`` (:data:`TRL_RULES`); None when it is newer than
    :data:`TRL_LAST_CHECKED` (not checked yet)."""
    release = _release(version)
    if release[:2] > _release(TRL_LAST_CHECKED)[:2]:
        return None
    for first, after, rule in TRL_RULES + TRL_LEGACY_RULES:
        if release >= _release(first) and (after is None or release < _release(after)):
            return rule
    return TRL_RULES[0][2]


def check_trl_rule(recorded: str | None, installed: str) -> tuple[str, str] | None:
    """``("error", why)`` when TRL ``installed`` tokenizes rows differently from the ``recorded`` rule (a manifest's
    ``trl_tokenization_rule``: the values were computed for other token ids), ``("warning", why)`` when it is
    newer than the releases checked or the rule is unknown, None when they agree."""
    body = (recorded or TRL_TOKENIZATION_RULE).split(":", 1)[-1]
    rule = trl_rule_for(installed)
    if rule is None:
        return "warning", (
            f"TRL {installed} is newer than the last release prefkit checked ({TRL_LAST_CHECKED}); if its "
            "DPOTrainer tokenizes rows differently, the reference values do not apply"
        )
    if body not in {r for _, _, r in TRL_RULES + TRL_LEGACY_RULES}:
        return "warning", f"the set records a tokenization rule prefkit does not know ({recorded})"
    if rule != body:
        return "error", (
            f"the reference values follow the tokenization rule {body!r}, but the installed TRL {installed} "
            f"tokenizes by {rule!r}, so its token ids and the stored values differ"
        )
    return None


def extract_prompt(row: Mapping[str, Any]) -> dict[str, Any]:
    """TRL's ``extract_prompt``: split an implicit prompt (common prefix of chosen and rejected)."""

    prompt, chosen, rejected = split(row["chosen"], row["rejected"])
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _template_kwargs(row: Mapping[str, Any]) -> dict[str, Any]:
    tools = row.get("tools")
    tools = json.loads(tools) if isinstance(tools, str) else tools
    return {"tools": tools, **(row.get("chat_template_kwargs") or {})}


def _normalise_rows(
    rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
) -> list[Mapping[str, Any]]:
    if isinstance(rows, Mapping):
        keys = list(rows)
        n = len(rows[keys[0]]) if keys else 0
        return [{k: rows[k][i] for k in keys} for i in range(n)]
    return list(rows)


def _prepare_row(row: Mapping[str, Any], eos_token: str | None) -> tuple[Mapping[str, Any], bool]:
    for key in ("chosen", "rejected"):
        if key not in row:
            raise FormatError(f"a preference row needs a {key!r} column", hint="see docs/trl-contract.md")
    if "prompt" not in row:
        row = {**row, **extract_prompt(row)}
    conversational = is_conversational(row)
    if not conversational:
        row = dict(row)
        for key in ("chosen", "rejected"):
            if not row[key].endswith(eos_token):
                row[key] = row[key] + eos_token
    return row, conversational


def _ids(encoded: Any) -> list[list[int]]:
    ids = encoded["input_ids"] if isinstance(encoded, Mapping) or hasattr(encoded, "keys") else encoded
    return [list(x) for x in ids]


_split = split_common_prefix


def tokenize_pair(row: Mapping[str, Any], tokenizer: Any, max_length: int | None) -> TokenizedPair:
    """Tokenize one preference row exactly like TRL's ``DPOTrainer`` (see the module docstring).

    ``row`` has ``prompt`` (optional: implicit prompt), ``chosen``, ``rejected`` as messages or strings, and
    optionally ``tools`` and ``chat_template_kwargs``. ``max_length=None`` disables truncation.
    """
    return tokenize_pairs([row], tokenizer, max_length)[0]


def tokenize_pairs(
    rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
    tokenizer: Any,
    max_length: int | None,
    rule: str | None = None,
) -> list[TokenizedPair]:
    """Batched ``tokenize_pair``: ``rows`` is a list of row dicts or a dict of columns. ``rule``: a TRL release
    profile's recorded rule (:mod:`prefkit.chat.trl_rules`; None: TRL 1.14.2 - 1.16's).

    Rows without ``tools``/``chat_template_kwargs`` are rendered and tokenized in one batch call per part
    (same ids as TRL's per-row calls); the others row by row.
    """

    profile = rule_profile(rule)
    if profile.tokenize is not None:  # a release that does not split the ids of P, PC, PR (TRL <= 0.28)
        return profile.tokenize(_normalise_rows(rows), tokenizer, max_length)
    _split = profile.split
    prepared, batch_text, batch_conv, per_row = prepare_rows(_normalise_rows(rows), tokenizer)
    out: list[TokenizedPair | None] = [None] * len(prepared)
    for i in per_row:  # per-row template arguments: one call per row, like TRL
        row = prepared[i]
        kw = _template_kwargs(row)
        prompt_ids = _ids(_apply(tokenizer, [row["prompt"]], add_generation_prompt=True, **kw))[0]
        chosen_ids = _ids(_apply(tokenizer, [row["prompt"] + row["chosen"]], **kw))[0]
        rejected_ids = _ids(_apply(tokenizer, [row["prompt"] + row["rejected"]], **kw))[0]
        out[i] = _split(prompt_ids, chosen_ids, rejected_ids, max_length)

    if batch_conv:
        rs = [prepared[i] for i in batch_conv]
        p = _ids(_apply(tokenizer, [r["prompt"] for r in rs], add_generation_prompt=True, tools=None))
        pc = _ids(_apply(tokenizer, [r["prompt"] + r["chosen"] for r in rs], tools=None))
        pr = _ids(_apply(tokenizer, [r["prompt"] + r["rejected"] for r in rs], tools=None))
        for j, i in enumerate(batch_conv):
            out[i] = _split(p[j], pc[j], pr[j], max_length)

    if batch_text:
        rs = [prepared[i] for i in batch_text]
        p = _ids(tokenizer([r["prompt"] for r in rs]))
        pc = _ids(tokenizer([r["prompt"] + r["chosen"] for r in rs]))
        pr = _ids(tokenizer([r["prompt"] + r["rejected"] for r in rs]))
        for j, i in enumerate(batch_text):
            out[i] = _split(p[j], pc[j], pr[j], max_length)
    return out  # type: ignore[return-value]


def prepare_rows(
    rows: Sequence[Mapping[str, Any]], tokenizer: Any
) -> tuple[list[dict], list[int], list[int], list[int]]:
    """Rows made ready for tokenization as TRL makes them (:func:`_prepare_row`) and checked against the
    tokenizer (a chat template for message rows): ``(rows, text rows, message rows renderable in one batch call,
    message rows with per-row template arguments)``, the last three as indices into ``rows``."""
    prepared = [_prepare_row(r, getattr(tokenizer, "eos_token", None) or "") for r in rows]
    for conv in {conv for _, conv in prepared}:
        _check_tokenizer(tokenizer, conv)
    text: list[int] = []
    batch: list[int] = []
    per_row: list[int] = []
    for i, (row, conv) in enumerate(prepared):
        if not conv:
            text.append(i)
        elif row.get("tools") is None and not row.get("chat_template_kwargs"):
            batch.append(i)
        else:
            per_row.append(i)
    return [dict(row) for row, _ in prepared], text, batch, per_row


def _apply(tokenizer: Any, conversations: list[list[Mapping[str, Any]]], **kwargs: Any) -> Any:
    conversations = [[dict(m) for m in conv] for conv in conversations]
    try:
        return tokenizer.apply_chat_template(conversations, tokenize=True, return_dict=True, **kwargs)
    except Exception as err:  # jinja errors, missing template variables, bad roles
        raise ModelError(
            f"the chat template failed on a row: {err}",
            hint="check the template against the row's roles/tools, or pass another with --chat-template",
        ) from err
