"""Token-length filters (``--max-length``, ``--max-prompt-length``, ``--min-answer-tokens``, with ``--tokenizer``).

Counts follow TRL's ``DPOTrainer`` rule (:mod:`prefkit.chat.lengths`):

* ``max_length``: drop when prompt+answer of either answer has more than ``max_length`` tokens (so TRL never
  cuts an answer with ``keep_start``; exactly ``max_length`` is kept);
* ``max_prompt_length``: drop when the prompt has more than ``max_prompt_length`` tokens;
* ``min_answer_tokens``: drop when either answer has fewer tokens.

Lengths are those of the rows as written: message rows by TRL's conversational rule, text rows
(``--output-format text``) by its standard-text rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc

from prefkit.accounting import Reason, declare
from prefkit.chat.lengths import TokenLengths, message_token_lengths, text_token_lengths
from prefkit.chat.render import MessageRows, render_parts, render_text
from prefkit.chat.target import load_target
from prefkit.errors import OptionError, option
from prefkit.frame import DETAIL, REASON
from prefkit.progress import bar
from prefkit.record import frame_rows

OVER_MAX_LENGTH, OVER_MAX_PROMPT_LENGTH, ANSWER_TOO_SHORT, TEMPLATE_REFUSED = declare(
    Reason(
        "over_max_length",
        "dropped",
        "prompt + answer longer than --max-length tokens for the chosen or the rejected answer",
    ),
    Reason("over_max_prompt_length", "dropped", "prompt longer than --max-prompt-length tokens"),
    Reason(
        "answer_too_short",
        "dropped",
        "the chosen or the rejected answer has fewer than --min-answer-tokens tokens",
    ),
    Reason(
        "template_refused",
        "dropped",
        "the target chat template raised an error on the row (a role or field it does not accept); the "
        "rejects' detail holds its message",
    ),
)
REASONS = (OVER_MAX_LENGTH, OVER_MAX_PROMPT_LENGTH, ANSWER_TOO_SHORT, TEMPLATE_REFUSED)
TOKEN_DROP_REASONS = tuple(r.name for r in REASONS)


@dataclass(frozen=True)
class TokenFilterOptions:
    """Token-length limits (None = off)."""

    max_length: int | None = None
    max_prompt_length: int | None = None
    min_answer_tokens: int | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_length, self.max_prompt_length, self.min_answer_tokens))


def drop_reasons(lengths: TokenLengths, options: TokenFilterOptions) -> list[str | None]:
    """The first token filter each row fails (``None`` = keeps), in the order max_length, prompt, answer."""
    out: list[str | None] = [None] * len(lengths.chosen_total)
    if options.max_length is not None:
        limit = options.max_length
        for i, (c, r) in enumerate(zip(lengths.chosen_total, lengths.rejected_total, strict=True)):
            if c > limit or r > limit:
                out[i] = OVER_MAX_LENGTH.name
    if options.max_prompt_length is not None:
        for i, n in enumerate(lengths._prompt()):
            if out[i] is None and n > options.max_prompt_length:
                out[i] = OVER_MAX_PROMPT_LENGTH.name
    if options.min_answer_tokens is not None:
        for i, (c, r) in enumerate(zip(lengths.chosen, lengths.rejected, strict=True)):
            if out[i] is None and min(c, r) < options.min_answer_tokens:
                out[i] = ANSWER_TOO_SHORT.name
    return out


@dataclass
class TargetResult:
    """What :func:`apply_target` decided for a batch of rows: a reason per row (None = keeps), the template's
    message for refused rows, the token counts (with active filters) and the text rows (text output)."""

    reasons: list[str | None]
    details: list[str | None]
    lengths: TokenLengths | None = None
    text: tuple[list[str], list[str], list[str]] | None = None


def apply_target(
    rows: MessageRows,
    target: Any,
    options: TokenFilterOptions,
    output_format: str = "messages",
    on_batch: Callable[[int], None] | None = None,
) -> TargetResult:
    """Render and length-filter message rows for ``target`` (a :class:`prefkit.chat.Target`).

    Every row is rendered as TRL will render it (prompt with generation prompt, prompt+chosen,
    prompt+rejected); a row the template refuses is dropped as ``template_refused`` (the trainer would fail on
    it). Without active filters no tokenizer is needed. ``on_batch(rows)`` reports progress; ``rows.extras[i]``:
    row ``i``'s tools / template keyword arguments.
    """
    refused: dict[int, str] = {}
    lengths = text = None
    if output_format == "text":
        text = render_text(target.renderer, rows, refused)
    if options.active:
        tokenizer = target.require_tokenizer("--max-length / --max-prompt-length / --min-answer-tokens")
        need_prompt = options.max_prompt_length is not None or options.min_answer_tokens is not None
        if text is not None:
            lengths = text_token_lengths(tokenizer, *text, need_prompt=need_prompt, on_batch=on_batch)
        else:
            lengths = message_token_lengths(target, rows, need_prompt, on_batch, refused)
    elif text is None:
        render_parts(target.renderer, rows, refused)
    reasons: list[str | None] = (
        drop_reasons(lengths, options) if lengths is not None else [None] * len(rows.prompts)
    )
    for i in refused:
        reasons[i] = TEMPLATE_REFUSED.name
    details = [refused.get(i) for i in range(len(rows.prompts))]
    return TargetResult(reasons, details, lengths, text)


@dataclass
class TargetCheck:
    """The target's checks on the rows that pass the row-local filters (the ``target`` hook of
    :func:`prefkit.filters.classify`): the template renders every row, token-length filters count them, and the
    tokenizer's special tokens count as template residue."""

    target: Any
    options: TokenFilterOptions
    output_format: str = "messages"
    progress: bool = False

    @property
    def special_tokens(self) -> tuple[str, ...]:
        return self.target.special_tokens

    def __call__(self, rows: Any) -> tuple[list[str | None], list[str | None]]:
        """Drop reasons and details for a polars frame of normalised rows (a progress bar with rate and ETA)."""

        messages = MessageRows(*frame_rows(rows))
        desc = "counting tokens" if self.options.active else "rendering"
        with bar(desc=desc, total=rows.height, show=self.progress, unit="row") as pbar:
            on_batch = pbar.update if self.options.active else None
            result = apply_target(messages, self.target, self.options, self.output_format, on_batch)
        return result.reasons, result.details


def refusal_warnings(rejects: Mapping[str, Any]) -> list[str]:
    """One sentence per split with rows the target template refused: how many, the template's first message,
    and the fix (``rejects``: split → the rejects' Arrow table)."""

    out = []
    for split, table in rejects.items():
        if DETAIL not in table.column_names:
            continue
        refused = table.filter(pc.equal(table[REASON], TEMPLATE_REFUSED.name))
        if refused.num_rows:
            out.append(
                f"split {split!r}: the chat template refused {refused.num_rows:,} row(s), dropped as "
                f"{TEMPLATE_REFUSED.name} (first: {refused[DETAIL][0].as_py()!r}; each in rejects/{split}.parquet "
                "`detail`); check the template against the rows: `--system drop` for a template without a "
                "system role, or another --chat-template"
            )
    return out


def token_stage(options: Any, progress: bool = False) -> tuple[Any, TargetCheck | None]:
    """The target tokenizer/template (:class:`prefkit.chat.target.Target` or None) and its row checks for
    :func:`prefkit.filters.classify` (or None), checked against the options before any source is read.

    ``options`` are :class:`prefkit.options.BuildOptions`. Raises ``OptionError`` for filters without a
    tokenizer, text output without a template, or text output with another export shape.
    """

    chat, filters, export = options.chat, options.filters, options.output.export
    token_options = TokenFilterOptions(
        filters.max_length, filters.max_prompt_length, filters.min_answer_tokens
    )
    if token_options.active and chat.tokenizer is None:
        raise OptionError(
            "--max-length / --max-prompt-length / --min-answer-tokens count tokens of the target model",
            "pass --tokenizer MODEL_OR_PATH (tokenizer=; a local folder or a Hub id; only the tokenizer files "
            "are read)",
        )
    text = chat.output_format == "text"
    if text and chat.tokenizer is None and chat.chat_template is None:
        raise OptionError(
            "--output-format text renders the rows with a chat template",
            f"pass {option('tokenizer')} (its template) or {option('chat_template')}",
        )
    if text and not options.output.trl_shaped:
        raise OptionError(
            f"--output-format text and --export {export} both choose the shape of the data files",
            "use one of them",
        )
    if chat.tokenizer is None and chat.chat_template is None:
        return None, None

    target = load_target(
        chat.tokenizer,
        chat.chat_template,
        revision=chat.tokenizer_revision,
        trust_remote_code=chat.trust_remote_code,
    )
    return target, TargetCheck(target, token_options, chat.output_format, progress)
