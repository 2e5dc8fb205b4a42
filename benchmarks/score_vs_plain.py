"""Reward-model scores: `prefkit score` vs the recipe people write, on the same pairs and model, in one run.

The pairs (built in code: prompts of about 100-400 tokens, answers of about 50-300, a third multi-turn) are
written as a prefkit set; the model is a random-weight ``LlamaForSequenceClassification`` (``num_labels=1``; hidden
384, 6 layers, ~12M parameters, so compute dominates). Each measurement runs in its own child process (clean
peak-RSS figure read from ``ru_maxrss``, nothing warm shared), the two sides interleaved (prefkit, plain,
prefkit, ...) because the machine is shared and noisy; medians are reported.

* **prefkit**: ``prefkit.score(copy_of_set, model, device="cpu")`` — the whole job: model load, engine self-test,
  tokenization, scoring, merge into the set, audit.
* **plain**: ``AutoModelForSequenceClassification`` + ``AutoTokenizer``; every ``prompt + answer`` rendered with
  ``apply_chat_template(tokenize=False)``, batches of 8 texts in row order, ``tokenizer(batch, padding=True,
  add_special_tokens=False)`` (the template writes BOS), one ``model(**batch).logits[:, 0]`` per batch under
  ``torch.no_grad()``. Model load included, as on the prefkit side.

    python benchmarks/score_vs_plain.py                      # 192 pairs, 3 interleaved repeats
    python benchmarks/score_vs_plain.py --pairs 32 --repeats 1 --small   # smoke run

Prints wall and CPU times, the speed ratios of the medians, the tokens each side runs through the model, peak RSS
of each side and the largest difference between the values; ``--json PATH`` saves them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = dict(
    reward=True,
    vocab_size=4096,
    hidden_size=384,
    num_layers=6,
    num_heads=6,
    num_kv_heads=2,
    intermediate_size=1024,
    initializer_range=0.02,
)
SMALL = dict(reward=True, vocab_size=1024, hidden_size=64, num_layers=2, intermediate_size=128)


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """Message rows with a source margin; word counts chosen for ~100-400 prompt and ~50-300 answer tokens."""
    from tests.tinymodel import random_text

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.randint(75, 300)
        prompt = []
        if i % 3 == 0:  # multi-turn: the same prompt budget spread over three messages
            prompt += [
                {"role": "user", "content": random_text(rng, words // 3)},
                {"role": "assistant", "content": random_text(rng, words // 3)},
            ]
            words //= 3
        prompt.append({"role": "user", "content": random_text(rng, words)})
        rows.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": random_text(rng, rng.randint(38, 225))}],
                "rejected": [{"role": "assistant", "content": random_text(rng, rng.randint(38, 225))}],
                "score_chosen": float(rng.randint(6, 10)),
                "score_rejected": float(rng.randint(1, 5)),
            }
        )
    return rows


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process: steadier than wall time on a shared machine."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _warm_imports() -> None:
    """torch and transformers imported before either side's clock starts (the same for both)."""
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: F401


def phase_prefkit(work: Path) -> dict:
    import pyarrow.parquet as pq

    import prefkit

    _warm_imports()
    target = work / f"set-{time.time_ns()}"
    shutil.copytree(work / "set", target)
    c0, t0 = _cpu_s(), time.perf_counter()
    summary = prefkit.score(target, str(work / "model"), device="cpu", dtype="float32")
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    table = pq.read_table(sorted((target / "data").glob("*.parquet"))[0])
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "score_s": summary["scoring_seconds"],
        "peak_rss_mib": _peak_rss_mib(),
        "chosen": table.column("rm_chosen").to_pylist(),
        "rejected": table.column("rm_rejected").to_pylist(),
        "tokens": summary["tokens"],
        "forward_tokens": summary["forward_tokens"],
        "scored": summary["scored"],
        "agree_fraction": summary["audit"]["totals"]["agree_fraction"],
    }


def phase_plain(work: Path) -> dict:
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _warm_imports()
    rows = pq.read_table(sorted((work / "set" / "data").glob("*.parquet"))[0]).to_pylist()
    c0, t0 = _cpu_s(), time.perf_counter()
    tok = AutoTokenizer.from_pretrained(work / "model")
    model = AutoModelForSequenceClassification.from_pretrained(work / "model", dtype=torch.float32).eval()
    t1 = time.perf_counter()
    texts = [
        tok.apply_chat_template(row["prompt"] + row[key], tokenize=False)
        for row in rows
        for key in ("chosen", "rejected")
    ]
    scores, padded = [], 0
    with torch.no_grad():
        for i in range(0, len(texts), 8):
            batch = tok(texts[i : i + 8], padding=True, add_special_tokens=False, return_tensors="pt")
            padded += batch["input_ids"].numel()
            scores += model(**batch).logits[:, 0].float().tolist()
    end = time.perf_counter()
    return {
        "wall_s": end - t0,
        "cpu_s": _cpu_s() - c0,
        "score_s": end - t1,
        "peak_rss_mib": _peak_rss_mib(),
        "chosen": scores[0::2],
        "rejected": scores[1::2],
        "padded_tokens": padded,
    }


def run_child(phase: str, work: Path, policy: str) -> dict:
    out = work / f"{phase}-{time.time_ns()}.json"
    cmd = [sys.executable, __file__, "--child", phase, "--work", str(work), "--child-out", str(out)]
    env = {**os.environ, "TQDM_DISABLE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    if policy:  # the same for both sides; set before torch starts OpenMP
        env["OMP_WAIT_POLICY"] = policy
    subprocess.run(cmd, check=True, env=env, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def _machine() -> str:
    import platform

    import torch

    name = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next(
            line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return f"{os.cpu_count()} CPUs ({name}), Python {platform.python_version()}, torch {torch.__version__}"


def _compare(pk: dict, pl: dict) -> dict:
    import numpy as np

    ours = np.array(pk["chosen"] + pk["rejected"], dtype=np.float64)
    theirs = np.array(pl["chosen"] + pl["rejected"], dtype=np.float64)
    diff = np.abs(ours - theirs)
    return {
        "max_abs_diff": float(diff.max()),
        "max_rel_diff": float((diff / np.maximum(np.abs(theirs), 1e-12)).max()),
        "allclose_rtol_1e-4": bool(np.allclose(ours, theirs, rtol=1e-4, atol=1e-6)),
        "value_range": [float(theirs.min()), float(theirs.max())],
    }


def _prepare(work: Path, pairs: int, seed: int, small: bool) -> None:
    from prefkit import build
    from tests.tinymodel import make_tiny_model

    make_tiny_model(work / "model", seed=seed, **(SMALL if small else MODEL))
    source = work / "source.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in make_rows(pairs, seed)))
    build(str(source), work / "set")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=192)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs of each side; medians reported")
    ap.add_argument("--small", action="store_true", help="a tiny model (smoke run)")
    ap.add_argument(
        "--omp-wait-policy", default="PASSIVE", help="OMP_WAIT_POLICY for both sides ('' keeps it)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--child", choices=["prefkit", "plain"], help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        result = (phase_prefkit if a.child == "prefkit" else phase_plain)(a.work)
        a.child_out.write_text(json.dumps(result))
        return

    runs: dict[str, list[dict]] = {"prefkit": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="prefkit-score-bench-") as tmp:
        work = Path(tmp)
        _prepare(work, a.pairs, a.seed, a.small)
        for r in range(a.repeats):
            for side in ("prefkit", "plain"):
                runs[side].append(run_child(side, work, a.omp_wait_policy))
                print(f"{side} run {r + 1}: {runs[side][-1]['wall_s']:.1f} s", file=sys.stderr)
    med = {k: statistics.median(x["wall_s"] for x in v) for k, v in runs.items()}
    med_score = {k: statistics.median(x["score_s"] for x in v) for k, v in runs.items()}
    med_cpu = {k: statistics.median(x["cpu_s"] for x in v) for k, v in runs.items()}
    pk, pl = runs["prefkit"][0], runs["plain"][0]
    res = {
        "machine": _machine(),
        "omp_wait_policy": a.omp_wait_policy or os.environ.get("OMP_WAIT_POLICY"),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "pairs": a.pairs,
        "scored": pk["scored"],
        "text_tokens": pk["tokens"],
        "prefkit_forward_tokens": pk["forward_tokens"],
        "plain_padded_tokens": pl["padded_tokens"],
        "prefkit_wall_s": [round(x["wall_s"], 2) for x in runs["prefkit"]],
        "plain_wall_s": [round(x["wall_s"], 2) for x in runs["plain"]],
        "prefkit_scoring_s": [round(x["score_s"], 2) for x in runs["prefkit"]],
        "plain_scoring_s": [round(x["score_s"], 2) for x in runs["plain"]],
        "speedup_median_wall": round(med["plain"] / med["prefkit"], 2),
        "speedup_median_scoring": round(med_score["plain"] / med_score["prefkit"], 2),
        "prefkit_cpu_s": [round(x["cpu_s"], 2) for x in runs["prefkit"]],
        "plain_cpu_s": [round(x["cpu_s"], 2) for x in runs["plain"]],
        "speedup_median_cpu_time": round(med_cpu["plain"] / med_cpu["prefkit"], 2),
        "token_ratio_plain_over_prefkit": round(pl["padded_tokens"] / pk["forward_tokens"], 2),
        "prefkit_peak_rss_mib": round(max(x["peak_rss_mib"] for x in runs["prefkit"])),
        "plain_peak_rss_mib": round(max(x["peak_rss_mib"] for x in runs["plain"])),
        **_compare(pk, pl),
    }
    for k, v in res.items():
        print(f"{k:>24}: {v}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
