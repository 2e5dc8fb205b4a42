"""Small preference sets for the reflogps job and trainer tests, written with `prefkit build`."""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.tinymodel import random_text


def pair_rows(n: int, seed: int = 0, long_prompt_every: int = 9) -> list[dict]:
    """``n`` conversational rows: system messages, multi-turn prompts, varied lengths, some overlong prompts."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = []
        if i % 5 == 0:
            prompt.append({"role": "system", "content": random_text(rng, 6)})
        prompt.append({"role": "user", "content": random_text(rng, rng.randint(3, 30))})
        if i % 4 == 1:
            prompt += [
                {"role": "assistant", "content": random_text(rng, 8)},
                {"role": "user", "content": random_text(rng, 6)},
            ]
        if long_prompt_every and i % long_prompt_every == 4:
            prompt[-1]["content"] = random_text(rng, 200)  # prompt alone fills max_length: TRL drops the row
        rows.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": random_text(rng, rng.randint(1, 50))}],
                "rejected": [{"role": "assistant", "content": random_text(rng, rng.randint(1, 50))}],
                "score_chosen": 8.0,
                "score_rejected": float(rng.randint(1, 7)),
            }
        )
    return rows


def build_set(folder: Path, n: int = 24, seed: int = 0, splits: dict[str, int] | None = None) -> Path:
    """Write rows as JSONL (one file per split: ``splits`` maps split → rows, default ``{"train": n}``) and
    build an output folder from them with `prefkit build`; returns the folder."""
    from prefkit import build

    folder = Path(folder)
    source = folder / "source"
    source.mkdir(parents=True, exist_ok=True)
    for i, (split, rows) in enumerate((splits or {"train": n}).items()):
        (source / f"{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in pair_rows(rows, seed + i))
        )
    out = folder / "out"
    build(str(source), out, overwrite=True)
    return out


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in-process (main() turns PrefkitError into Error:/Hint: and exit 1): (exit code, stdout,
    stderr)."""
    from prefkit.cli import main

    code = 0
    try:
        main(args)
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def data_columns(out: Path, columns: list[str], files: int = 2) -> dict[str, dict[str, list]]:
    """{data file: {column: values}} of every data shard of the set in ``out`` (which has ``files`` shards)."""
    import pyarrow.parquet as pq

    tables = {p.name: pq.read_table(p) for p in sorted((out / "data").glob("*.parquet"))}
    assert len(tables) == files
    return {name: {c: t.column(c).to_pylist() for c in columns} for name, t in tables.items()}
