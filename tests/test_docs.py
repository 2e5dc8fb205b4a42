"""Docs coverage: the CLI reference is generated from --help and must match it; every command is documented."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _gen():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_in_sync_with_help():
    assert (ROOT / "docs" / "cli.md").read_text() == _gen().render(), "run `python scripts/gen_cli_docs.py`"


def test_every_command_appears_in_readme():
    from prefkit.cli import cli

    readme = (ROOT / "README.md").read_text()
    for name in cli.list_commands(None):
        assert f"prefkit {name}" in readme, f"README.md does not show `prefkit {name}`"
