"""Sets for the report's tests and docs: a mix of two sources with every kind of reject the page has evidence
for (template residue, a near-duplicate, a contaminated prompt), and a row whose text is HTML."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = (
    "river stone lamp garden window cloud engine paper silver music forest candle harbor winter basket "
    "mirror ladder pepper violin copper saddle lantern meadow orchard pillow thunder velvet walnut"
).split()
EVAL_ITEM = (
    "Explain the difference between a stack and a queue, giving one everyday example of each structure."
)
#: text of a kept row that would run script if the page did not escape it
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> & </textarea>'
EXAMPLE = Path(__file__).resolve().parents[1] / "prefkit" / "examples" / "ultrafeedback-mini.jsonl"


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def flat_rows(n: int = 60, seed: int = 0) -> list[dict]:
    """``n`` prompt/chosen/rejected text rows with a delta score; every 10th followed by a near-copy (a word
    changed, case and punctuation differ); row 5's prompt embeds :data:`EVAL_ITEM`; row 3's chosen answer is
    :data:`HOSTILE`."""
    rng = random.Random(seed)
    rows: list[dict] = []
    for i in range(n):
        row = {
            "prompt": sentence(rng, 30),
            "chosen": sentence(rng, rng.randint(10, 60)),
            "rejected": sentence(rng, rng.randint(5, 40)),
            "delta_score": float(1 + i % 5),
        }
        if i == 3:
            row["chosen"] = HOSTILE
        if i == 5:
            row["prompt"] = "Please help: " + EVAL_ITEM.upper() + " Thanks!"
        rows.append(row)
        if i % 10 == 0:
            words = row["prompt"].split()
            words[7] = "zebra"
            rows.append({**row, "prompt": " ".join(words).upper() + "?!", "chosen": row["chosen"] + "."})
    return rows


def write_mix_sources(folder: Path) -> tuple[list[str], Path]:
    """The two sources (the README example and :func:`flat_rows`) and the eval file, written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    flat = folder / "flat.jsonl"
    flat.write_text("".join(json.dumps(r) + "\n" for r in flat_rows()))
    evalset = folder / "my_eval.jsonl"
    evalset.write_text(json.dumps({"question": EVAL_ITEM}) + "\n")
    return [str(EXAMPLE), str(flat)], evalset


def build_mix(folder: Path, out: Path, **options) -> dict:
    """Build the mix with near-dedup and decontamination; returns the manifest."""
    from prefkit import build

    sources, evalset = write_mix_sources(folder)
    result = build(sources, out, near_dedup=True, decontaminate=[str(evalset)], overwrite=True, **options)
    return result.manifest


def call(name: str, arguments: dict, **extra) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}, **extra}


TIMER = {
    "type": "function",
    "function": {"name": "start_timer", "description": "Start a timer.", "parameters": {}},
}
THINK = "Red planet means Mars."
#: a tool-calling row (TRL's shape: assistant tool call -> tool -> assistant) and a row with reasoning
TOOL_AND_REASONING_ROWS = [
    {
        "prompt": [
            {"role": "system", "content": "You set timers."},
            {"role": "user", "content": "Timer, 10 min."},
        ],
        "chosen": [
            {"role": "assistant", "content": "", "tool_calls": [call("start_timer", {"duration": 600})]},
            {"role": "tool", "content": "600", "name": "start_timer"},
            {"role": "assistant", "content": "Timer set for 10 minutes."},
        ],
        "rejected": [{"role": "assistant", "content": "I cannot set timers."}],
        "tools": [TIMER],
    },
    {
        "prompt": [{"role": "user", "content": "Which planet is red?"}],
        "chosen": [{"role": "assistant", "content": "Mars.", "reasoning_content": THINK}],
        "rejected": [{"role": "assistant", "content": "Venus.", "reasoning_content": "Hot planet."}],
    },
]
