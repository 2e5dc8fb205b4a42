"""Reference log-probs: TRL 1.16's DPOTrainer(precompute_ref_log_probs=True) vs prefkit's engine, one run.

The same dataset (built in code: lognormal lengths, multi-turn prompts in part of the rows) and the same
random-weight model are scored by both. Each measurement runs in its own child process (clean peak-memory
figure, no warm caches shared), in interleaved order (prefkit, TRL, prefkit, TRL, ...) because the machine
is shared and noisy; medians are reported.

    python benchmarks/reflogps_vs_trl.py                       # CPU, fp32, 256 pairs, ~12M Llama
    python benchmarks/reflogps_vs_trl.py --pairs 64 --model-size tiny --repeats 1     # smoke run
    python benchmarks/reflogps_vs_trl.py --gpu                 # CUDA, bf16, Qwen2.5-0.5B-shaped model

Prints wall time, tokens/s, peak memory, max difference and the speed ratio; ``--json PATH`` saves them.
TRL's time is its whole ``DPOTrainer.__init__`` with the model object passed in (tokenization, weight hash,
precompute); prefkit's is tokenization + engine self-test + scoring. Model loading is outside both.
"""

from __future__ import annotations

import argparse
import json
import math
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

MODEL_SIZES = {
    # name: make_tiny_model kwargs
    "tiny": dict(
        vocab_size=512, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
    ),
    "small": dict(  # ~12M parameters, the shape measured in docs/performance.md (reference/perf.md §4.4)
        vocab_size=16384,
        tokenizer_vocab_size=4096,
        hidden_size=256,
        num_layers=6,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=688,
        initializer_range=0.05,
    ),
    "qwen0.5b": dict(  # Qwen2.5-0.5B shape: 494M parameters, tied embeddings, 151936 vocab
        model_type="qwen2",
        vocab_size=151936,
        tokenizer_vocab_size=4096,
        hidden_size=896,
        num_layers=24,
        num_heads=14,
        num_kv_heads=2,
        intermediate_size=4864,
        tie_word_embeddings=True,
        initializer_range=0.02,
    ),
}


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """Conversational rows; lengths in words ~ lognormal (median prompt 60, chosen 150, rejected 130)."""
    from tests.tinymodel import random_text

    rng = random.Random(seed)

    def lognormal(median: float, sigma: float, cap: int) -> int:
        return max(1, min(cap, int(median * math.exp(rng.gauss(0, sigma)))))

    rows = []
    for i in range(n):
        prompt = []
        if i % 5 == 0:
            prompt.append({"role": "system", "content": random_text(rng, rng.randint(5, 30))})
        turns = 1 if rng.random() < 0.65 else rng.randint(2, 4)  # a third of the rows are multi-turn
        for t in range(turns):
            prompt.append({"role": "user", "content": random_text(rng, lognormal(60 / turns, 0.8, 600))})
            if t < turns - 1:
                prompt.append({"role": "assistant", "content": random_text(rng, lognormal(60, 0.6, 400))})
        rows.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": random_text(rng, lognormal(150, 0.6, 900))}],
                "rejected": [{"role": "assistant", "content": random_text(rng, lognormal(130, 0.6, 900))}],
            }
        )
    return rows


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load(work: Path, gpu: bool):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if gpu else torch.float32
    model = AutoModelForCausalLM.from_pretrained(work / "model", dtype=dtype, attn_implementation="sdpa")
    if gpu:
        model = model.to("cuda")
    model.eval()
    return model, AutoTokenizer.from_pretrained(work / "model")


def phase_trl(work: Path, cfg: dict) -> dict:
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    model, tok = _load(work, cfg["gpu"])
    rows = json.loads((work / "rows.json").read_text())
    base_rss = _peak_rss_mib()
    if cfg["gpu"]:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    args = DPOConfig(
        output_dir=str(work / "trl-out"),
        max_length=cfg["max_length"],
        precompute_ref_log_probs=True,
        bf16=cfg["gpu"],
        use_cpu=not cfg["gpu"],
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
    )
    os.environ["TQDM_DISABLE"] = "1"
    c0 = _cpu_s()
    t0 = time.perf_counter()
    trainer = DPOTrainer(
        model=model, ref_model=None, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok
    )
    if cfg["gpu"]:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    ds = trainer.train_dataset
    return {
        "wall_s": wall,
        "cpu_s": _cpu_s() - c0,
        "peak_rss_mib": _peak_rss_mib(),
        "base_rss_mib": base_rss,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cfg["gpu"] else None,
        "prompt_ids": list(ds["prompt_ids"]),
        "chosen": list(ds["ref_chosen_logps"]),
        "rejected": list(ds["ref_rejected_logps"]),
    }


def phase_prefkit(work: Path, cfg: dict) -> dict:
    import torch

    from prefkit.chat.tokenize import tokenize_pairs
    from prefkit.reflogps import score_pairs, self_test

    model, tok = _load(work, cfg["gpu"])
    rows = json.loads((work / "rows.json").read_text())
    base_rss = _peak_rss_mib()
    if cfg["gpu"]:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    computed = [0]
    c0 = _cpu_s()
    t0 = time.perf_counter()
    pairs = tokenize_pairs(rows, tok, cfg["max_length"])
    t_tok = time.perf_counter() - t0
    self_test(model)
    t1 = time.perf_counter()
    chosen, rejected = score_pairs(
        model,
        pairs,
        token_budget=cfg["token_budget"],
        prefix_sharing=cfg["prefix_sharing"],
        progress=lambda n, t: computed.__setitem__(0, computed[0] + t),
    )
    if cfg["gpu"]:
        torch.cuda.synchronize()
    end = time.perf_counter()
    kept = [p for p in pairs if not p.dropped]
    ok = [i for i, p in enumerate(pairs) if not p.dropped]
    return {
        "wall_s": end - t0,
        "cpu_s": _cpu_s() - c0,
        "tokenize_s": t_tok,
        "score_s": end - t1,
        "peak_rss_mib": _peak_rss_mib(),
        "base_rss_mib": base_rss,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cfg["gpu"] else None,
        "prompt_ids": [p.prompt_ids for p in kept],
        "chosen": chosen[ok].tolist(),
        "rejected": rejected[ok].tolist(),
        "computed_tokens": computed[0],  # incl. the little right padding, prompts once per pair when shared
        "trl_tokens": sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in kept),
        "completion_tokens": sum(len(p.chosen_ids) + len(p.rejected_ids) for p in kept),
        # what TRL's precompute computes: batches of 8 rows in order, 2 x 8 sequences padded to the longest
        "trl_padded_tokens": sum(
            16 * max(len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)) for p in kept[i : i + 8])
            for i in range(0, len(kept), 8)
        ),
        "dropped": len(pairs) - len(kept),
    }


def matmul_peak_tflops(gpu: bool) -> float:
    """Measured dense matmul peak (bf16 on GPU, fp32 on CPU), TFLOP/s."""
    import torch

    dev, dtype, n = ("cuda", torch.bfloat16, 8192) if gpu else ("cpu", torch.float32, 1024)
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    best = 0.0
    for _ in range(5 if gpu else 3):
        if gpu:
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10 if gpu else 2):
            a @ b
        if gpu:
            torch.cuda.synchronize()
        best = max(best, (10 if gpu else 2) * 2 * n**3 / (time.perf_counter() - t) / 1e12)
    return best


def model_flops_per_token(work: Path) -> tuple[float, float]:
    """(2 × non-embedding matmul params, 2 × lm_head params) per token."""
    cfg = json.loads((work / "model" / "config.json").read_text())
    h, i, n_l = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // heads
    per_layer = h * heads * hd * 2 + h * kv * hd * 2 + 3 * h * i
    return 2.0 * per_layer * n_l, 2.0 * h * cfg["vocab_size"]


def run_child(phase: str, work: Path, cfg: dict) -> dict:
    out = work / f"{phase}-{time.time_ns()}.json"
    cmd = [sys.executable, __file__, "--child", phase, "--work", str(work), "--child-out", str(out)]
    env = {**os.environ, "PREFKIT_BENCH_CFG": json.dumps(cfg), "TQDM_DISABLE": "1"}
    if cfg["omp_wait_policy"]:  # same for both engines; must be set before torch starts OpenMP
        env["OMP_WAIT_POLICY"] = cfg["omp_wait_policy"]
    subprocess.run(cmd, check=True, env=env, stderr=subprocess.DEVNULL if not cfg["verbose"] else None)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument(
        "--model-size",
        choices=sorted(MODEL_SIZES),
        default=None,
        help="default: small (CPU), qwen0.5b (--gpu)",
    )
    ap.add_argument("--gpu", action="store_true", help="CUDA, bf16 (TRL: bf16=True autocast)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved runs of each; medians reported")
    ap.add_argument("--trl-repeats", type=int, default=None, help="TRL runs (default: --repeats); it is slow")
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--token-budget", type=int, default=None)
    ap.add_argument("--no-prefix-sharing", action="store_true")
    ap.add_argument("--skip-trl", action="store_true")
    ap.add_argument(
        "--omp-wait-policy",
        default="PASSIVE",
        help="OMP_WAIT_POLICY for both children (PASSIVE: OpenMP threads sleep instead of spinning, which "
        "matters on a shared CPU; '' keeps the environment's)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--child", choices=["trl", "prefkit"], help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.child:
        cfg = json.loads(os.environ["PREFKIT_BENCH_CFG"])
        result = (phase_trl if a.child == "trl" else phase_prefkit)(a.work, cfg)
        a.child_out.write_text(json.dumps(result))
        return

    size = a.model_size or ("qwen0.5b" if a.gpu else "small")
    cfg = {
        "gpu": a.gpu,
        "max_length": a.max_length,
        "token_budget": a.token_budget,
        "prefix_sharing": not a.no_prefix_sharing,
        "verbose": a.verbose,
        "omp_wait_policy": a.omp_wait_policy,
    }
    import torch

    from tests.tinymodel import make_tiny_model

    with tempfile.TemporaryDirectory(prefix="prefkit-bench-") as tmp:
        work = Path(tmp)
        make_tiny_model(work / "model", seed=a.seed, **MODEL_SIZES[size])
        (work / "rows.json").write_text(json.dumps(make_rows(a.pairs, a.seed)))
        n_trl = 0 if a.skip_trl else (a.trl_repeats if a.trl_repeats is not None else a.repeats)
        runs: dict[str, list[dict]] = {"prefkit": [], "trl": []}
        for r in range(max(a.repeats, n_trl)):
            if r < a.repeats:
                runs["prefkit"].append(run_child("prefkit", work, cfg))
                print(f"prefkit run {r + 1}: {runs['prefkit'][-1]['wall_s']:.1f} s", file=sys.stderr)
            if r < n_trl:
                runs["trl"].append(run_child("trl", work, cfg))
                print(f"TRL run {r + 1}: {runs['trl'][-1]['wall_s']:.1f} s", file=sys.stderr)
        flops_layer, flops_head = model_flops_per_token(work)
        peak = matmul_peak_tflops(a.gpu)

    pk = runs["prefkit"][0]
    tokens = pk["trl_tokens"]
    med = {k: statistics.median(x["wall_s"] for x in v) for k, v in runs.items() if v}
    n_params = flops_layer / 2 + flops_head / 2
    # useful FLOPs: every token TRL would process through the layers, the head on completion tokens
    useful = flops_layer * tokens + flops_head * pk["completion_tokens"]
    res = {
        "machine": f"{os.cpu_count()} CPU cores, torch {torch.__version__}"
        + (f", {torch.cuda.get_device_name()}" if a.gpu else ""),
        "omp_wait_policy": a.omp_wait_policy or os.environ.get("OMP_WAIT_POLICY"),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "model_size": size,
        "params_matmul_M": round(n_params / 1e6, 1),
        "dtype": "bfloat16" if a.gpu else "float32",
        "pairs": a.pairs,
        "dropped": pk["dropped"],
        "tokens": tokens,
        "completion_tokens": pk["completion_tokens"],
        "prefkit_computed_tokens": pk["computed_tokens"],
        "trl_padded_tokens": pk["trl_padded_tokens"],
        "flop_ratio_trl_over_prefkit": round(
            (flops_layer + flops_head)
            * pk["trl_padded_tokens"]
            / (flops_layer * pk["computed_tokens"] + flops_head * pk["completion_tokens"]),
            2,
        ),
        "prefix_sharing": cfg["prefix_sharing"],
        "prefkit_wall_s": [round(x["wall_s"], 2) for x in runs["prefkit"]],
        "prefkit_cpu_s": [round(x["cpu_s"], 2) for x in runs["prefkit"]],
        "prefkit_score_s": [round(x["score_s"], 2) for x in runs["prefkit"]],
        "prefkit_tokenize_s": [round(x["tokenize_s"], 2) for x in runs["prefkit"]],
        "prefkit_tok_per_s": round(tokens / med["prefkit"]),
        "prefkit_peak_rss_mib": round(max(x["peak_rss_mib"] for x in runs["prefkit"])),
        "prefkit_peak_gpu_mib": pk["peak_gpu_mib"],
        "matmul_peak_tflops": round(peak, 3),
        "prefkit_mfu": round(useful / med["prefkit"] / (peak * 1e12), 4),
    }
    if runs["trl"]:
        tr = runs["trl"][0]
        assert tr["prompt_ids"] == pk["prompt_ids"], "TRL and prefkit kept different rows"
        import numpy as np

        ours = np.array(pk["chosen"] + pk["rejected"], dtype=np.float64)
        theirs = np.array(tr["chosen"] + tr["rejected"], dtype=np.float64)
        res.update(
            {
                "trl_wall_s": [round(x["wall_s"], 2) for x in runs["trl"]],
                "trl_cpu_s": [round(x["cpu_s"], 2) for x in runs["trl"]],
                "speedup_cpu_time_median": round(
                    statistics.median(x["cpu_s"] for x in runs["trl"])
                    / statistics.median(x["cpu_s"] for x in runs["prefkit"]),
                    2,
                ),
                "trl_tok_per_s": round(tokens / med["trl"]),
                "trl_peak_rss_mib": round(max(x["peak_rss_mib"] for x in runs["trl"])),
                "trl_peak_gpu_mib": tr["peak_gpu_mib"],
                "max_abs_diff": float(np.abs(ours - theirs).max()),
                "max_rel_diff": float((np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-9)).max()),
                "speedup_median": round(med["trl"] / med["prefkit"], 2),
                "trl_mfu": round(useful / med["trl"] / (peak * 1e12), 4),
            }
        )
    for k, v in res.items():
        print(f"{k:>24}: {v}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
