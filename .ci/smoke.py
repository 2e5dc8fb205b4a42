"""Smoke test of prefkit as users install it: every command once, through the installed `prefkit` entry point.

Run by .ci/run with the wheel (built from the sdist) installed in a fresh environment, from a folder outside
the checkout, so the source tree cannot be imported. Data and models are made here, in code: rows as JSON
Lines, tiny random-weight models (tests/tinymodel.py), a local Hub-compatible server for `push --dry-run`
(tests/hubserver.py). Both helpers are loaded from the checkout's tests/ folder as plain modules; prefkit itself
must come from site-packages (checked first).

    python /path/to/checkout/.ci/smoke.py /path/to/checkout
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECKOUT = Path(sys.argv[1]).resolve()
sys.path.append(str(CHECKOUT / "tests"))  # tinymodel, hubserver: test helpers, not prefkit

import prefkit  # noqa: E402

HERE = Path(prefkit.__file__).resolve()
if CHECKOUT in HERE.parents:
    sys.exit(f"smoke: prefkit was imported from the checkout ({HERE}), not from the installed wheel")
if "site-packages" not in HERE.parts:
    sys.exit(f"smoke: prefkit is not an installed package: {HERE}")

from hubserver import HubServer  # noqa: E402
from tinymodel import make_tiny_model, random_text  # noqa: E402

STEPS: list[tuple[str, float]] = []


def run(*args: str, expect: int = 0) -> str:
    """Run `prefkit ARGS` (the installed console script); fail the smoke test on another exit code."""
    start = time.perf_counter()
    done = subprocess.run(["prefkit", *args], capture_output=True, text=True, env=os.environ)
    STEPS.append((" ".join(args)[:100], time.perf_counter() - start))
    if done.returncode != expect:
        sys.exit(
            f"smoke: `prefkit {' '.join(args)}` exited {done.returncode} (expected {expect})\n"
            f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
    if "Traceback" in done.stderr:
        sys.exit(f"smoke: `prefkit {' '.join(args)}` printed a traceback:\n{done.stderr}")
    return done.stdout


def rows(n: int, seed: int) -> list[dict]:
    """``n`` conversational pairs with scores (some prompts repeated across seeds for the dedup steps)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt = [{"role": "user", "content": f"question {i % 40}: " + random_text(rng, rng.randint(4, 20))}]
        out.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": random_text(rng, rng.randint(2, 30))}],
                "rejected": [{"role": "assistant", "content": random_text(rng, rng.randint(2, 30))}],
                "score_chosen": 8.0,
                "score_rejected": float(rng.randint(1, 7)),
            }
        )
    return out


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    return path


def summary(stdout: str) -> dict:
    return json.loads(stdout)


def check(condition: bool, message: str) -> None:
    if not condition:
        sys.exit(f"smoke: {message}")


def data_side(work: Path) -> tuple[Path, Path]:
    """README example, presets, detect, a mix with near-dedup + decontamination + a tokenizer filter, stats,
    report."""
    version = run("--version")
    check(prefkit.__version__ in version, f"--version printed {version!r}")
    run("--help")
    run("build", str(CHECKOUT / "prefkit/examples/ultrafeedback-mini.jsonl"), "--top", "20", "-o",
        str(work / "example-out"), "--overwrite")
    check(json.loads(run("presets", "--json")) != [], "presets --json listed nothing")
    a = write_jsonl(work / "a.jsonl", rows(60, 0))
    b = write_jsonl(work / "b.jsonl", rows(40, 1))
    detected = summary(run("detect", str(a), "--json"))
    check("explicit" in json.dumps(detected), f"detect did not find the explicit shape: {detected}")
    evalset = write_jsonl(work / "eval.jsonl", [{"prompt": json.loads(a.read_text().splitlines()[3])["prompt"][0]["content"]}])
    tok = make_tiny_model(work / "tiny")
    out = work / "mix"
    result = summary(run("build", f"{a}:1.0", f"{b}:1.0", "--near-dedup", "--decontaminate", str(evalset),
                         "--tokenizer", str(tok), "--max-length", "96", "-o", str(out), "--json"))
    kept = sum(split["kept"] for split in result["splits"].values())
    check(0 < kept < 100, f"the mix kept {kept} of 100 rows")
    run("stats", str(out), "--plot", str(work / "plots"), "--json")
    check(any((work / "plots").glob("*.png")), "stats --plot wrote no PNG")
    run("report", str(out), "-o", str(work / "report.html"))
    check((work / "report.html").stat().st_size > 10_000, "report wrote no page")
    return out, tok


def model_side(out: Path, tok: Path, work: Path) -> None:
    """reflogps + verify, score, report, push --dry-run, one PrecomputedRefDPOTrainer step at ln 2."""
    recipe = work / "project.json"  # the model commands' sections of a recipe (verify's from the flags)
    recipe.write_text(json.dumps({"reflogps": {"model": str(tok), "device": "cpu", "max_length": 96}}))
    run("reflogps", str(out), "--recipe", str(recipe))
    report = summary(run("verify", str(out), "--model", str(tok), "--device", "cpu", "--sample", "8", "--json"))
    check(report.get("ok", report.get("passed")) is not False, f"verify failed: {report}")
    rm = make_tiny_model(work / "tiny-rm", reward=True)
    run("score", str(out), "--reward-model", str(rm), "--device", "cpu")
    hub = HubServer().start()
    try:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.token, "HF_HUB_DISABLE_XET": "1"}
        os.environ.update(env)
        run("push", str(out), "me/smoke", "--dry-run")
    finally:
        hub.stop()
    first_step_loss(out, tok)


def first_step_loss(out: Path, model_path: Path) -> None:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig

    from prefkit.trl import PrecomputedRefDPOTrainer

    args = DPOConfig(output_dir=str(out.parent / "run"), precompute_ref_log_probs=True, max_length=96,
                     per_device_train_batch_size=8, max_steps=1, logging_steps=1, learning_rate=1e-6,
                     save_strategy="no", report_to=[], use_cpu=True, bf16=False, disable_tqdm=True, seed=0)
    trainer = PrecomputedRefDPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(model_path)), ref_model=None, args=args,
        train_dataset=datasets.load_dataset(str(out))["train"],
        processing_class=AutoTokenizer.from_pretrained(str(model_path)), prefkit_manifest=out,
    )
    trainer.train()
    loss = next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)
    check(abs(loss - math.log(2)) < 1e-4, f"first-step DPO loss {loss} is not ln 2")


def main() -> None:
    os.environ.update({"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "1"})
    with tempfile.TemporaryDirectory(prefix="prefkit-smoke-") as tmp:
        work = Path(tmp)
        os.chdir(work)
        out, tok = data_side(work)
        os.environ.pop("HF_HUB_OFFLINE")
        model_side(out, tok, work)
    for step, seconds in STEPS:
        print(f"  {seconds:6.1f} s  prefkit {step}")
    print(f"smoke: {len(STEPS)} commands of the installed prefkit {prefkit.__version__} passed ({HERE.parent})")


if __name__ == "__main__":
    main()
