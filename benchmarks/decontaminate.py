"""Benchmark: decontamination of N preference rows (default 100k) against M eval items (default 10k), one run.

Data, made in code with a fixed seed from a Zipf-distributed vocabulary of 20,000 made-up words:

* eval items: 72 % long (13-80 words), 20 % mid-length (8-12 words), 8 % short (3-7 words); 30 % of the long
  ones start with one of 5 instruction templates of 15 words (benchmark boilerplate, each in > 10 items);
* rows: a user prompt of 50-300 words (lognormal) and short answers;
* planted contaminations (3 % of rows): a whole eval item, changed in case, punctuation and whitespace,
  embedded between 0-100 random words; a short item is planted as a turn of its own (the rule for items under
  8 words);
* hard clean rows (10 %): a boilerplate template plus random text, a 12-word run of a long item (one word
  short of the 13-gram rule), or a short item inside a longer sentence. None of these may be flagged.

Targets: >= 95 % of planted rows caught, < 0.1 % of clean rows flagged, < 10 s for index + scan. Timed in
process, repeated (the machine is noisy: medians); peak RSS is ``VmHWM``.

    python benchmarks/decontaminate.py                 # 100k rows, 10k items, 3 repeats
    python benchmarks/decontaminate.py --rows 20000 --items 2000 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import polars as pl

SEED = 0


def _vocabulary(size: int, rng: np.random.Generator) -> np.ndarray:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return np.array(sorted({"".join(rng.choice(letters, n)) for n in rng.integers(2, 10, size)}))


def _garble(text: str, rng: np.random.Generator) -> str:
    """Same words: random case, punctuation and whitespace."""
    out = []
    for w in text.split():
        r = rng.random()
        out.append(w.upper() if r < 0.15 else w.capitalize() if r < 0.3 else w)
        out.append(rng.choice([" ", " ", " ", "  ", ", ", "\n", " -- ", "... "]))
    return "".join(out).strip()


def make_data(
    rows: int, items: int, seed: int = SEED
) -> tuple[pl.DataFrame, list[str], np.ndarray, np.ndarray]:
    """(frame, eval items, planted item per row or -1, hard-negative flag per row)."""
    rng = np.random.default_rng(seed)
    vocab = _vocabulary(20_000, rng)

    def text(n: int) -> str:
        return " ".join(vocab[(rng.zipf(1.15, n) - 1) % len(vocab)])

    templates = [text(15).capitalize() + "." for _ in range(5)]
    kind = rng.random(items)
    evalset = []
    for k in kind:
        if k < 0.08:
            evalset.append(text(int(rng.integers(3, 8))).capitalize() + "?")
        elif k < 0.28:
            evalset.append(text(int(rng.integers(8, 13))).capitalize() + ".")
        else:
            body = text(int(np.clip(rng.lognormal(np.log(30), 0.5), 13, 80))).capitalize() + "."
            evalset.append(f"{templates[int(rng.integers(0, 5))]} {body}" if rng.random() < 0.3 else body)
    lengths = np.array([len(e.split()) for e in evalset])
    long_items = np.flatnonzero(lengths >= 13)
    short_items = np.flatnonzero(lengths < 8)

    planted = np.full(rows, -1, dtype=np.int64)
    hard = np.zeros(rows, dtype=bool)
    prompts = []
    roll = rng.random(rows)
    for i in range(rows):
        size = int(np.clip(rng.lognormal(np.log(120), 0.5), 50, 300))
        turns = [text(size)]
        if roll[i] < 0.03:
            item = int(rng.integers(0, items))
            planted[i] = item
            if lengths[item] < 8:
                turns = [text(size), _garble(evalset[item], rng)]
            else:
                before, after = text(int(rng.integers(0, 101))), text(int(rng.integers(0, 101)))
                turns = [f"{before} {_garble(evalset[item], rng)} {after}"]
        elif roll[i] < 0.13:
            hard[i] = True
            r = rng.random()
            if r < 0.4:
                turns = [f"{templates[int(rng.integers(0, 5))]} {text(size)}"]
            elif r < 0.8:
                words = evalset[int(rng.choice(long_items))].lower().replace(".", "").split()
                start = int(rng.integers(0, len(words) - 12 + 1))
                before, after = text(size // 2).split(), text(size // 2).split()
                # exactly 12 shared words: the neighbours must not extend the run to the item's 13th word
                while start > 0 and before[-1] == words[start - 1]:
                    before[-1] = text(1)
                while start + 12 < len(words) and after[0] == words[start + 12]:
                    after[0] = text(1)
                turns = [" ".join([*before, *words[start : start + 12], *after])]
            else:
                turns = [f"{text(20)} {evalset[int(rng.choice(short_items))]} {text(20)}"]
        prompts.append([{"role": "user", "content": t} for t in turns])
    answers = [[{"role": "assistant", "content": text(30)}] for _ in range(rows)]
    frame = pl.DataFrame(
        {"prompt": prompts, "chosen": answers, "rejected": answers, "stage": ["kept"] * rows}
    )
    return frame, evalset, planted, hard


def _peak_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from prefkit.select.decontaminate import build_index, decontaminate_reasons

    t = time.perf_counter()
    df, evalset, planted, hard = make_data(args.rows, args.items)
    words = df.select(
        pl.col("prompt").list.eval(pl.element().struct.field("content").str.split(" ").list.len()).list.sum()
    ).to_series()
    print(
        f"data: {args.rows} rows ({words.mean():.0f} prompt words on average), {args.items} eval items, "
        f"{int((planted >= 0).sum())} planted, {int(hard.sum())} hard clean rows "
        f"({time.perf_counter() - t:.1f} s to make)",
        flush=True,
    )
    base = _peak_mib()
    timings = []
    for rep in range(args.repeats):
        t0 = time.perf_counter()
        index = build_index({"bench": evalset})
        t1 = time.perf_counter()
        out = decontaminate_reasons(df, index)
        t2 = time.perf_counter()
        timings.append((t1 - t0, t2 - t1))
        print(
            f"  run {rep + 1}: index {t1 - t0:.2f} s ({len(index.ngram_keys)} n-grams, "
            f"{len(index.anchor_keys)} anchors), scan {t2 - t1:.2f} s, total {t2 - t0:.2f} s",
            flush=True,
        )
    flagged = np.zeros(args.rows, dtype=bool)
    flagged[out["_row"].to_numpy()] = True
    is_planted = planted >= 0
    caught = flagged[is_planted].mean()
    clean = ~is_planted
    false_rate = flagged[clean].mean()
    hard_false = int(flagged[hard].sum())
    right_item = (
        out.filter(pl.col("_row").is_in(np.flatnonzero(is_planted).tolist()))
        .select((pl.col("eval_index") == pl.Series(planted[is_planted])).mean())
        .item()
        if is_planted.any() and flagged[is_planted].all()
        else float("nan")
    )
    index_s = statistics.median(t[0] for t in timings)
    scan_s = statistics.median(t[1] for t in timings)
    total = statistics.median(t[0] + t[1] for t in timings)
    print(
        f"caught {caught:.4%} of planted, flagged {false_rate:.4%} of clean rows "
        f"({hard_false} of {int(hard.sum())} hard negatives), item identified right {right_item:.2%}"
    )
    print(f"peak RSS {_peak_mib():.0f} MiB (data alone {base:.0f} MiB)")
    ok = caught >= 0.95 and false_rate < 0.001 and total < 10
    print(
        f"SUMMARY decontaminate {args.rows} rows x {args.items} items: caught {caught:.2%}, clean flagged "
        f"{false_rate:.3%}, median {total:.2f} s (index {index_s:.2f} + scan {scan_s:.2f}), "
        f"{args.rows / scan_s:.0f} rows/s, targets {'met' if ok else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
