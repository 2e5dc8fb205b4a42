"""Start-up: ``--help`` and flag parsing import nothing heavy (polars, pyarrow, numpy, torch, transformers,
datasets are imported when work starts), and the flags the CLI reads as data (prefkit/commands/flags.json) are the
option models' own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from prefkit.cli import COMMANDS

HEAVY = ("polars", "pyarrow", "numpy", "torch", "transformers", "datasets", "pydantic", "huggingface_hub")


def _imported(args: list[str]) -> set[str]:
    """The top-level modules ``python -X importtime -m prefkit ARGS`` imports."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "prefkit", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    names = set()
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "prefkit" in names  # the import times were read
    return names


@pytest.mark.parametrize("args", [["--help"], ["--version"], *([name, "--help"] for name in COMMANDS)])
def test_help_imports_nothing_heavy(args):
    heavy = _imported(args) & set(HEAVY)
    assert not heavy, f"`prefkit {' '.join(args)}` imports {sorted(heavy)}"


def test_the_flags_file_is_the_option_models_own():
    from prefkit.commands.flags import SPEC_FILE, live_spec

    saved = json.loads(SPEC_FILE.read_text())
    assert saved == live_spec(), (
        "the options changed: run `python scripts/gen_cli_docs.py` to write flags.json"
    )


def test_a_stale_flags_file_is_not_used(tmp_path, monkeypatch):
    from prefkit.commands import flags

    stale = json.loads(flags.SPEC_FILE.read_text())
    stale["hash"] = "0" * 64
    stale["groups"]["select"] = stale["groups"]["select"][:1]  # an option missing from the file
    (tmp_path / "flags.json").write_text(json.dumps(stale))
    monkeypatch.setattr(flags, "SPEC_FILE", tmp_path / "flags.json")
    monkeypatch.setattr(flags, "_LOADED", {})
    assert flags.spec() == flags.live_spec() and len(flags.spec()["groups"]["select"]) > 1
