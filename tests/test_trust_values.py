"""Values and files nobody checked: recipe and option values are typed strictly with the key named, malformed
and compressed files are read or refused in one line, and the machine's limits (a full stdout, a closed stderr,
a name over 255 bytes, a read-only folder, polars' panics, threads that cannot start) end in Error/Hint lines."""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefkit.errors import OptionError
from tests.reflogps_data import run_cli

ROOT = Path(__file__).resolve().parent.parent
ROWS = [
    {"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "delta_score": 1.0 + i}
    for i in range(4)
]


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def one_error(code: int, err: str, *words: str) -> None:
    assert code == 1, err
    lines = err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["Error", "Hint"], err
    assert all(w in err for w in words), err


# ------------------------------------------------------------------------------------------------ recipe values

RECIPES = {
    "": ("is empty",),
    "5\n": ("is not a mapping",),
    "sources: [D]\nsplit: 5\n": ("--split", "a name or a list of names"),
    "sources: [D]\nsplit: [[train]]\n": ("--split", "a name or a list of names"),
    "sources:\n  - source: D\n    split: [[train]]\n": ("split:", "a name or a list of names"),
    "sources:\n  - source: D\n    split: 5\n": ("split:", "a name or a list of names"),
    "sources:\n  - source: D\n    revision: 5\n": ("revision:", "must be text"),
    "sources:\n  - [D]\n": ("a source must be",),
    "sources: [D]\ndecontaminate: 5\n": ("--decontaminate",),
    "sources: [D]\ntop: true\n": ("--top", "not true"),
    "sources: [D]\nselect: {max_rows: 2.5}\n": ("--max-rows", "whole number"),
    "sources: [D]\nfilters: {min_margin: .nan}\n": ("--min-margin", "finite"),
    "sources: [D]\nselect: {seed: -1}\n": ("--seed",),
    "sources: [D]\nselect: {min_margin: 1}\n": (
        "not in group 'select'",
        "belongs to group 'filters'",
        "filters:",
    ),
}


@pytest.mark.parametrize("text", list(RECIPES), ids=range(len(RECIPES)))
def test_recipe_values_are_checked_with_the_key_named(text, data, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text.replace("D", str(data)))
    code, _, err = run_cli(["build", "--recipe", str(recipe), "-o", str(tmp_path / "o")], capsys)
    one_error(code, err, *RECIPES[text])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args,words",
    [
        (["--min-margin", "nan"], ("--min-margin", "finite")),
        (["--min-margin", "inf"], ("--min-margin", "finite")),
        (["--max-rows", "1", "--seed", str(2**32)], ("--seed",)),
    ],
)
def test_flag_values_are_checked(args, words, data, tmp_path, capsys):
    code, _, err = run_cli(["build", str(data), "-o", str(tmp_path / "o"), *args], capsys)
    assert code in (1, 2) and all(w in err for w in words) and "Traceback" not in err, err


def test_the_python_api_types_strictly():
    from prefkit.options import BuildOptions

    for kwargs, message in (
        ({"top": True}, "top=...: must be a number, not true"),
        ({"min_margin": float("nan")}, "min_margin=...: must be a finite number, got nan"),
        ({"seed": -1}, "seed=...: Input should be greater than or equal to 0, got -1"),
        ({"split": 5}, "split=...: must be a name or a list of names, got 5"),
        ({"max_rows": 1.5}, r"max_rows=...: must be a whole number, got 1\.5"),
    ):
        with pytest.raises(OptionError, match=message):
            BuildOptions.create(**kwargs)
    ok = BuildOptions.create(top=2.0, seed=0, split=["train"], min_margin=1, near_dedup=True)
    assert ok.select.top == 2 and ok.sources.split == ("train",) and ok.select.near_dedup == "pair"


# ------------------------------------------------------------------------------------------------ malformed files


def test_malformed_files_are_one_error(tmp_path, capsys):
    deep = "[" * 3000 + "]" * 3000
    array = tmp_path / "deep.json"
    array.write_text(f'[{{"prompt": "p", "chosen": "a", "rejected": "b", "extra": {deep}}}]')
    code, _, err = run_cli(["build", str(array), "-o", str(tmp_path / "o1")], capsys)
    one_error(code, err, "nested too deeply")

    dup = tmp_path / "dup.parquet"
    names = ["prompt", "chosen", "rejected", "chosen"]
    pq.write_table(
        pa.table([pa.array(["p"]), pa.array(["a"]), pa.array(["b"]), pa.array(["c"])], names=names), dup
    )
    code, _, err = run_cli(["build", str(dup), "-o", str(tmp_path / "o2")], capsys)
    one_error(code, err, "column 'chosen' appears twice")


def test_a_manifest_with_a_bad_split_entry_is_one_error(data, tmp_path, capsys):
    from prefkit import build

    out = tmp_path / "set"
    build(str(data), out)
    manifest = json.loads((out / "prefkit.json").read_text())
    manifest["splits"]["train"] = 5
    (out / "prefkit.json").write_text(json.dumps(manifest))
    for args in (["stats", str(out)], ["push", str(out), "me/x", "--dry-run"]):
        code, _, err = run_cli(args, capsys)
        one_error(code, err, "not a prefkit manifest")


def test_a_truncated_safetensors_file_is_one_error(data, tmp_path, capsys):
    from prefkit import build
    from tests.tinymodel import tiny_model_path

    model = tmp_path / "model"
    shutil.copytree(tiny_model_path(), model)
    weights = model / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    build(str(data), tmp_path / "set")
    code, _, err = run_cli(
        ["reflogps", str(tmp_path / "set"), "--model", str(model), "--device", "cpu"], capsys
    )
    one_error(code, err, "truncated or corrupted")


# ------------------------------------------------------------------------------------------------ compressed inputs


def _compress(path: Path, data: bytes, codec: str) -> Path:
    with pa.output_stream(str(path), compression=codec) as out:
        out.write(data)
    return path


def test_compressed_inputs_read_like_the_plain_file(tmp_path):
    from prefkit import build

    rows = [*ROWS, {"prompt": "p9", "chosen": "x", "rejected": "y", "delta_score": 3.0, "meta": "text"}]
    rows[0] = {**rows[0], "meta": 5}  # a column that changes type: read row by row
    array = json.dumps(rows).encode()
    lines = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    (tmp_path / "plain.jsonl").write_bytes(lines)
    expected = build(str(tmp_path / "plain.jsonl"), tmp_path / "plain").manifest["splits"]["train"]["kept"]
    assert expected == len(rows)
    for codec, ext in (("bz2", "bz2"), ("zstd", "zst"), ("gzip", "gz")):
        for name, payload in (("array.json", array), ("mixed.jsonl", lines)):
            src = _compress(tmp_path / f"{name}.{ext}", payload, codec)
            got = build(str(src), tmp_path / f"o-{name}-{ext}")
            assert got.manifest["splits"]["train"]["kept"] == expected, src
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(ROWS), buf)
    (tmp_path / "t.parquet.gz").write_bytes(gzip.compress(buf.getvalue()))
    assert build(str(tmp_path / "t.parquet.gz"), tmp_path / "pgz").manifest["splits"]["train"]["kept"] == 4


def test_an_unknown_compression_is_refused_naming_the_ones_read(tmp_path, capsys):
    (tmp_path / "d.jsonl.xz").write_bytes(b"\xfd7zXZ\x00")
    code, _, err = run_cli(["build", str(tmp_path / "d.jsonl.xz"), "-o", str(tmp_path / "o")], capsys)
    one_error(code, err, "unsupported compression '.xz'", ".gz, .bz2, .zst")


# ------------------------------------------------------------------------------------------------ the machine's limits


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def test_stdout_on_a_full_device_and_a_closed_stderr(data, tmp_path):
    py = sys.executable
    full = _shell(f"{py} -m prefkit presets > /dev/full", tmp_path)
    assert full.returncode == 1 and "Traceback" not in full.stderr and "Exception ignored" not in full.stderr
    assert full.stderr.startswith("Error: cannot write to standard output: the disk is full"), full.stderr
    full = _shell(f"{py} -m prefkit build {data} -o {tmp_path / 'j'} --json > /dev/full", tmp_path)
    assert full.returncode == 1 and "Traceback" not in full.stderr and "standard output" in full.stderr
    closed = _shell(f"{py} -m prefkit build {data} -o {tmp_path / 'c'} 2>&-", tmp_path)
    assert closed.returncode == 0 and (tmp_path / "c" / "prefkit.json").is_file()
    closed = _shell(f"{py} -m prefkit build {tmp_path / 'missing.jsonl'} -o {tmp_path / 'c2'} 2>&-", tmp_path)
    assert closed.returncode == 1


def test_a_name_over_255_bytes_is_one_error(data, tmp_path, capsys):
    code, _, err = run_cli(["build", str(data), "-o", str(tmp_path / ("a" * 300))], capsys)
    one_error(code, err, "a file name is too long", "255 bytes")
    assert len(err.splitlines()[0]) < 300


@pytest.mark.parametrize(
    "failure,words",
    [
        (lambda: OSError(errno.EROFS, "Read-only file system", "/x/out/.reflogps-work"), ("read-only",)),
        (lambda: OSError(errno.EFBIG, "File too large", "/x/out/a"), ("size limit", "ulimit -f")),
        (lambda: RuntimeError("can't start new thread"), ("cannot start a thread", "ulimit")),
        (lambda: pa.lib.ArrowException("IOError: Couldn't create thread: Resource unavailable"), ("thread",)),
        (
            lambda: __import__("polars").exceptions.PanicException("memory allocation failed"),
            ("polars failed",),
        ),
        (lambda: RecursionError("maximum recursion depth exceeded"), ("nested too deeply",)),
    ],
    ids=["erofs", "efbig", "thread", "arrow-thread", "polars-panic", "recursion"],
)
def test_failures_of_the_machine_are_error_lines(failure, words, data, tmp_path, capsys, monkeypatch):
    import prefkit.pipeline

    def fails(*args, **kwargs):
        raise failure()

    monkeypatch.setattr(prefkit.pipeline, "build", fails)
    code, out, err = run_cli(["build", str(data), "-o", str(tmp_path / "o"), "--json"], capsys)
    one_error(code, err, *words)
    assert json.loads(out)["exit_code"] == 1


def test_a_read_only_out_during_reflogps_is_one_error(data, tmp_path, capsys, monkeypatch):
    from prefkit import build
    from prefkit.reflogps import plan, runner

    build(str(data), tmp_path / "set")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "set" / ".reflogps-work"))

    monkeypatch.setattr(runner, "prepare_work", read_only)
    monkeypatch.setattr(plan, "prepare_work", read_only)
    from tests.tinymodel import tiny_model_path

    args = ["reflogps", str(tmp_path / "set"), "--model", str(tiny_model_path()), "--device", "cpu"]
    code, _, err = run_cli(args, capsys)
    one_error(code, err, "read-only", "writable folder")
    assert " -o" not in err.splitlines()[1]  # reflogps has no -o


@pytest.mark.parametrize("error", [MemoryError, lambda: pa.ArrowMemoryError("malloc of size 64 failed")])
def test_running_out_of_memory_while_reading_is_not_called_invalid(
    error, data, tmp_path, capsys, monkeypatch
):
    import pyarrow.json as pajson

    def no_memory(*args, **kwargs):
        raise error()

    monkeypatch.setattr(pajson, "open_json", no_memory)
    monkeypatch.setattr(pajson, "read_json", no_memory)
    code, _, err = run_cli(["build", str(data), "-o", str(tmp_path / "o")], capsys)
    assert code == 1 and "memory" in err and "valid" not in err.replace("may be fine", ""), err
