"""Benchmark: `prefkit build --top 2000` vs the hand-written `datasets` recipe, same file, same machine, one run.

Data: N rows (default 100k) shaped like HuggingFaceH4/ultrafeedback_binarized (message lists, a redundant prompt
string, a `messages` column, score_chosen/score_rejected), made in code with a fixed seed.

The recipe is what people write by hand: load_dataset("parquet") -> map (prompt from the message lists, margin)
-> filter (ties, identical answers) -> sort by margin -> select top N -> to_parquet.

Each measurement runs in a fresh subprocess (fresh caches, imports included, peak RSS of that process), and the
two sides are interleaved and repeated; medians are reported.

    python benchmarks/build_throughput.py                 # 100k rows, 3 repeats
    python benchmarks/build_throughput.py --rows 20000 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "the model answer question data python list value error function return because first second example "
    "result number string time people system make good better best explain simple method step write code "
    "using without between should could would about which their there other these those while where"
).split()


def make_dataset(path: Path, rows: int, seed: int = 0) -> None:
    """UltraFeedback-binarized-shaped parquet, lognormal text lengths, ~1% ties and ~0.5% identical pairs."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    vocab = np.array(WORDS)

    def texts(n: int, mean_words: float) -> list[str]:
        lengths = np.clip(rng.lognormal(np.log(mean_words), 0.6, n).astype(int), 3, 2000)
        flat = vocab[rng.integers(0, len(vocab), lengths.sum())]
        out, pos = [], 0
        for n_words in lengths:
            out.append(" ".join(flat[pos : pos + n_words]))
            pos += n_words
        return out

    prompts, good, bad = texts(rows, 60), texts(rows, 180), texts(rows, 150)
    identical = rng.random(rows) < 0.005
    bad = [g if same else b for g, b, same in zip(good, bad, identical, strict=True)]
    sc = rng.integers(1, 11, rows).astype(float)
    sr = np.where(rng.random(rows) < 0.01, sc, np.maximum(sc - rng.integers(1, 6, rows), 1.0))

    def conv(p: list[str], a: list[str]) -> pa.Array:
        return pa.array([[{"content": q, "role": "user"}, {"content": x, "role": "assistant"}] for q, x in zip(p, a, strict=True)])

    chosen = conv(prompts, good)
    table = pa.table(
        {
            "prompt": prompts,
            "prompt_id": [f"{i:064x}" for i in range(rows)],
            "chosen": chosen,
            "rejected": conv(prompts, bad),
            "messages": chosen,
            "score_chosen": sc,
            "score_rejected": sr,
        }
    )
    pq.write_table(table, path)


def run_prefkit(src: Path, out: Path, top: int) -> None:
    from prefkit import build

    build(src, out, top=top)


def run_recipe(src: Path, out: Path, top: int) -> None:
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(src), split="train")

    def to_pair(ex):
        return {
            "prompt": ex["chosen"][:-1],
            "chosen": ex["chosen"][-1:],
            "rejected": ex["rejected"][-1:],
            "margin": ex["score_chosen"] - ex["score_rejected"],
        }

    ds = ds.map(to_pair, remove_columns=["prompt_id", "messages"])
    ds = ds.filter(
        lambda ex: ex["margin"] != 0
        and " ".join(ex["chosen"][0]["content"].split()) != " ".join(ex["rejected"][0]["content"].split())
    )
    ds = ds.sort("margin", reverse=True)
    ds = ds.select(range(min(top, len(ds))))
    out.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(out / "train.parquet"))


def child(side: str, src: Path, top: int) -> None:
    """One measurement, in its own process: prints {"seconds", "peak_rss_mb"} as JSON."""
    work = Path(tempfile.mkdtemp(prefix=f"bench-{side}-"))
    os.environ["HF_DATASETS_CACHE"] = str(work / "cache")  # a fresh cache: no reuse between runs
    try:
        start = time.perf_counter()
        (run_prefkit if side == "prefkit" else run_recipe)(src, work / "out", top)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak}))


def measure(side: str, src: Path, top: int) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--src", str(src), "--top", str(top)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["prefkit", "recipe"], help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.src, args.top)
        return

    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        src = Path(tmp) / "uf.parquet"
        t = time.perf_counter()
        make_dataset(src, args.rows)
        print(f"data: {args.rows:,} rows, {src.stat().st_size / 1e6:.0f} MB parquet (made in {time.perf_counter() - t:.1f}s)")
        results: dict[str, list[dict]] = {"prefkit": [], "recipe": []}
        for i in range(args.repeats):
            order = ("prefkit", "recipe") if i % 2 == 0 else ("recipe", "prefkit")  # interleave
            for side in order:
                r = measure(side, src, args.top)
                results[side].append(r)
                print(f"  run {i + 1} {side:<8} {r['seconds']:7.2f} s  peak RSS {r['peak_rss_mb']:7.0f} MB", flush=True)
    med = {s: statistics.median(r["seconds"] for r in rs) for s, rs in results.items()}
    mem = {s: statistics.median(r["peak_rss_mb"] for r in rs) for s, rs in results.items()}
    print()
    print(f"{'side':<10}{'median s':>10}{'rows/s':>12}{'peak RSS MB':>14}")
    for side in ("prefkit", "recipe"):
        print(f"{side:<10}{med[side]:>10.2f}{args.rows / med[side]:>12,.0f}{mem[side]:>14,.0f}")
    print(f"\nprefkit is {med['recipe'] / med['prefkit']:.1f}x faster than the datasets recipe (target: >= 5x)")
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
