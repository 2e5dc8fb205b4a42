"""Run a consumer's own code (LLaMA-Factory, torchtune, OpenRLHF, axolotl) in its own virtual environment: the
trainers pin other releases of transformers / TRL / datasets than prefkit's, so they cannot share its
environment. ``PREFKIT_CONSUMER_VENVS`` names a folder holding one venv per consumer (``<folder>/<name>/bin/
python``); a test whose venv is not there skips. The scripts (tests/consumer_scripts/read_<name>.py) use only the
consumer and the standard library, read the exported folder and print one JSON document."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "consumer_scripts"


def venv_python(name: str) -> Path | None:
    root = os.environ.get("PREFKIT_CONSUMER_VENVS")
    if not root:
        return None
    python = Path(root) / name / "bin" / "python"
    return python if python.exists() else None


def run_consumer(name: str, *args: str, venv: str | None = None, timeout: int = 600):
    """The JSON ``read_<name>.py`` prints, run in the venv ``venv`` (default: ``name``); skips the test when that
    venv is not there."""
    venv = venv or name
    python = venv_python(venv)
    if python is None:
        pytest.skip(f"no {venv} venv (set PREFKIT_CONSUMER_VENVS to the folder of the consumer venvs)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [str(python), str(SCRIPTS / f"read_{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=SCRIPTS,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
