"""Template residue: chat-template markers left inside message text, found by structure.

A marker counts only where a turn would start or end, so an answer that *explains* a marker ("The token
`<|im_start|>` begins a turn in ChatML", "[INST] opens a user turn") or writes a requested dialogue
("Human: hi\\nAssistant: hello") is kept. Residue is, for the markers of every built-in template family:

* a boundary: an end-of-turn marker followed by a start-of-turn header (``Hello<|im_end|>\\n<|im_start|>user``);
* a header: a start-of-turn marker with its role at the start of the text or of a line (``<|im_start|>assistant``,
  ``<|begin_of_text|>``);
* a trailing end-of-turn marker (``Paris.<|im_end|>``);
* NeMo's ``<extra_id_N>`` turn tokens anywhere; a transcript's ``Human:`` opening the text or a dangling
  ``\\n\\nHuman:`` / ``\\n\\nAssistant:`` closing it;
* with ``--tokenizer``: any of the tokenizer's own special tokens at the start of a line or closing the text.

Markers inside code (fenced blocks, inline backticks) are ignored. The rejects record which marker matched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import polars as pl

ROLE = r"(?:system|user|assistant|tool|ipython|model|developer|human|gpt)"
_LINE_END = r"[ \t]*(?:\n|\z)"
#: family -> (start-of-turn headers, end-of-turn markers): what the built-in templates write around a turn
FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "chatml": ((rf"<\|im_start\|>{ROLE}{_LINE_END}",), (r"<\|im_end\|>", r"<\|endoftext\|>")),
    "llama-3": (
        (rf"(?:<\|begin_of_text\|>)?<\|start_header_id\|>{ROLE}<\|end_header_id\|>", r"<\|begin_of_text\|>"),
        (r"<\|eot_id\|>", r"<\|eom_id\|>", r"<\|end_of_text\|>"),
    ),
    "zephyr/phi-3": (
        (rf"<\|(?:system|user|assistant)\|>{_LINE_END}",),
        (r"</s>", r"<\|end\|>", r"<\|endoftext\|>"),
    ),
    "gemma": ((rf"(?:<bos>)?<start_of_turn>(?:user|model|system){_LINE_END}",), (r"<end_of_turn>", r"<eos>")),
}
#: the literal pieces any residue contains (a fast first pass: only rows holding one are searched)
LITERALS = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>",
    "<|start_header_id|>", "<|begin_of_text|>", "</s>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>", "<start_of_turn>",
    "<end_of_turn>", "<eos>", "[INST]", "<extra_id_", "Human:", "Assistant:",
)  # fmt: skip
CODE = r"(?s)```.*?```|~~~.*?~~~|`[^`\n]+`"
#: the column :func:`residue_markers` fills
RESIDUE = "_residue"


def _rules() -> list[tuple[str, str]]:
    rules = []
    for name, (starts, ends) in FAMILIES.items():
        start, end = "(?:" + "|".join(starts) + ")", "(?:" + "|".join(ends) + ")"
        rules += [(name, rf"{end}\s*{start}"), (name, rf"(?m)^[ \t]*{start}"), (name, rf"{end}\s*\z")]
    rules += [
        ("mistral", r"</s>\s*(?:<s>)?[ \t]?\[INST\]"),
        ("mistral", r"(?m)^(?:<s>)?[ \t]?\[INST\][^\n]*?\[/INST\]"),
        ("nemo", r"<extra_id_\d+>"),
        ("transcript", r"\A\s*Human:"),
        ("transcript", r"\n\n(?:Human|Assistant):\s*\z"),
    ]
    return rules


def pattern(special_tokens: Sequence[str] = ()) -> str:
    """One regex for every residue rule (and the tokenizer's ``special_tokens`` at a line start or the end)."""
    rules = [rule for _, rule in _rules()]
    for token in special_tokens:
        if len(token) > 2:
            t = re.escape(token)
            rules += [rf"(?m)^[ \t]*{t}", rf"{t}\s*\z"]
    return "|".join(f"(?:{r})" for r in rules)


def _marker(column: str, regex: str) -> pl.Expr:
    """The first residue match in a message column (code blanked out first), or null."""
    content = pl.element().struct.field("content").str.replace_all(CODE, " ")
    return pl.col(column).list.eval(content.str.extract(f"({regex})", 1)).list.drop_nulls().list.first()


def residue_markers(df: pl.DataFrame, special_tokens: Sequence[str] = ()) -> pl.Series:
    """Per row, the residue that matched in prompt, chosen or rejected (null when none). Only rows holding one
    of the marker literals (or a special token) are searched with the full pattern."""
    literals = list(dict.fromkeys([*LITERALS, *[t for t in special_tokens if len(t) > 2]]))
    content = pl.element().struct.field("content")
    # two searches, markers opening with "<" and the others: Aho-Corasick keeps its fast prefilter on each set,
    # and was 30x slower over the mixed one
    groups = [g for g in ([t for t in literals if t[0] == "<"], [t for t in literals if t[0] != "<"]) if g]
    maybe = pl.any_horizontal(
        pl.col(c).list.eval(pl.any_horizontal(content.str.contains_any(g) for g in groups)).list.any()
        for c in ("prompt", "chosen", "rejected")
    ).fill_null(False)
    rows = df.select("prompt", "chosen", "rejected").with_row_index("_i").filter(df.select(maybe).to_series())
    regex = pattern(special_tokens)
    found = rows.select(
        "_i", pl.coalesce(_marker(c, regex) for c in ("prompt", "chosen", "rejected")).alias("m")
    )
    found = found.filter(pl.col("m").is_not_null())
    return pl.Series(RESIDUE, [None] * df.height, dtype=pl.String).scatter(found["_i"], found["m"])
