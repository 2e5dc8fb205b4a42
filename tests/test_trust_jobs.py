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
    code, _, err = run_cli(args[:-2] + ["--device", "cpu"], capsys)
    assert code == 0 and "nothing to do" in err
