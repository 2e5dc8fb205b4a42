"""Benchmark: prefkit's near-dedup (rensa MinHash + numpy LSH) vs the hand-written datasketch recipe, one run.

Data: N preference pairs (default 100k) shaped like UltraFeedback-binarized rows (a user prompt of 50-300
words, chosen and rejected answers of 100-400 words), made in code with a fixed seed from a Zipf-distributed
vocabulary of 20,000 made-up words, with sentence punctuation. Planted truth:

* ~8 % of rows are near-duplicates of an earlier base row: the same three texts with case, punctuation and
  whitespace changed and 0-5 words substituted in total (each substitution changes at most 3 of the >= 250
  shingles, so the true Jaccard similarity is >= 0.88); all should be dropped, the base row kept;
* ~5 % of rows reuse an earlier row's prompt with new answers (a second pair for the same prompt): not
  near-duplicate pairs, so a tool that drops them loses precision.

Both sides use the same rule: words = maximal runs of word characters of the lower-cased text, 3-word shingles
per section (prompt / chosen / rejected, a shingle tagged with its section), 128 permutations, threshold 0.8,
LSH candidates verified by estimated Jaccard >= 0.8, union-find, first row of each cluster kept. datasketch:
``MinHash.update_batch`` + ``MinHashLSH(threshold, num_perm)`` (its own band choice) + ``query``, the recipe
of its documentation. prefkit: ``near_dedup_reasons(df, mode="pair")`` on the polars frame.

Each measurement is a fresh subprocess (imports, its own peak RSS: ``VmHWM``); the two sides are
interleaved and repeated, medians reported. Timed: from the loaded data (a polars frame for prefkit, Python
lists of strings for datasketch) to the set of dropped rows.

    python benchmarks/near_dedup_vs_datasketch.py                  # 100k rows, 3 repeats
    python benchmarks/near_dedup_vs_datasketch.py --rows 20000 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEED = 0


def _vocabulary(size: int, rng: np.random.Generator) -> np.ndarray:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(2, 10, size)
    words = {"".join(rng.choice(letters, n)) for n in lengths}
    return np.array(sorted(words))


def _render(words: np.ndarray, rng: np.random.Generator, noisy: bool) -> str:
    """Words to text with sentence punctuation; ``noisy``: random case, punctuation and whitespace changes."""
    out = words.astype(object)
    ends = rng.random(len(out)) < 1 / 14
    out[ends] = out[ends] + "."
    if noisy:
        upper = rng.random(len(out)) < 0.1
        out[upper] = [w.upper() for w in out[upper]]
        comma = rng.random(len(out)) < 0.05
        out[comma] = out[comma] + ","
    sep = " " if not noisy else rng.choice(np.array([" ", " ", " ", "  ", "\n", " - "]), len(out))
    text = "".join(np.char.add(out.astype(str), sep)) if noisy else " ".join(out)
    return text[:1].upper() + text[1:]


def make_data(path: Path, rows: int, seed: int = SEED) -> np.ndarray:
    """Write the benchmark parquet; return the planted base row of each row (-1 for rows to keep)."""
    import polars as pl

    rng = np.random.default_rng(seed)
    vocab = _vocabulary(20_000, rng)

    def take(n: int) -> np.ndarray:  # Zipf word frequencies, the tail folded back into the vocabulary
        return vocab[(rng.zipf(1.15, n) - 1) % len(vocab)]

    sections: list[list[np.ndarray]] = []
    base = np.full(rows, -1, dtype=np.int64)
    kind = rng.random(rows)
    for i in range(rows):
        if i > 10 and kind[i] < 0.08:  # planted near-duplicate of an earlier non-duplicate row
            b = int(rng.integers(0, i))
            while base[b] >= 0:
                b = int(rng.integers(0, i))
            copy = [s.copy() for s in sections[b]]
            for _ in range(int(rng.integers(0, 6))):
                s = copy[int(rng.integers(0, 3))]
                s[int(rng.integers(0, len(s)))] = vocab[int(rng.integers(0, len(vocab)))]
            sections.append(copy)
            base[i] = b
        elif i > 10 and kind[i] < 0.13:  # same prompt as an earlier row, new answers: not a duplicate pair
            b = int(rng.integers(0, i))
            sections.append(
                [sections[b][0], take(int(rng.integers(100, 401))), take(int(rng.integers(100, 401)))]
            )
        else:
            lengths = (int(rng.integers(50, 301)), int(rng.integers(100, 401)), int(rng.integers(100, 401)))
            sections.append([take(n) for n in lengths])
    noisy = base >= 0
    texts = [[_render(s, rng, bool(noisy[i])) for s in sec] for i, sec in enumerate(sections)]

    def messages(role: str, k: int) -> list[list[dict]]:
        return [[{"role": role, "content": t[k]}] for t in texts]

    pl.DataFrame(
        {
            "prompt": messages("user", 0),
            "chosen": messages("assistant", 1),
            "rejected": messages("assistant", 2),
            "margin": rng.random(rows),
            "stage": ["kept"] * rows,
        }
    ).write_parquet(path)
    return base


def _status_mib(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc, in MiB. (``ru_maxrss`` would not do: on
    Linux it survives fork + exec, so a child would report the parent's peak if that was higher.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mib() -> float:
    return _status_mib("VmRSS")


def side_prefkit(data: Path, args: argparse.Namespace) -> tuple[float, np.ndarray, float]:
    import polars as pl

    from prefkit.select.near_dedup import near_dedup_reasons

    df = pl.read_parquet(data)
    loaded = _rss_mib()
    start = time.perf_counter()
    out = near_dedup_reasons(
        df, mode="pair", threshold=args.threshold, num_perm=args.num_perm, shingle=args.shingle
    )
    return time.perf_counter() - start, out["_row"].to_numpy(), loaded


def datasketch_dedup(
    sections: list[list[str]], threshold: float, num_perm: int, shingle: int, seed: int = 1
) -> list[int]:
    """The hand-written recipe: per row MinHash of section-tagged word shingles, MinHashLSH, query, verify."""
    from datasketch import MinHash, MinHashLSH

    word = re.compile(r"\w+")
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    hashes = []
    for i, texts in enumerate(sections):
        tokens = set()
        for s, text in enumerate(texts):
            w = word.findall(text.lower())
            grams = [" ".join(w[k : k + shingle]) for k in range(len(w) - shingle + 1)] or (
                [" ".join(w)] if w else []
            )
            tokens.update(f"{s}|{g}".encode() for g in grams)
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch(list(tokens))
        lsh.insert(i, m)
        hashes.append(m)
    parent = list(range(len(sections)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j != i and m.jaccard(hashes[j]) >= threshold:
                a, b = find(i), find(j)
                parent[max(a, b)] = min(a, b)
    return [i for i in range(len(sections)) if find(i) != i]


def side_datasketch(data: Path, args: argparse.Namespace) -> tuple[float, np.ndarray, float]:
    import polars as pl

    df = pl.read_parquet(data)
    cols = [
        df[c].list.eval(pl.element().struct.field("content")).list.join("\n").to_list()
        for c in ("prompt", "chosen", "rejected")
    ]
    sections = [list(t) for t in zip(*cols, strict=True)]
    del df, cols
    loaded = _rss_mib()
    start = time.perf_counter()
    dropped = datasketch_dedup(sections, args.threshold, args.num_perm, args.shingle)
    return time.perf_counter() - start, np.array(dropped, dtype=np.int64), loaded


def child(args: argparse.Namespace) -> None:
    run = side_prefkit if args.side == "prefkit" else side_datasketch
    seconds, dropped, loaded = run(Path(args.data), args)
    np.save(args.out + ".npy", dropped)
    peak = _status_mib("VmHWM")
    Path(args.out).write_text(json.dumps({"seconds": seconds, "peak_mib": peak, "loaded_mib": loaded}))


def measure(side: str, data: Path, work: Path, args: argparse.Namespace) -> dict:
    out = work / f"{side}.json"
    cmd = [sys.executable, __file__, "--child", side, "--data", str(data), "--out", str(out)]
    cmd += [
        "--threshold",
        str(args.threshold),
        "--num-perm",
        str(args.num_perm),
        "--shingle",
        str(args.shingle),
    ]
    subprocess.run(cmd, check=True, env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    result = json.loads(out.read_text())
    result["dropped"] = np.load(str(out) + ".npy")
    return result


def scores(dropped: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    planted = set(np.flatnonzero(truth >= 0).tolist())
    found = set(dropped.tolist())
    hit = len(planted & found)
    return hit / max(len(planted), 1), (hit / len(found) if found else 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--shingle", type=int, default=3)
    parser.add_argument("--child", dest="side", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return child(args)

    with tempfile.TemporaryDirectory(prefix="prefkit-neardedup-") as tmp:
        work = Path(tmp)
        data = work / "pairs.parquet"
        t = time.perf_counter()
        truth = make_data(data, args.rows)
        print(
            f"data: {args.rows} rows, {int((truth >= 0).sum())} planted near-duplicates "
            f"({time.perf_counter() - t:.1f} s to make)",
            flush=True,
        )
        runs: dict[str, list[dict]] = {"prefkit": [], "datasketch": []}
        for rep in range(args.repeats):
            order = ["prefkit", "datasketch"] if rep % 2 == 0 else ["datasketch", "prefkit"]
            for side in order:
                r = measure(side, data, work, args)
                runs[side].append(r)
                rec, prec = scores(r["dropped"], truth)
                print(
                    f"  run {rep + 1} {side:10s} {r['seconds']:7.2f} s  peak RSS {r['peak_mib']:6.0f} MiB "
                    f"(after load {r['loaded_mib']:5.0f})  recall {rec:.4f}  precision {prec:.4f}",
                    flush=True,
                )
    summary = {}
    for side, rs in runs.items():
        rec, prec = scores(rs[0]["dropped"], truth)
        summary[side] = {
            "seconds": statistics.median(r["seconds"] for r in rs),
            "peak_mib": statistics.median(r["peak_mib"] for r in rs),
            "loaded_mib": statistics.median(r["loaded_mib"] for r in rs),
            "recall": rec,
            "precision": prec,
        }
    p, d = summary["prefkit"], summary["datasketch"]
    speedup = d["seconds"] / p["seconds"]
    print(f"\n{'side':10s} {'median s':>9s} {'rows/s':>9s} {'peak MiB':>9s} {'recall':>7s} {'precision':>9s}")
    for side, s in summary.items():
        print(
            f"{side:10s} {s['seconds']:9.2f} {args.rows / s['seconds']:9.0f} {s['peak_mib']:9.0f} "
            f"{s['recall']:7.4f} {s['precision']:9.4f}"
        )
    print(
        f"SUMMARY near-dedup {args.rows} rows x{args.repeats}: prefkit {p['seconds']:.2f} s vs datasketch "
        f"{d['seconds']:.2f} s ({speedup:.1f}x throughput), recall {p['recall']:.4f} vs {d['recall']:.4f}, "
        f"precision {p['precision']:.4f} vs {d['precision']:.4f}, peak RSS {p['peak_mib']:.0f} vs "
        f"{d['peak_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
