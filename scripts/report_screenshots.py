"""Make the screenshots of docs/report.md: `prefkit report` on three sets, opened in headless Chromium.

1. the README example (``prefkit build prefkit/examples/ultrafeedback-mini.jsonl --top 20``);
2. a mix of two sources with near-dedup, decontamination, a token-length filter, reward-model scores and
   reference log-probs (tiny random-weight models from tests/tinymodel.py; no download);
3. a large set: ``--rows`` synthetic UltraFeedback-shaped rows (benchmarks/synthetic.py), sampled on the page.

Needs Chromium (``apt-get install chromium``), the ``test`` extra and torch. Run from the repository root:

    PYTHONPATH=. python scripts/report_screenshots.py [--work /tmp/report-work] [--rows 200000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
WIDTH = 1280


def shoot(page: Path, name: str, views: list[tuple[str | None, int, str]]) -> None:
    """Screenshots of ``page``: per view, the element to scroll to (CSS selector, None = top), the height, and
    JavaScript to run first; saved as docs/<name>[-i].png in 64 colours."""
    from PIL import Image

    from tests.browser import Browser, find_chromium

    chromium = find_chromium()
    if chromium is None:
        sys.exit("no Chromium: apt-get install chromium")
    with Browser(chromium, width=WIDTH, height=900) as browser:
        browser.open(page)
        errors = browser.errors()
        if errors:
            sys.exit(f"console errors on {page}: {errors}")
        browser.evaluate("document.querySelector('nav').style.position = 'static'")
        for i, (selector, height, script) in enumerate(views):
            if script:
                browser.evaluate(script)
            top = (
                0
                if selector is None
                else browser.evaluate(
                    f"document.querySelector({selector!r}).getBoundingClientRect().top + window.scrollY - 8"
                )
            )
            path = DOCS / (f"{name}.png" if len(views) == 1 else f"{name}-{i + 1}.png")
            browser.screenshot_region(path, int(top), height)
            Image.open(path).convert("RGB").quantize(64).save(path, optimize=True)
            print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KB")


def example(work: Path) -> Path:
    from prefkit import build
    from prefkit.report import write_report

    out = work / "example-out"
    build(str(ROOT / "prefkit/examples/ultrafeedback-mini.jsonl"), out, top=20, overwrite=True)
    return write_report(out).path


def mix(work: Path) -> Path:
    import prefkit
    from prefkit.chat.target import load_target
    from prefkit.report import write_report
    from tests.report_data import build_mix
    from tests.tinymodel import make_tiny_model

    model = work / "tiny-model"
    reward = work / "tiny-reward-model"
    if not model.exists():
        make_tiny_model(model)
        make_tiny_model(reward, reward=True)
    out = work / "mix"
    build_mix(work / "mix-src", out, tokenizer=str(model), max_length=400)
    prefkit.score(out, str(reward), max_length=512, device="cpu")
    prefkit.reflogps(out, str(model), max_length=512, device="cpu")
    target = load_target(str(model), None)
    return write_report(out, target=target, eval_sets=(str(work / "mix-src" / "my_eval.jsonl"),)).path


def large(work: Path, rows: int) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prefkit import build
    from prefkit.report import write_report

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from synthetic import random_texts, uf_conversations

    source = work / f"synthetic-{rows}.parquet"
    if not source.exists():
        rng = np.random.default_rng(0)
        prompts, good, bad = (random_texts(rng, rows, m) for m in (20, 60, 45))
        sc = rng.integers(1, 11, rows).astype(float)
        sr = np.where(rng.random(rows) < 0.01, sc, np.maximum(sc - rng.integers(0, 6, rows), 1.0))
        table = pa.table(
            {
                "chosen": uf_conversations(prompts, good),
                "rejected": uf_conversations(prompts, bad),
                "score_chosen": sc,
                "score_rejected": sr,
            }
        )
        pq.write_table(table, source)
    out = work / "large"
    start = time.perf_counter()
    build(str(source), out, dedup=True, overwrite=True)
    print(f"build of {rows:,} rows: {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    result = write_report(out)
    print(f"report: {time.perf_counter() - start:.0f} s, {result.bytes / 2**20:.1f} MB, {result.rows_shown}")
    return result.path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/prefkit-report-work"))
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--only", choices=["example", "mix", "large"])
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    open_groups = (
        "document.querySelectorAll('details.group').forEach(d => "
        "{ if (/near_duplicate|contaminated|template_residue/.test(d.dataset.reason)) d.open = true; })"
    )
    if args.only in (None, "example"):
        shoot(example(args.work), "report-example", [(None, 1100, "")])
    if args.only in (None, "mix"):
        page = mix(args.work)
        shoot(
            page,
            "report-mix",
            [
                (".split h3:nth-of-type(2)", 1500, ""),
                ("details.group[data-reason='dropped:near_duplicate']", 700, open_groups),
                ("details.group[data-reason='dropped:contaminated']", 800, ""),
            ],
        )
    if args.only in (None, "large"):
        page = large(args.work, args.rows)
        shoot(page, "report-large", [(None, 1000, ""), (".split .sampling", 700, "")])


if __name__ == "__main__":
    main()
