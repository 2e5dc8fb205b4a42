"""Token counts of preference rows by TRL's ``DPOTrainer`` rule, fast (what the token-length filters and
``prefkit stats --tokenizer`` count).

The rule (:mod:`prefkit.chat.tokenize`; docs/trl-contract.md): ``P = render(prompt, add_generation_prompt=True)``,
``PC``/``PR`` = render(prompt + chosen/rejected), each tokenized without extra special tokens;
``n = min(common_prefix(P, PC), common_prefix(P, PR))`` is the prompt length, ``len(PC) - n`` / ``len(PR) - n``
the answer lengths, and ``len(PC)`` / ``len(PR)`` what TRL's ``max_length`` truncates.

The hot path renders every row once per part through transformers' compiled template
(:class:`~prefkit.chat.templates.ChatRenderer`), tokenizes whole batches with the fast (Rust) tokenizer
without offsets (lengths only when ids are not needed), and tokenizes the history shared by prompt+chosen and
prompt+rejected once (see :func:`split_markers`). The counts equal :func:`prefkit.chat.tokenize.tokenize_pairs`
(tests hold them equal for every built-in template); an unusual split falls back to its common-prefix rule.
Text rows (``--output-format text``) follow TRL's standard-text rule (the tokenizer's own BOS, ``eos_token``
appended), i.e. what a trainer fed those strings sees.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prefkit.chat.render import MessageRows, render_parts
from prefkit.chat.templates import ChatRenderer
from prefkit.chat.tokenize import _split

#: rows rendered and tokenized per batch
BATCH_ROWS = 4096


@dataclass
class TokenLengths:
    """Per-row token counts by TRL's rule.

    ``chosen_total`` / ``rejected_total`` are ``len(PC)`` / ``len(PR)`` (prompt + answer, what ``max_length``
    truncates); ``prompt`` is TRL's ``n`` (None when not computed: ``--max-length`` alone does not need it).
    """

    chosen_total: list[int]
    rejected_total: list[int]
    prompt: list[int] | None = None

    @property
    def chosen(self) -> list[int]:
        """Answer tokens of the chosen side (``len(PC) - n``)."""
        return [t - n for t, n in zip(self.chosen_total, self._prompt(), strict=True)]

    @property
    def rejected(self) -> list[int]:
        return [t - n for t, n in zip(self.rejected_total, self._prompt(), strict=True)]

    def _prompt(self) -> list[int]:
        if self.prompt is None:
            raise ValueError("prompt lengths were not computed (need_prompt=False)")
        return self.prompt

    def extend(self, other: TokenLengths) -> None:
        self.chosen_total += other.chosen_total
        self.rejected_total += other.rejected_total
        if other.prompt is not None:
            self.prompt = (self.prompt or []) + other.prompt


# ------------------------------------------------------------------------------------------------ token counts


def _backend(tokenizer: Any) -> Any:
    """The Rust tokenizer with padding/truncation off (as transformers sets them per call), or None."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    if backend.truncation is not None:
        backend.no_truncation()
    if backend.padding is not None:
        backend.no_padding()
    return backend


def encode_ids(tokenizer: Any, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
    """Token ids of each text, batch-encoded by the fast tokenizer (no offsets); slow tokenizers fall back."""
    backend = _backend(tokenizer)
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=add_special_tokens)]
    return [list(x) for x in tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]]


def encode_lengths(tokenizer: Any, texts: list[str], add_special_tokens: bool) -> list[int]:
    """Number of tokens of each text (no id lists built on the fast path)."""
    backend = _backend(tokenizer)
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        return [len(e) for e in backend.encode_batch_fast(texts, add_special_tokens=add_special_tokens)]
    return [len(x) for x in tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]]


def _prompt_length(p: list[int], pc: list[int], pr: list[int]) -> int:
    """``n`` of TRL's split (``prefkit.chat.tokenize._split``), with a C-speed fast path when P prefixes both."""
    k = len(p)
    if pc[:k] == p and pr[:k] == p:
        return k

    return len(_split(p, pc, pr, None).prompt_ids)


def lengths_from_ids(
    p_ids: Sequence[list[int]], pc_ids: Sequence[list[int]], pr_ids: Sequence[list[int]]
) -> TokenLengths:
    """Token counts from the ids of P, PC and PR (TRL's common-prefix split)."""
    prompt = [_prompt_length(p, pc, pr) for p, pc, pr in zip(p_ids, pc_ids, pr_ids, strict=True)]
    return TokenLengths([len(x) for x in pc_ids], [len(x) for x in pr_ids], prompt)


class Tokenizing(Protocol):
    """What counts message rows: a tokenizer and the chat template that renders the rows
    (:class:`prefkit.chat.target.Target`)."""

    tokenizer: Any
    renderer: ChatRenderer


def message_token_lengths(
    target: Tokenizing,
    rows: MessageRows,
    need_prompt: bool = True,
    on_batch: Callable[[int], None] | None = None,
    refused: dict[int, str] | None = None,
) -> TokenLengths:
    """Token counts of message rows as TRL's ``DPOTrainer`` tokenizes them (conversational rule), rendered with
    ``target.renderer`` and tokenized with ``target.tokenizer``.

    ``need_prompt=False`` renders and counts only prompt+answer (enough for ``max_length``); ``on_batch(rows)``
    is called after each batch (progress); ``rows.extras[i]``: row ``i``'s tools / template keyword arguments. Rows
    the template refuses raise, or with a ``refused`` dict are counted as empty and listed there (row → message).
    """

    tokenizer, renderer = target.tokenizer, target.renderer
    out = TokenLengths([], [], [] if need_prompt else None)
    for start in range(0, len(rows.prompts), BATCH_ROWS):
        sl = slice(start, start + BATCH_ROWS)
        batch: dict[int, str] | None = {} if refused is not None else None
        p, pc, pr = render_parts(renderer, rows.rows(sl), batch, need_prompt)
        if refused is not None and batch:
            refused.update({start + i: message for i, message in batch.items()})
        cuts = split_markers(tokenizer)
        if cuts:
            out.extend(_shared_head_lengths(tokenizer, cuts, p, pc, pr))
        elif p is not None:
            out.extend(lengths_from_ids(*(encode_ids(tokenizer, t, False) for t in (p, pc, pr))))
        else:
            out.extend(
                TokenLengths(encode_lengths(tokenizer, pc, False), encode_lengths(tokenizer, pr, False))
            )
        if on_batch is not None:
            on_batch(len(pc))
    return out


# Shared-head tokenization. A fast tokenizer first splits its input on added tokens, then normalises,
# pre-tokenizes and encodes each piece in between on its own; without special tokens added around the text
# (the conversational rule), tokens(S) == tokens(S[:k]) + tokens(S[k:]) when an added token X is matched at k,
# provided X cannot overlap another added token, does not swallow whitespace to its left (lstrip) and does not
# depend on its left neighbour (single_word), and is matched before normalisation. The rendered prompt+chosen
# and prompt+rejected share their history text, so cutting both at the last such X inside their common prefix
# tokenizes the history once instead of two or three times. ``test_token_filters`` holds the counts equal to
# ``prefkit.chat.tokenize.tokenize_pairs`` (TRL's rule) for every built-in template, byte-level and SentencePiece-style.


def split_markers(tokenizer: Any) -> tuple[str, ...]:
    """Added tokens at which the tokenizer's output can be cut exactly (empty: no shared-head path)."""
    backend = _backend(tokenizer)
    if backend is None or not hasattr(backend, "get_added_tokens_decoder"):
        return ()
    cached = getattr(tokenizer, "_prefkit_split_markers", None)
    if cached is not None and cached[0] is backend:
        return cached[1]
    added = list(backend.get_added_tokens_decoder().values())
    texts = [a.content for a in added]
    markers = []
    for a in added:
        x = a.content
        if not x or a.lstrip or a.single_word or a.normalized:
            continue
        overlaps = any(
            (t != x and (x in t or any(t[i:] == x[: len(t) - i] for i in range(1, len(t)))))
            or (t == x and any(x[i:] == x[: len(x) - i] for i in range(1, len(x))))
            for t in texts
        )
        if not overlaps:
            markers.append(x)
    result = tuple(markers)
    with contextlib.suppress(AttributeError):  # cache on the tokenizer (computed once per tokenizer)
        tokenizer._prefkit_split_markers = (backend, result)
    return result


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _shared_head_lengths(
    tokenizer: Any, markers: tuple[str, ...], p: list[str] | None, pc: list[str], pr: list[str]
) -> TokenLengths:
    heads, tail_c, tail_r, tail_p = [], [], [], []
    for i, (c, r) in enumerate(zip(pc, pr, strict=True)):
        common = _common_prefix_len(c, r)
        k = max(c.rfind(x, 0, common) for x in markers)
        if k < 0 or (p is not None and not p[i].startswith(c[:k])):
            k = 0
        heads.append(c[:k])
        tail_c.append(c[k:])
        tail_r.append(r[k:])
        if p is not None:
            tail_p.append(p[i][k:])
    if p is None:
        head = encode_lengths(tokenizer, heads, False)
        lc = encode_lengths(tokenizer, tail_c, False)
        lr = encode_lengths(tokenizer, tail_r, False)
        return TokenLengths(
            [h + x for h, x in zip(head, lc, strict=True)], [h + x for h, x in zip(head, lr, strict=True)]
        )
    head_ids = encode_ids(tokenizer, heads, False)
    ids_c, ids_r, ids_p = (encode_ids(tokenizer, t, False) for t in (tail_c, tail_r, tail_p))
    prompt = [
        len(h) + _prompt_length(tp, tc, tr)
        for h, tp, tc, tr in zip(head_ids, ids_p, ids_c, ids_r, strict=True)
    ]
    return TokenLengths(
        [len(h) + len(x) for h, x in zip(head_ids, ids_c, strict=True)],
        [len(h) + len(x) for h, x in zip(head_ids, ids_r, strict=True)],
        prompt,
    )


def text_token_lengths(
    tokenizer: Any,
    prompts: Sequence[str],
    chosen: Sequence[str],
    rejected: Sequence[str],
    need_prompt: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> TokenLengths:
    """Token counts of text rows as TRL's ``DPOTrainer`` tokenizes them (standard-text rule: EOS appended)."""
    eos = tokenizer.eos_token or ""
    out = TokenLengths([], [], [] if need_prompt else None)
    for start in range(0, len(prompts), BATCH_ROWS):
        sl = slice(start, start + BATCH_ROWS)
        ps = list(prompts[sl])
        pc = [a + (c if c.endswith(eos) else c + eos) for a, c in zip(ps, chosen[sl], strict=True)]
        pr = [a + (r if r.endswith(eos) else r + eos) for a, r in zip(ps, rejected[sl], strict=True)]
        if need_prompt:
            out.extend(lengths_from_ids(*(encode_ids(tokenizer, t, True) for t in (ps, pc, pr))))
        else:
            out.extend(TokenLengths(encode_lengths(tokenizer, pc, True), encode_lengths(tokenizer, pr, True)))
        if on_batch is not None:
            on_batch(len(pc))
    return out
