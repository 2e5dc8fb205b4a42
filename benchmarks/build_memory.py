"""Benchmark: memory and time of `prefkit build` against the hand-written `datasets` recipe, from 100k to 2M rows.

Data: N rows shaped like HuggingFaceH4/ultrafeedback_binarized, implicit messages (a `prompt` string, its `prompt_id`,
`chosen` / `rejected` = [user, assistant] message lists, `score_chosen` / `score_rejected`), made in code with a fixed seed
(lognormal text lengths, ~1 % ties, ~0.5 % identical pairs), written in row groups of 50k rows. 2M rows are about
2.8 GB of parquet. Generated files are cached (default: prefkit-build-memory/ in the system's temporary folder, `--data-dir`): making 2M rows
takes a few minutes.

Two cases per size:

* ``top``: `build(src, out, top=2000)` vs the recipe load_dataset("parquet") -> map (prompt from the message
  lists, margin) -> filter (ties, identical answers) -> sort -> select(range(2000)) -> to_parquet;
* ``all``: `build(src, out)` (every valid row kept and written) vs the same recipe without sort/select.

Each measurement runs in a fresh subprocess (imports included; its own peak RSS, ``VmHWM``, which counts the
pages of memory-mapped files it touched, as the `datasets` side's Arrow cache is), with a fresh `datasets` cache.
The sides are interleaved and repeated; medians are reported, with the ratio recipe / prefkit.

    python benchmarks/build_memory.py                                  # 100k, 500k, 1M, 2M; 3 repeats
    python benchmarks/build_memory.py --sizes 2000000 --cases top --repeats 1
    python benchmarks/build_memory.py --make-only                      # only generate the cached files
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthetic import peak_rss_mb, random_texts, uf_conversations

DATA_DIR = Path(tempfile.gettempdir()) / "prefkit-build-memory"
SIZES = (100_000, 500_000, 1_000_000, 2_000_000)
CHUNK = 50_000


def make_dataset(path: Path, rows: int, seed: int = 0) -> None:
    """UltraFeedback-binarized-shaped parquet written chunk by chunk (bounded memory), one row group a chunk."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)

    def texts(n: int, mean_words: float) -> list[str]:
        return random_texts(rng, n, mean_words)

    message = pa.struct([("content", pa.string()), ("role", pa.string())])
    schema = pa.schema(
        [
            ("prompt", pa.string()),
            ("prompt_id", pa.string()),
            ("chosen", pa.list_(message)),
            ("rejected", pa.list_(message)),
            ("score_chosen", pa.float64()),
            ("score_rejected", pa.float64()),
        ]
    )

    conv = uf_conversations

    tmp = path.with_name(path.name + ".part")
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            prompts, good, bad = texts(n, 60), texts(n, 190), texts(n, 160)
            ids = [f"{(start + i) * 0x9E3779B97F4A7C15 % 2**256:064x}" for i in range(n)]
            identical = rng.random(n) < 0.005
            bad = [g if same else b for g, b, same in zip(good, bad, identical, strict=True)]
            sc = rng.integers(1, 11, n).astype(float)
            sr = np.where(rng.random(n) < 0.01, sc, np.maximum(sc - rng.integers(1, 6, n), 1.0))
            table = pa.table(
                [
                    pa.array(prompts),
                    pa.array(ids),
                    conv(prompts, good),
                    conv(prompts, bad),
                    pa.array(sc),
                    pa.array(sr),
                ],
                schema=schema,
            )
            writer.write_table(table)
    tmp.replace(path)


def dataset(rows: int, data_dir: Path) -> Path:
    """The cached file of ``rows`` rows (made when missing)."""
    path = data_dir / f"uf-{rows}.parquet"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        make_dataset(path, rows)
        print(
            f"made {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s", flush=True
        )
    return path


def run_prefkit(src: Path, out: Path, top: int | None) -> None:
    from prefkit import build

    build(src, out, top=top)


def run_recipe(src: Path, out: Path, top: int | None) -> None:
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(src), split="train")

    def to_pair(ex):
        return {
            "prompt": ex["chosen"][:-1],
            "chosen": ex["chosen"][-1:],
            "rejected": ex["rejected"][-1:],
            "margin": ex["score_chosen"] - ex["score_rejected"],
        }

    ds = ds.map(to_pair)
    ds = ds.filter(
        lambda ex: (
            ex["margin"] != 0
            and " ".join(ex["chosen"][0]["content"].split()) != " ".join(ex["rejected"][0]["content"].split())
        )
    )
    if top is not None:
        ds = ds.sort("margin", reverse=True)
        ds = ds.select(range(min(top, len(ds))))
    out.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(out / "train.parquet"))


def child(side: str, src: Path, top: int | None, work_dir: Path) -> None:
    """One measurement, in its own process: prints {"seconds", "peak_rss_mb", "kept"} as JSON."""
    work = Path(tempfile.mkdtemp(prefix=f"bench-{side}-", dir=work_dir))
    os.environ["HF_DATASETS_CACHE"] = str(work / "cache")  # a fresh cache: no reuse between runs
    try:
        start = time.perf_counter()
        (run_prefkit if side == "prefkit" else run_recipe)(src, work / "out", top)
        seconds = time.perf_counter() - start
        import pyarrow.parquet as pq

        kept = sum(
            pq.read_metadata(p).num_rows
            for p in (work / "out").rglob("*.parquet")
            if "rejects" not in p.parts
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peak = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "kept": kept}))


def measure(side: str, src: Path, top: int | None, work_dir: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--src", str(src), "--work-dir", str(work_dir)]
    cmd += ["--top", str(top) if top is not None else "none"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-3000:])
        return {"seconds": float("nan"), "peak_rss_mb": float("nan"), "kept": None, "failed": True}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs ({model}), {memory:.0f} GiB RAM, python {sys.version.split()[0]}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="row counts, comma-separated")
    parser.add_argument("--cases", default="top,all", help="top (--top 2000) and/or all (no selection)")
    parser.add_argument("--top", type=lambda v: None if v == "none" else int(v), default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where generated files are cached")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="where outputs and caches go (default: data dir)"
    )
    parser.add_argument("--make-only", action="store_true", help="only generate the data files")
    parser.add_argument("--child", choices=("prefkit", "recipe"), help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work_dir = args.work_dir or args.data_dir
    if args.child:
        child(args.child, args.src, args.top, work_dir)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    cases = args.cases.split(",")
    files = {n: dataset(n, args.data_dir) for n in sizes}
    if args.make_only:
        return
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at start", flush=True)
    table = []
    for n in sizes:
        for case in cases:
            top = args.top if case == "top" else None
            results: dict[str, list[dict]] = {"prefkit": [], "recipe": []}
            for i in range(args.repeats):
                order = ("prefkit", "recipe") if i % 2 == 0 else ("recipe", "prefkit")  # interleave
                for side in order:
                    r = measure(side, files[n], top, work_dir)
                    results[side].append(r)
                    print(
                        f"  {n:>9,} {case:<4} run {i + 1} {side:<8} {r['seconds']:8.2f} s  "
                        f"peak RSS {r['peak_rss_mb']:7.0f} MB  kept {r['kept']}",
                        flush=True,
                    )
            med = {s: statistics.median(r["seconds"] for r in rs) for s, rs in results.items()}
            mem = {s: statistics.median(r["peak_rss_mb"] for r in rs) for s, rs in results.items()}
            table.append((n, case, med, mem, files[n].stat().st_size))
    print(f"\nmachine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end")
    print(
        "| rows | parquet | case | prefkit s | recipe s | ratio | prefkit peak RSS MB | recipe peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n, case, med, mem, size in table:
        label = f"--top {args.top}" if case == "top" else "everything kept"
        print(
            f"| {n:,} | {size / 1e9:.2f} GB | {label} | {med['prefkit']:.1f} | {med['recipe']:.1f} | "
            f"{med['recipe'] / med['prefkit']:.1f}× | {mem['prefkit']:,.0f} | {mem['recipe']:,.0f} |"
        )


if __name__ == "__main__":
    main()
