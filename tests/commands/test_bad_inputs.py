"""A sweep of bad inputs and faults: every one ends in one `Error: … / Hint: …` pair (or click's usage error),
with a documented exit code and no traceback, and the message names what is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

GOOD = {"prompt": "p", "chosen": "c", "rejected": "r", "delta_score": 1.0}


def run(args: list[str], cwd: Path, env: dict | None = None, pre: str = "") -> subprocess.CompletedProcess:
    """The CLI in a fresh process; ``pre`` runs first (e.g. hiding an optional dependency)."""
    code = f"import sys\n{pre}\nfrom prefkit.cli import main\nmain(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def one_line_error(proc: subprocess.CompletedProcess, needle: str, code: int = 1) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    hints = [line for line in proc.stderr.splitlines() if line.startswith("Hint: ")]
    assert len(errors) == 1 and len(hints) == 1, proc.stderr
    assert needle in errors[0], (needle, errors[0])


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _files(tmp: Path) -> dict[str, Path]:
    """Bad (and a few good) inputs, built in code."""
    f = {}
    f["dupcol"] = tmp / "dup.csv"
    f["dupcol"].write_text("prompt,chosen,chosen\np,c,r\n")
    f["csv_utf8"] = tmp / "bad.csv"
    f["csv_utf8"].write_bytes(b"prompt,chosen,rejected\np,c\xff,r\n")
    f["jsonl_utf8"] = tmp / "bad-utf8.jsonl"
    f["jsonl_utf8"].write_bytes(b'{"prompt": "p", "chosen": "c\xff", "rejected": "r"}\n')
    f["badline"] = tmp / "badline.jsonl"
    f["badline"].write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD) + '\n{"prompt": "p" "chosen": 1}\n')
    f["notobject"] = tmp / "list.jsonl"
    f["notobject"].write_text(json.dumps(GOOD) + "\n[1, 2]\n")
    f["scalars"] = tmp / "scalars.json"
    f["scalars"].write_text("[1, 2, 3]")
    f["notjson"] = tmp / "not.json"
    f["notjson"].write_text("hello")
    f["empty"] = tmp / "empty.jsonl"
    f["empty"].write_text("")
    f["mixkinds"] = jsonl(tmp / "mix.jsonl", [GOOD, {**GOOD, "delta_score": [1, 2]}])
    f["truncated"] = tmp / "trunc.parquet"
    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist([GOOD] * 20), buf)
    f["truncated"].write_bytes(buf.getvalue().to_pybytes()[:-40])
    f["fakeparquet"] = tmp / "fake.parquet"
    f["fakeparquet"].write_text("not parquet")
    f["txt"] = tmp / "data.txt"
    f["txt"].write_text("x")
    f["structs"] = tmp / "structs"
    f["structs"].mkdir()
    msg = lambda role, extra=None: [{"role": role, "content": "x", **(extra or {})}]  # noqa: E731
    for i, extra in enumerate((None, {"name": "n"})):
        row = {"prompt": msg("user", extra), "chosen": msg("assistant"), "rejected": msg("assistant")}
        pq.write_table(pa.Table.from_pylist([row]), f["structs"] / f"train-0000{i}-of-00002.parquet")
    f["emptydir"] = tmp / "emptydir"
    f["emptydir"].mkdir()
    f["good"] = jsonl(tmp / "good.jsonl", [GOOD, {**GOOD, "prompt": "q", "chosen": "d"}])
    f["nomargin"] = jsonl(tmp / "nomargin.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}])
    f["bomb"] = tmp / "bomb.jinja"
    f["bomb"].write_text("{{ 'x' * 10**9 }}")
    f["badjinja"] = tmp / "bad.jinja"
    f["badjinja"].write_text("{% for m in messages %}{{ m.content }")
    f["badrecipe"] = tmp / "bad.yaml"
    f["badrecipe"].write_text("sources: [good.jsonl]\nfilters: {min_margins: 1}\n")
    f["notprefkit"] = tmp / "mine"
    f["notprefkit"].mkdir()
    (f["notprefkit"] / "notes.txt").write_text("keep")
    f["afile"] = tmp / "afile"
    f["afile"].write_text("x")
    return f


BUILD_CASES = [
    ("dupcol", [], "column 'chosen' appears twice"),
    ("csv_utf8", [], "cannot read"),
    ("jsonl_utf8", [], "line 1 is not valid UTF-8"),
    ("badline", [], "line 3 is not valid JSON"),
    ("notobject", [], "line 2 is not a JSON object"),
    ("scalars", [], "not of objects"),
    ("notjson", [], "not valid JSON"),
    ("empty", [], "empty"),
    ("mixkinds", [], "column 'delta_score' of"),
    ("truncated", [], "cannot read"),
    ("fakeparquet", [], "cannot read"),
    ("txt", [], "unsupported file type"),
    ("structs", [], "do not share one schema"),
    ("emptydir", [], "cannot read folder"),
    ("nomargin", ["--top", "1"], "--top needs a margin"),
    ("good", ["--prompt-col", "nope"], "column 'nope' not found"),
    ("good", ["--system", "override"], "needs the system prompt text"),
    ("good", ["--pairs", "all-pairs"], "applies to none of the sources"),
    ("good", ["--max-length", "10"], "count tokens of the target model"),
    ("good", ["--output-format", "text"], "renders the rows with a chat template"),
    ("good", ["--chat-template", "no-such-template", "--output-format", "text"], "unknown chat template"),
    ("good", ["--chat-template", "{bomb}", "--output-format", "text"], "the chat template failed"),
    ("good", ["--chat-template", "{badjinja}", "--output-format", "text"], "not valid Jinja"),
    ("good", ["--tokenizer", "./no/such/folder"], "does not exist"),
    ("good", ["--output-format", "text", "--chat-template", "chatml", "--export", "kto"], "both choose"),
]


@pytest.mark.parametrize("name, extra, needle", BUILD_CASES)
def test_build_bad_input(tmp_path, name, extra, needle):
    files = _files(tmp_path)
    extra = [a.format(**{k: str(v) for k, v in files.items()}) for a in extra]
    proc = run(["build", str(files[name]), *extra, "-o", str(tmp_path / "out")], tmp_path)
    one_line_error(proc, needle)
    assert not (tmp_path / "out").exists()


def test_folder_and_recipe_faults(tmp_path):
    f = _files(tmp_path)
    one_line_error(
        run(["build", "--recipe", str(tmp_path / "nope.yaml"), "-o", "o"], tmp_path), "cannot read recipe"
    )
    one_line_error(run(["build", "--recipe", str(f["badrecipe"]), "-o", "o"], tmp_path), "unknown option")
    one_line_error(
        run(["build", str(f["good"]), "-o", str(f["notprefkit"]), "--overwrite"], tmp_path),
        "not a prefkit output folder",
    )
    one_line_error(
        run(["build", str(f["good"]), "-o", str(f["afile"])], tmp_path), "exists and is not a folder"
    )
    one_line_error(run(["build", str(f["good"]), "-o", str(f["afile"] / "out")], tmp_path), "cannot write")
    one_line_error(run(["build", "good.jsonl", "-o", ".", "--overwrite"], tmp_path), "contains the source")
    proc = run(["build", "--top", "0", str(f["good"]), "-o", "o"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_reading_sets_that_are_not_sets(tmp_path):
    f = _files(tmp_path)
    one_line_error(run(["stats", str(f["good"])], tmp_path), "is not a folder")
    one_line_error(run(["stats", str(f["notprefkit"])], tmp_path), "not a prefkit output folder")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "prefkit.json").write_text("[]")
    one_line_error(run(["stats", str(broken)], tmp_path), "not a prefkit manifest")
    one_line_error(run(["reflogps", str(broken), "--model", "x"], tmp_path), "not a prefkit manifest")
    out = tmp_path / "set"
    assert run(["build", str(f["good"]), "-o", str(out), "-q"], tmp_path).returncode == 0
    shard = next((out / "data").glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-30])  # truncated
    one_line_error(run(["stats", str(out)], tmp_path), "cannot be read")
    one_line_error(run(["reflogps", str(out), "--model", "x"], tmp_path), "cannot be read")


def test_models_and_scoring_faults(tmp_path):
    f = _files(tmp_path)
    out = tmp_path / "set"
    assert run(["build", str(f["good"]), "-o", str(out), "-q"], tmp_path).returncode == 0
    one_line_error(
        run(["reflogps", str(out), "--model", str(tmp_path / "nomodel")], tmp_path), "does not exist"
    )
    one_line_error(run(["verify", str(out)], tmp_path), "no reference log-probs")


@pytest.mark.parametrize(
    "hidden, args, extra",
    [
        ("matplotlib", ["stats", "{set}", "--plot", "{set}/plots"], "prefkit[plot]"),
        (
            "transformers",
            ["build", "{good}", "--chat-template", "chatml", "--output-format", "text", "-o", "t"],
            "prefkit[model]",
        ),
        ("torch", ["reflogps", "{set}", "--model", "some/model"], "prefkit[model]"),
    ],
)
def test_a_data_only_install_names_the_extra(tmp_path, hidden, args, extra):
    f = _files(tmp_path)
    out = tmp_path / "set"
    assert run(["build", str(f["good"]), "-o", str(out), "-q"], tmp_path).returncode == 0
    args = [a.format(set=out, good=f["good"]) for a in args]
    proc = run(args, tmp_path, pre=f"sys.modules[{hidden!r}] = None")
    one_line_error(proc, f"needs {hidden}")
    assert f"pip install '{extra}'" in proc.stderr


def test_hub_faults_are_retried_then_one_line(tmp_path, hub):
    import io

    repo = hub.unique_id("me/flaky")
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([GOOD, {**GOOD, "prompt": "q"}]), buf)
    hub.create_dataset_repo(repo, {"data/train-00000-of-00001.parquet": buf.getvalue()})
    hub.fail_next(f"/datasets/{repo}/resolve/", times=2, status=500)
    hub.fail_next(f"/api/datasets/{repo}", times=1, status="drop")
    proc = run(["build", repo, "-o", str(tmp_path / "ok"), "-q"], tmp_path)
    assert proc.returncode == 0, proc.stderr  # transient failures were retried
    hub.fail_next(f"/api/datasets/{repo}", times=50, status=503)
    proc = run(["build", repo, "-o", str(tmp_path / "down")], tmp_path)
    one_line_error(proc, "after 5 attempt(s) (HTTP 503)")
    assert "--data-dir" not in proc.stderr and "run the same command again" in proc.stderr
    proc = run(["build", "nobody/anything", "-o", "x"], tmp_path, env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    one_line_error(proc, "cannot read 'nobody/anything' from the Hub")


def test_json_failures_print_one_object_on_stdout(tmp_path):
    f = _files(tmp_path)
    proc = run(["build", str(f["dupcol"]), "-o", str(tmp_path / "o"), "--json"], tmp_path)
    assert proc.returncode == 1
    obj = json.loads(proc.stdout)
    assert obj["exit_code"] == 1 and "appears twice" in obj["error"] and obj["hint"]


@pytest.fixture
def tiny_mount(tmp_path):
    """A 256 kB tmpfs (a real full disk); the read-only variant too. Skipped where mounting is not allowed."""
    mounts = []

    def mount(options: str) -> Path:
        where = tmp_path / f"mnt{len(mounts)}"
        where.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
        )
        if proc.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root in a privileged container)")
        mounts.append(where)
        return where

    yield mount
    for where in mounts:
        subprocess.run(["umount", str(where)], capture_output=True)


def test_disk_full_and_read_only(tmp_path, tiny_mount):
    f = _files(tmp_path)
    big = jsonl(tmp_path / "big.jsonl", [{**GOOD, "prompt": os.urandom(1500).hex()} for _ in range(600)])

    full = tiny_mount("size=256k")
    one_line_error(run(["build", str(big), "-o", str(full / "out")], tmp_path), "the disk is full")
    assert not any(p.name.startswith(".") for p in full.iterdir())  # nothing half-written left behind
    ro = tiny_mount("ro,size=64k")
    one_line_error(run(["build", str(f["good"]), "-o", str(ro / "out")], tmp_path), "read-only")


def test_a_column_only_later_rows_hold_is_read(tmp_path):
    """JSON read row by row (a column mixing kinds) keeps a key that the first row does not have."""
    from prefkit.sources import load_source

    rows = [
        {"prompt": "p0", "chosen": "a", "rejected": "b", "score": 1},
        {"prompt": "p1", "chosen": [{"role": "assistant", "content": "a"}], "rejected": "b", "note": "x"},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = load_source(str(path)).splits["train"]
    assert table.column("note").to_pylist() == [None, "x"]
