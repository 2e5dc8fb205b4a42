"""Row builders shared by several test modules (a test module never imports another one)."""

from __future__ import annotations

import json
import random

from tests.tinymodel import random_text


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def conversational_rows(n: int, seed: int = 0, *, long_prompt_words: int = 0) -> list[dict]:
    """Single-turn, system, multi-turn rows, varied lengths."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = []
        if i % 3 == 1:
            prompt.append(msg("system", random_text(rng, rng.randint(3, 12))))
        for _ in range(1 if i % 4 < 2 else rng.randint(2, 3)):  # multi-turn in half the rows
            prompt.append(msg("user", random_text(rng, rng.randint(2, 30) + long_prompt_words)))
            prompt.append(msg("assistant", random_text(rng, rng.randint(2, 20))))
        prompt.pop()  # end with the user turn
        rows.append(
            {
                "prompt": prompt,
                "chosen": [msg("assistant", random_text(rng, rng.randint(1, 40)))],
                "rejected": [msg("assistant", random_text(rng, rng.randint(1, 40)))],
            }
        )
    return rows


def text_rows(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        chosen = " " + random_text(rng, rng.randint(1, 30))
        if i % 3 == 0:
            chosen += "</s>"  # already ends with EOS: TRL adds none
        rows.append(
            {
                "prompt": random_text(rng, rng.randint(2, 25)),
                "chosen": chosen,
                "rejected": random_text(
                    rng, rng.randint(1, 30)
                ).lower(),  # no leading space: tokens may merge
            }
        )
    return rows


def conversations(seed: int = 0) -> list[tuple[list[dict], list[dict], list[dict]]]:
    """(prompt, chosen, rejected): with and without system, single and multi-turn, odd whitespace."""
    rng = random.Random(seed)
    rows = []
    for i in range(8):
        prompt = []
        if i % 2 == 0:
            prompt.append({"role": "system", "content": random_text(rng, 6)})
        for _ in range(i % 3):
            prompt += [
                {"role": "user", "content": random_text(rng, 5)},
                {"role": "assistant", "content": " " + random_text(rng, 7) + "\n"},
            ]
        prompt.append({"role": "user", "content": random_text(rng, 9) + ("\n\n" if i == 3 else "")})
        chosen = [{"role": "assistant", "content": random_text(rng, 12)}]
        rejected = [{"role": "assistant", "content": ("\n" if i == 5 else "") + random_text(rng, 4)}]
        rows.append((prompt, chosen, rejected))
    return rows


def write_rows(path, n=40, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row = {
            "prompt": random_text(rng, rng.randint(2, 30)),
            "chosen": random_text(rng, rng.randint(1, 40)),
            "rejected": random_text(rng, rng.randint(1, 40)),
            "score_chosen": 5.0,
            "score_rejected": float(i % 4),
        }
        if i % 3 == 0:
            row["system"] = random_text(rng, 4)
        rows.append(row)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path
