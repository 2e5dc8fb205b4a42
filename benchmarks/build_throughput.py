"""Benchmark: `prefkit build --top 2000` vs the hand-written `datasets` recipe, same file, same machine, one run.

Data: N rows (default 100k) shaped like HuggingFaceH4/ultrafeedback_binarized (message lists, a redundant prompt
string, a `messages` column, score_chosen/score_rejected), made in code with a fixed seed.

The recipe is what people write by hand: load_dataset("parquet") -> map (prompt from the message lists, margin)
-> filter (ties, identical answers) -> sort by margin -> select top N -> to_parquet.

Each measurement runs in a fresh subprocess (fresh caches, imports included, peak RSS of that process), and the
two sides are interleaved and repeated; medians are reported.

    python benchmarks/build_throughput.py                 # 100k rows, 3 repeats
    python benchmarks/build_throughput.py --rows 20000 --repeats 1
    python benchmarks/build_throughput.py --mix           # 3-source mix, 300k rows in total

The --mix case mixes three sources of different shapes, 300k rows in total (--rows): 50% UltraFeedback-binarized
shaped message lists, 30% flat Intel/orca-shaped strings with a system column and `delta_score`, 20% TRL
explicit-prompt messages; weighted `uf:0.5 orca:60000 hh:2.0` (fraction, row count, upsampling), --dedup and a 5%
test split. prefkit's split is leak-free (grouped by prompt); the recipe's `train_test_split` is not, so the
recipe does less work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthetic import peak_rss_mb, random_texts, uf_conversations


def make_dataset(path: Path, rows: int, seed: int = 0) -> None:
    """UltraFeedback-binarized-shaped parquet, lognormal text lengths, ~1% ties and ~0.5% identical pairs."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)

    def texts(n: int, mean_words: float) -> list[str]:
        return random_texts(rng, n, mean_words)

    prompts, good, bad = texts(rows, 60), texts(rows, 180), texts(rows, 150)
    identical = rng.random(rows) < 0.005
    bad = [g if same else b for g, b, same in zip(good, bad, identical, strict=True)]
    sc = rng.integers(1, 11, rows).astype(float)
    sr = np.where(rng.random(rows) < 0.01, sc, np.maximum(sc - rng.integers(1, 6, rows), 1.0))

    conv = uf_conversations

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


def make_mix_sources(folder: Path, rows: int, seed: int = 0) -> None:
    """Three sources for the mix case: uf.parquet (B), orca.parquet (A), hh.parquet (C); ``rows`` in total."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    n_uf, n_orca = rows // 2, rows * 3 // 10
    n_hh = rows - n_uf - n_orca
    make_dataset(folder / "uf.parquet", n_uf, seed)
    rng = np.random.default_rng(seed + 1)

    def texts(n: int, mean_words: float, tag: str) -> list[str]:
        return random_texts(rng, n, mean_words, tag)

    q = texts(n_orca, 60, "q")
    systems = np.where(rng.random(n_orca) < 0.5, "", "You are an AI assistant.")
    pq.write_table(
        pa.table(
            {
                "system": systems.tolist(),
                "question": q,
                "chosen": texts(n_orca, 150, "c"),
                "rejected": texts(n_orca, 120, "r"),
                "delta_score": rng.integers(0, 10, n_orca).astype(float),
            }
        ),
        folder / "orca.parquet",
    )
    prompts, good, bad = texts(n_hh, 40, "h"), texts(n_hh, 100, "g"), texts(n_hh, 80, "b")
    msg = lambda role, t: [{"content": t, "role": role}]  # noqa: E731
    pq.write_table(
        pa.table(
            {
                "prompt": pa.array([msg("user", p) for p in prompts]),
                "chosen": pa.array([msg("assistant", t) for t in good]),
                "rejected": pa.array([msg("assistant", t) for t in bad]),
            }
        ),
        folder / "hh.parquet",
    )


def run_prefkit_mix(src: Path, out: Path, top: int) -> None:
    from prefkit import build

    specs = [f"{src / 'uf.parquet'}:0.5", f"{src / 'orca.parquet'}:60000", f"{src / 'hh.parquet'}:2.0"]
    build(specs, out, dedup=True, test_size=0.05, seed=0)


def run_recipe_mix(src: Path, out: Path, top: int) -> None:
    """What people write by hand: per-source map to one shape, filter, weighted sample, concat, dedup, split."""
    import datasets

    load = lambda name: datasets.load_dataset("parquet", data_files=str(src / name), split="train")  # noqa: E731

    def from_uf(ex):
        return {
            "prompt": ex["chosen"][:-1],
            "chosen": ex["chosen"][-1:],
            "rejected": ex["rejected"][-1:],
            "margin": ex["score_chosen"] - ex["score_rejected"],
        }

    def from_orca(ex):
        prompt = [{"role": "user", "content": ex["question"]}]
        if ex["system"]:
            prompt = [{"role": "system", "content": ex["system"]}, *prompt]
        return {
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": ex["chosen"]}],
            "rejected": [{"role": "assistant", "content": ex["rejected"]}],
            "margin": ex["delta_score"],
        }

    def from_hh(ex):
        return {"margin": None}

    def keep(ex):
        same = " ".join(ex["chosen"][0]["content"].split()) == " ".join(ex["rejected"][0]["content"].split())
        return ex["margin"] != 0 and not same

    uf = load("uf.parquet").map(
        from_uf, remove_columns=["prompt_id", "messages", "score_chosen", "score_rejected"]
    )
    orca = load("orca.parquet").map(from_orca, remove_columns=["system", "question", "delta_score"])
    hh = load("hh.parquet").map(from_hh).cast(uf.features)
    parts = []
    for ds, kind, value in ((uf, "fraction", 0.5), (orca, "rows", 60000), (hh, "upsample", 2.0)):
        ds = ds.filter(keep)
        if kind == "fraction":
            ds = ds.shuffle(seed=0).select(range(int(len(ds) * value)))
        elif kind == "rows":
            ds = ds.shuffle(seed=0).select(range(min(int(value), len(ds))))
        else:
            import numpy as np

            extra = np.random.default_rng(0).integers(0, len(ds), int((value - 1) * len(ds)))
            ds = datasets.concatenate_datasets([ds, ds.select(extra)])
        parts.append(ds)
    mixed = datasets.concatenate_datasets(parts)
    seen: set[int] = set()

    def first_time(ex):
        key = hash((str(ex["prompt"]), str(ex["chosen"]), str(ex["rejected"])))
        if key in seen:
            return False
        seen.add(key)
        return True

    mixed = mixed.filter(first_time)
    split = mixed.train_test_split(test_size=0.05, seed=0)
    out.mkdir(parents=True, exist_ok=True)
    for name, ds in split.items():
        ds.to_parquet(str(out / f"{name}.parquet"))


SIDES = {"prefkit": None, "recipe": None, "prefkit-mix": run_prefkit_mix, "recipe-mix": run_recipe_mix}


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
        lambda ex: (
            ex["margin"] != 0
            and " ".join(ex["chosen"][0]["content"].split()) != " ".join(ex["rejected"][0]["content"].split())
        )
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
        runner = {"prefkit": run_prefkit, "recipe": run_recipe}.get(side) or SIDES[side]
        runner(src, work / "out", top)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peak = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak}))


def measure(side: str, src: Path, top: int) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--src", str(src), "--top", str(top)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mix", action="store_true", help="the 3-source mix case (default --rows 300000)")
    parser.add_argument("--child", choices=list(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.src, args.top)
        return
    if args.mix:
        main_mix(300_000 if args.rows == 100_000 else args.rows, args.repeats)
        return

    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        src = Path(tmp) / "uf.parquet"
        t = time.perf_counter()
        make_dataset(src, args.rows)
        print(
            f"data: {args.rows:,} rows, {src.stat().st_size / 1e6:.0f} MB parquet (made in {time.perf_counter() - t:.1f}s)"
        )
        results: dict[str, list[dict]] = {"prefkit": [], "recipe": []}
        for i in range(args.repeats):
            order = ("prefkit", "recipe") if i % 2 == 0 else ("recipe", "prefkit")  # interleave
            for side in order:
                r = measure(side, src, args.top)
                results[side].append(r)
                print(
                    f"  run {i + 1} {side:<8} {r['seconds']:7.2f} s  peak RSS {r['peak_rss_mb']:7.0f} MB",
                    flush=True,
                )
    med = {s: statistics.median(r["seconds"] for r in rs) for s, rs in results.items()}
    mem = {s: statistics.median(r["peak_rss_mb"] for r in rs) for s, rs in results.items()}
    print()
    print(f"{'side':<10}{'median s':>10}{'rows/s':>12}{'peak RSS MB':>14}")
    for side in ("prefkit", "recipe"):
        print(f"{side:<10}{med[side]:>10.2f}{args.rows / med[side]:>12,.0f}{mem[side]:>14,.0f}")
    print(
        f"\nprefkit is {med['recipe'] / med['prefkit']:.1f}x faster than the datasets recipe (target: >= 5x)"
    )
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")


def main_mix(rows: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-mix-") as tmp:
        src = Path(tmp) / "sources"
        t = time.perf_counter()
        make_mix_sources(src, rows)
        size = sum(p.stat().st_size for p in src.iterdir()) / 1e6
        print(
            f"data: 3 sources, {rows:,} rows in total, {size:.0f} MB parquet (made in {time.perf_counter() - t:.1f}s)"
        )
        results: dict[str, list[dict]] = {"prefkit-mix": [], "recipe-mix": []}
        for i in range(repeats):
            order = ("prefkit-mix", "recipe-mix") if i % 2 == 0 else ("recipe-mix", "prefkit-mix")
            for side in order:
                r = measure(side, src, 0)
                results[side].append(r)
                print(
                    f"  run {i + 1} {side:<12} {r['seconds']:7.2f} s  peak RSS {r['peak_rss_mb']:7.0f} MB",
                    flush=True,
                )
    med = {s: statistics.median(r["seconds"] for r in rs) for s, rs in results.items()}
    mem = {s: statistics.median(r["peak_rss_mb"] for r in rs) for s, rs in results.items()}
    print()
    print(f"{'side':<14}{'median s':>10}{'rows/s':>12}{'peak RSS MB':>14}")
    for side in results:
        print(f"{side:<14}{med[side]:>10.2f}{rows / med[side]:>12,.0f}{mem[side]:>14,.0f}")
    ratio = med["recipe-mix"] / med["prefkit-mix"]
    print(f"\nprefkit mix is {ratio:.1f}x faster than the datasets recipe (target: >= 5x)")
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
