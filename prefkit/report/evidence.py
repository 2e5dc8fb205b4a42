"""Evidence of a reject, as text pieces the page marks: a residue marker's occurrences, the words a near-duplicate
changed, the run of words a row shares with an eval item.

A marked text is a list of ``(text, mark)`` pieces, ``mark`` one of ``""`` (plain), ``"hit"`` (highlighted),
``"del"`` (only in the dropped row) or ``"ins"`` (only in the kept row); the template escapes every piece.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

Pieces = list[tuple[str, str]]
WORD = re.compile(r"\w+", re.UNICODE)


def mark_all(text: str, needle: str | None) -> Pieces:
    """``text`` with every occurrence of ``needle`` marked ``hit`` (a residue marker)."""
    if not needle or needle not in text:
        return [(text, "")]
    pieces: Pieces = []
    for i, part in enumerate(text.split(needle)):
        if i:
            pieces.append((needle, "hit"))
        if part:
            pieces.append((part, ""))
    return pieces


def word_diff(dropped: str, kept: str) -> tuple[Pieces, Pieces]:
    """Both texts with the words that differ marked (``del`` in ``dropped``, ``ins`` in ``kept``): difflib's
    longest-matching-blocks rule over words compared as near-dedup compares them (lower-cased, punctuation
    ignored), shown as written."""
    a, b = re.split(r"(\s+)", dropped), re.split(r"(\s+)", kept)
    left: Pieces = []
    right: Pieces = []
    matcher = difflib.SequenceMatcher(None, [_key(w) for w in a], [_key(w) for w in b], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        kind = "" if op == "equal" else "x"
        if i2 > i1:
            left.append(("".join(a[i1:i2]), kind and "del"))
        if j2 > j1:
            right.append(("".join(b[j1:j2]), kind and "ins"))
    return left, right


def _key(token: str) -> str:
    """A token as the comparison sees it: whitespace as one space, a word lower-cased without punctuation."""
    if not token.strip():
        return " "
    return "".join(WORD.findall(token.lower())) or token


def shared_run(text: str, item: str) -> tuple[Pieces, Pieces, str]:
    """The longest run of words ``text`` and ``item`` share (compared lower-cased, punctuation ignored, as the
    decontamination compares them), marked ``hit`` in both; and the run itself as words."""
    tw, iw = list(WORD.finditer(text)), list(WORD.finditer(item))
    matcher = difflib.SequenceMatcher(
        None, [m.group().lower() for m in tw], [m.group().lower() for m in iw], autojunk=False
    )
    m = matcher.find_longest_match(0, len(tw), 0, len(iw))
    if m.size == 0:
        return [(text, "")], [(item, "")], ""

    def cut(s: str, words: list, start: int) -> Pieces:
        lo, hi = words[start].start(), words[start + m.size - 1].end()
        return [p for p in ((s[:lo], ""), (s[lo:hi], "hit"), (s[hi:], "")) if p[0]]

    run = " ".join(w.group().lower() for w in tw[m.a : m.a + m.size])
    return cut(text, tw, m.a), cut(item, iw, m.b), run


def plain_text(value: Any) -> str:
    """A field's text for comparison: a string as it is, messages as their contents one per line, else JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return "\n".join(str(v.get("content") or "") for v in value)
    return json.dumps(value, default=str, ensure_ascii=False)


def row_text(fields: dict[str, Any], order: tuple[str, ...] = ("prompt", "chosen", "rejected")) -> str:
    """A row's text fields (strings and messages; ``order`` first, then the others) as one text, one field per
    paragraph; numbers and other values are left out."""
    names = [n for n in order if n in fields] + [n for n in fields if n not in order]
    texts = (plain_text(fields[n]) for n in names if isinstance(fields[n], (str, list)))
    return "\n\n".join(t for t in texts if t)
