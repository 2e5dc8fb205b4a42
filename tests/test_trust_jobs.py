"""Jobs that are idempotent, steps with progress, warnings that do not cry wolf."""

from __future__ import annotations

import json

from tests.reflogps_data import build_set, run_cli
from tests.tinymodel import tiny_model_path


def test_a_second_score_on_a_finished_set_exits_0_like_reflogps(tmp_path, capsys):
    out = build_set(tmp_path / "b", n=8)
    args = ["score", str(out), "--reward-model", str(tiny_model_path(reward=True)), "--device", "cpu"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    before = (out / "prefkit.json").read_text()
    code, stdout, err = run_cli([*args, "--json"], capsys)  # a requeued worker
    assert code == 0, err
    assert json.loads(stdout)["outcome"] == "already_complete"
    assert (out / "prefkit.json").read_text() == before
    code, _, err = run_cli(args, capsys)
    assert code == 0 and "nothing to do" in err


def test_stats_with_a_tokenizer_shows_progress_and_q_silences_every_bar(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import prefkit.output.stats
    import prefkit.progress
    from prefkit.output.stats import compute_stats

    out = build_set(tmp_path / "b", n=8)
    seen = []
    real = prefkit.progress.bar

    def bar(**kwargs):
        seen.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(prefkit.output.stats, "bar", bar)  # the name stats.py reads it by
    compute_stats(out, progress=True)
    assert seen and seen[0]["show"] and seen[0]["total"] == 8 and seen[0]["desc"] == "stats train"

    env = {k: v for k, v in os.environ.items() if "PROGRESS" not in k and k != "TQDM_DISABLE"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    model = str(tiny_model_path())
    proc = subprocess.run(
        [sys.executable, "-m", "prefkit", "stats", str(out), "--tokenizer", model, "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_q_silences_the_libraries_progress_bars():
    import transformers.utils.logging as tlog
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars

    from prefkit.progress import quiet_libraries

    enable_progress_bars()
    tlog.enable_progress_bar()
    try:
        quiet_libraries()
        assert are_progress_bars_disabled() and not tlog.is_progress_bar_enabled()
    finally:
        tlog.disable_progress_bar()


def test_preset_builds_do_not_warn_about_the_presets_own_metadata_columns(hub, tmp_path):
    from prefkit import build
    from tests.catalog import catalog, publish

    for repo_id in catalog():
        publish(hub, repo_id)
        result = build(repo_id, tmp_path / repo_id.replace("/", "--"))
        assert not [w for w in result.warnings if "columns no mapping reads" in w], repo_id
        listed = [
            s.get("unused_columns") for src in result.manifest["sources"] for s in src["splits"].values()
        ]
        assert all(isinstance(u, dict | None) for u in listed)  # still counted in the manifest
    # a column a preset does not declare is still reported
    src = tmp_path / "extra.jsonl"
    src.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "mystery": 1}) + "\n")
    result = build(str(src), tmp_path / "extra")
    assert any("columns no mapping reads: mystery" in w for w in result.warnings)
