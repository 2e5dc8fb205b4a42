"""The CLI layer of build/detect: one-line errors with hints, --json on stdout, help text, the schema file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from prefkit.cli import COMMANDS, cli
from prefkit.record import json_schema

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "record.schema.json"


def _invoke(args):
    """Run `python -m prefkit ARGS` in a subprocess: exactly what a user sees, exit code included."""
    proc = subprocess.run(
        [sys.executable, "-m", "prefkit", *args], capture_output=True, text=True, timeout=120
    )
    return proc


def test_json_schema_file_is_in_sync():
    on_disk = json.loads(SCHEMA_PATH.read_text())
    assert on_disk == json_schema(), (
        "run `python scripts/export_schemas.py`"
    )


def test_every_command_has_help_with_examples():
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"])
    assert top.exit_code == 0
    for name in cli.list_commands(None):
        assert name in top.output
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Example" in result.output, f"`prefkit {name} --help` has no examples"
    assert set(cli.list_commands(None)) <= set(COMMANDS)


def test_build_json_summary_on_stdout_and_table_on_stderr(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r", "delta_score": 1.0}) + "\n")
    proc = _invoke(["build", str(src), "-o", str(tmp_path / "out"), "--json"])
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["splits"]["train"]["kept"] == 1 and summary["output"] == str(tmp_path / "out")
    assert "read" in proc.stderr and "kept" in proc.stderr
    quiet = _invoke(["build", str(src), "-o", str(tmp_path / "out2"), "-q"])
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_errors_are_one_line_with_hint_no_traceback(tmp_path):
    cases = [
        (["build", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o")], "neither an existing file"),
        (["build", "not a/valid id", "-o", str(tmp_path / "o")], "neither an existing file"),
    ]
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"a": "p", "b": "c"}) + "\n")
    cases.append((["build", str(src), "-o", str(tmp_path / "o")], "no known preference-data shape"))
    cases.append(
        (["build", str(src), "--split", "test", "-o", str(tmp_path / "o")], "split 'test' not found")
    )
    for args, needle in cases:
        proc = _invoke(args)
        assert proc.returncode == 1, args
        lines = proc.stderr.strip().splitlines()
        assert lines[0].startswith("Error: ") and needle in lines[0], proc.stderr
        assert lines[1].startswith("Hint: ") and len(lines) == 2, proc.stderr
        assert "Traceback" not in proc.stderr


def test_build_requires_output_unless_dry_run(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    assert _invoke(["build", str(src)]).returncode == 2
    proc = _invoke(["build", str(src), "--dry-run"])
    assert proc.returncode == 0 and not (tmp_path / "out").exists()


def test_detect_prints_family_and_mapping(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text(
        json.dumps({"question": "p", "chosen": "c", "rejected": "r", "score_chosen": 2, "score_rejected": 1})
        + "\n"
    )
    proc = _invoke(["detect", str(src)])
    assert proc.returncode == 0, proc.stderr
    assert "flat (family A" in proc.stdout and "prompt         <- question" in proc.stdout
    info = json.loads(_invoke(["detect", str(src), "--json"]).stdout)
    assert info["splits"]["train"]["mapping"]["score_chosen"] == "score_chosen"


def test_help_is_fast_and_does_not_import_torch():
    code = "import sys; from prefkit.cli import cli; cli.main(['--help'], standalone_mode=False); print('torch' in sys.modules, 'datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip().endswith("False False")
