"""The public Python API: every command is one function call at the top level, old module paths keep working
(with a DeprecationWarning), and prefkit.trl stays the documented path of the trainer."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

import prefkit


@pytest.mark.parametrize(
    "name", ["build", "detect", "reflogps", "verify", "compute_stats", "push", "BuildOptions"]
)
def test_every_command_is_a_top_level_call(name):
    assert callable(getattr(prefkit, name))


@pytest.mark.parametrize(
    "old, name",
    [
        ("prefkit.records", "PreferenceRecord"),
        ("prefkit.templates", "tokenize_pairs"),
        ("prefkit.chat_templates", "ChatRenderer"),
        ("prefkit.presets", "all_presets"),
        ("prefkit.mix", "parse_source"),
        ("prefkit.hub", "push"),
        ("prefkit.stats", "compute_stats"),
    ],
)
def test_old_module_paths_still_import_with_a_deprecation_warning(old, name):
    code = (
        "import warnings, importlib; warnings.simplefilter('error', DeprecationWarning)\n"
        f"try:\n    importlib.import_module({old!r})\nexcept DeprecationWarning as w:\n    print('warned', w)\n"
        "warnings.simplefilter('ignore')\n"
        f"m = importlib.import_module({old!r}); print(hasattr(m, {name!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "warned" in out.stdout and "moved to" in out.stdout and out.stdout.strip().endswith("True"), out


def test_prefkit_trl_is_the_documented_path_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        module = importlib.import_module("prefkit.trl")
    assert module is importlib.import_module("prefkit.integrations.trl")
    assert hasattr(module, "check_against_manifest")
