"""Generation: `prefkit generate` (transformers engine) vs a per-prompt ``model.generate`` loop, on the same
prompts and model, in one run.

The prompts (built in code: about 12-90 tokens, a third with a system turn) are written as a prompt-only JSONL
file; the model is a random-weight Llama built in code (hidden 256, 4 layers, vocab 4,096, about 9M parameters).
Both sides decode greedily (``temperature 0`` / ``do_sample=False``) for exactly ``--max-new-tokens`` tokens
(the random model does not stop early, so both generate the same number of tokens), and their completions are
compared. Each measurement is its own child process (peak RSS from ``ru_maxrss``), the sides interleaved
(prefkit, loop, prefkit, ...) because the machine is shared; medians are reported.

* **prefkit**: ``generate(prompts, out, [model], temperature=0, max_new_tokens=M, device="cpu")`` — the whole
  job: reading the prompts, model load and weight hash, rendering, batched left-padded generation (batches of
  32, bucketed by length), the merge into the set.
* **loop**: ``AutoModelForCausalLM`` + ``AutoTokenizer``; per prompt ``apply_chat_template(...,
  add_generation_prompt=True, return_tensors="pt", return_dict=True)`` and ``model.generate(**ids,
  max_new_tokens=M, do_sample=False)``. Model load included.

    python benchmarks/generate_vs_loop.py                          # 64 prompts, 128 new tokens, 3 repeats
    python benchmarks/generate_vs_loop.py --prompts 16 --repeats 1 # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = dict(
    vocab_size=4096, hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=768
)


def make_prompts(n: int, seed: int = 0) -> list[dict]:
    from tests.tinymodel import random_text

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        user = {"role": "user", "content": random_text(rng, rng.randint(8, 60))}
        system = [{"role": "system", "content": random_text(rng, 10)}] if i % 3 == 0 else []
        rows.append({"prompt": [*system, user]})
    return rows


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _warm_imports() -> None:
    import torch  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401


def phase_prefkit(work: Path, max_new: int) -> dict:
    import pyarrow.parquet as pq

    from prefkit.generate import generate

    _warm_imports()
    out = work / f"gen-{time.time_ns()}"
    c0, t0 = _cpu_s(), time.perf_counter()
    summary = generate(
        work / "prompts.jsonl",
        out,
        [str(work / "model")],
        temperature=0.0,
        max_new_tokens=max_new,
        device="cpu",
        dtype="float32",
    )
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    rows = pq.read_table(sorted((out / "data").glob("*.parquet"))[0]).to_pylist()
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "gen_s": summary["scoring_seconds"],
        "peak_rss_mib": _peak_rss_mib(),
        "tokens": summary["tokens"],
        "texts": [r["completions"][0]["response"] for r in rows],
    }


def phase_loop(work: Path, max_new: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _warm_imports()
    prompts = [json.loads(line)["prompt"] for line in (work / "prompts.jsonl").read_text().splitlines()]
    c0, t0 = _cpu_s(), time.perf_counter()
    tok = AutoTokenizer.from_pretrained(work / "model")
    model = AutoModelForCausalLM.from_pretrained(work / "model", dtype=torch.float32).eval()
    t1 = time.perf_counter()
    texts, tokens = [], 0
    with torch.no_grad():
        for prompt in prompts:
            ids = tok.apply_chat_template(
                prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            out = model.generate(**ids, max_new_tokens=max_new, do_sample=False)
            new = out[0, ids["input_ids"].shape[1] :].tolist()
            if tok.eos_token_id in new:
                new = new[: new.index(tok.eos_token_id) + 1]
            tokens += len(new)
            texts.append(tok.decode(new, skip_special_tokens=True))
    end = time.perf_counter()
    return {
        "wall_s": end - t0,
        "cpu_s": _cpu_s() - c0,
        "gen_s": end - t1,
        "peak_rss_mib": _peak_rss_mib(),
        "tokens": tokens,
        "texts": texts,
    }


def run_child(phase: str, work: Path, max_new: int) -> dict:
    out = work / f"{phase}-{time.time_ns()}.json"
    cmd = [
        sys.executable,
        __file__,
        "--child",
        phase,
        "--work",
        str(work),
        "--child-out",
        str(out),
        "--max-new-tokens",
        str(max_new),
    ]
    env = {**os.environ, "TQDM_DISABLE": "1", "TRANSFORMERS_VERBOSITY": "error", "OMP_WAIT_POLICY": "PASSIVE"}
    subprocess.run(cmd, check=True, env=env, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def _machine() -> str:
    import platform

    import torch

    return f"{os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs of each side; medians reported")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--child", choices=["prefkit", "loop"], help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        result = (phase_prefkit if a.child == "prefkit" else phase_loop)(a.work, a.max_new_tokens)
        a.child_out.write_text(json.dumps(result))
        return
    from tests.tinymodel import make_tiny_model

    runs: dict[str, list[dict]] = {"prefkit": [], "loop": []}
    with tempfile.TemporaryDirectory(prefix="prefkit-generate-bench-") as tmp:
        work = Path(tmp)
        make_tiny_model(work / "model", seed=a.seed, **MODEL)
        rows = make_prompts(a.prompts, a.seed)
        (work / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        for r in range(a.repeats):
            for side in ("prefkit", "loop"):
                runs[side].append(run_child(side, work, a.max_new_tokens))
                print(f"{side} run {r + 1}: {runs[side][-1]['wall_s']:.1f} s", file=sys.stderr)
    med = {k: statistics.median(x["wall_s"] for x in v) for k, v in runs.items()}
    gen = {k: statistics.median(x["gen_s"] for x in v) for k, v in runs.items()}
    cpu = {k: statistics.median(x["cpu_s"] for x in v) for k, v in runs.items()}
    pk, lp = runs["prefkit"][0], runs["loop"][0]
    res = {
        "machine": _machine(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "prompts": a.prompts,
        "max_new_tokens": a.max_new_tokens,
        "generated_tokens": [pk["tokens"], lp["tokens"]],
        "prefkit_wall_s": [round(x["wall_s"], 2) for x in runs["prefkit"]],
        "loop_wall_s": [round(x["wall_s"], 2) for x in runs["loop"]],
        "prefkit_cpu_s": [round(x["cpu_s"], 2) for x in runs["prefkit"]],
        "loop_cpu_s": [round(x["cpu_s"], 2) for x in runs["loop"]],
        "prefkit_generation_s": [round(x["gen_s"], 2) for x in runs["prefkit"]],
        "loop_generation_s": [round(x["gen_s"], 2) for x in runs["loop"]],
        "speedup_median_wall": round(med["loop"] / med["prefkit"], 2),
        "speedup_median_generation": round(gen["loop"] / gen["prefkit"], 2),
        "speedup_median_cpu_time": round(cpu["loop"] / cpu["prefkit"], 2),
        "prefkit_tokens_per_s": round(
            pk["tokens"] / statistics.median(x["gen_s"] for x in runs["prefkit"]), 1
        ),
        "loop_tokens_per_s": round(lp["tokens"] / statistics.median(x["gen_s"] for x in runs["loop"]), 1),
        "prefkit_peak_rss_mib": round(max(x["peak_rss_mib"] for x in runs["prefkit"])),
        "loop_peak_rss_mib": round(max(x["peak_rss_mib"] for x in runs["loop"])),
        "same_completions": sum(x == y for x, y in zip(pk["texts"], lp["texts"], strict=True)),
    }
    for k, v in res.items():
        print(f"{k:>26}: {v}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
