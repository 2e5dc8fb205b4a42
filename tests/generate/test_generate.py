"""`prefkit generate` on tiny random models: greedy completions equal transformers' own ``generate()``, a seeded
sampled run is the same after a kill and resume and across two workers, `score` gives every completion an
``rm_score``, `build` pairs them (best-vs-worst on rm_score, delta pairs by model) and the pairs go through
`reflogps` into ``PrecomputedRefDPOTrainer`` at ln 2."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.reflogps_data import run_cli
from tests.tinymodel import random_text, tiny_model_path

ROOT = Path(__file__).resolve().parents[2]
MAX_NEW = 12


def prompt_rows(n: int, seed: int = 0) -> list[dict]:
    """Prompts of varied lengths: text, messages with a system turn, multi-turn, one repeated (deduplicated)."""
    rng = random.Random(seed)
    rows: list[dict] = []
    for i in range(n):
        text = random_text(rng, rng.randint(2, 40))
        if i % 3 == 0:
            rows.append(
                {
                    "prompt": [
                        {"role": "system", "content": random_text(rng, 5)},
                        {"role": "user", "content": text},
                    ]
                }
            )
        elif i % 3 == 1:
            rows.append(
                {
                    "prompt": [
                        {"role": "user", "content": text},
                        {"role": "assistant", "content": "ok"},
                        {"role": "user", "content": random_text(rng, 4)},
                    ]
                }
            )
        else:
            rows.append({"prompt": [{"role": "user", "content": text}]})
    rows.append(dict(rows[0]))  # a repeated prompt is generated for once
    return rows


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in prompt_rows(10)))
    return path


def completions(out: Path) -> list[list[dict]]:
    rows = []
    for path in sorted((out / "data").glob("*.parquet")):
        rows += pq.read_table(path, columns=["completions"]).column("completions").to_pylist()
    return rows


def _gen(source: Path, out: Path, models=None, **kw) -> dict:
    from prefkit.generate import generate

    options = {
        "n": 3,
        "temperature": 0.9,
        "top_p": 0.95,
        "max_new_tokens": MAX_NEW,
        "device": "cpu",
        "seed": 7,
        "shard_rows": 4,
        "batch_size": 4,
    } | kw
    return generate(source, out, models or [str(tiny_model_path())], **options)


@pytest.fixture(scope="module")
def sampled(source, tmp_path_factory) -> Path:
    """The reference sampled run: one worker, uninterrupted."""
    out = tmp_path_factory.mktemp("sampled") / "gen"
    _gen(source, out)
    return out


def test_greedy_equals_transformers_generate(source, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_path = tiny_model_path()
    out = tmp_path / "greedy"
    summary = _gen(source, out, n=2, temperature=0.0, max_new_tokens=16)
    assert summary["prompts"] == 10 and summary["completions"] == 20  # the repeated prompt once
    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    table = pq.read_table(next((out / "data").glob("*.parquet"))).to_pylist()
    for row in table:
        ids = tok.apply_chat_template(
            row["prompt"] and [{k: v for k, v in m.items() if v is not None} for m in row["prompt"]],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        ids.pop("token_type_ids", None)  # transformers 4.x tokenizers return it; a causal LM takes none
        with torch.inference_mode():
            plain = model.generate(**ids, max_new_tokens=16, do_sample=False)
        new = plain[0, ids["input_ids"].shape[1] :].tolist()
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id) + 1]
        expected = tok.decode(new, skip_special_tokens=True)
        first, second = row["completions"]
        assert first["response"] == expected == second["response"]
        assert first["completion_tokens"] == len(new)
        assert first["prompt_tokens"] == ids["input_ids"].shape[1]
        assert (first["sample_index"], second["sample_index"]) == (0, 1)


def test_sampled_completions_are_seeded_per_prompt_and_sample(sampled):
    from prefkit.generate.sampling import completion_seed

    rows = pq.read_table(next((sampled / "data").glob("*.parquet"))).to_pylist()
    manifest = json.loads((sampled / "prefkit.json").read_text())
    assert manifest["generate"]["engine"] == "transformers" and manifest["generate"]["engine_version"]
    assert manifest["prompts"]["counts"]["train"] == {
        "read": 11,
        "prompts": 10,
        "duplicates": 1,
        "no_prompt": 0,
    }
    for row in rows:
        comps = row["completions"]
        assert [c["sample_index"] for c in comps] == [0, 1, 2]
        assert [c["seed"] for c in comps] == [completion_seed(7, row["prompt_id"], k) for k in range(3)]
        assert {c["finish_reason"] for c in comps} <= {"stop", "length"}
        assert all(
            c["temperature"] == 0.9 and c["top_p"] == 0.95 and c["max_new_tokens"] == MAX_NEW for c in comps
        )
    # sampling happened: the samples of a prompt differ
    assert sum(len({c["response"] for c in r["completions"]}) > 1 for r in rows) >= 8


def test_killed_run_resumes_to_the_same_completions(source, sampled, tmp_path, monkeypatch):
    from prefkit.generate import job

    out = tmp_path / "gen"
    real, calls = job.generate_shard, []

    def dies_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed between shards")  # a kill between shards
        return real(*args, **kwargs)

    monkeypatch.setattr(job, "generate_shard", dies_on_second)
    with pytest.raises(KeyboardInterrupt, match="killed between shards"):
        _gen(source, out)
    monkeypatch.setattr(job, "generate_shard", real)
    assert (out / job.WORK_DIR).is_dir()
    summary = _gen(source, out)
    assert summary["shards"]["resumed"] == 1 and summary["shards"]["scored"] == 2
    assert completions(out) == completions(sampled)
    assert _gen(source, out)["outcome"] == "already_complete"


def _worker(source: Path, out: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "prefkit",
        "generate",
        str(source),
        "--model",
        str(tiny_model_path()),
        "-n",
        "3",
        "--temperature",
        "0.9",
        "--top-p",
        "0.95",
        "--max-new-tokens",
        str(MAX_NEW),
        "--seed",
        "7",
        "--device",
        "cpu",
        "--shard-rows",
        "2",
        "--batch-size",
        "4",
        "-o",
        str(out),
        "--json",
        "-q",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


@pytest.mark.slow
def test_two_workers_give_the_one_worker_completions(source, sampled, tmp_path):
    """Shards of 2 prompts here (4 in the reference): a shard's completions do not depend on its neighbours."""
    out = tmp_path / "gen"
    procs = [_worker(source, out) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-2000:] for r in results]
    summaries = [json.loads(r[0]) for r in results]
    assert sum(s["shards"]["scored"] for s in summaries) == 5
    assert sum(s["shards"]["merged_here"] for s in summaries) == 1
    assert completions(out) == completions(sampled)


def test_score_build_reflogps_trainer_end_to_end(source, tmp_path):
    """generate (two models) → score (rm_score per completion) → build --pairs best-vs-worst --rating rm_score →
    reflogps → PrecomputedRefDPOTrainer's first loss is ln 2."""
    pytest.importorskip("trl")
    import prefkit
    from tests.integrations.test_trl_trainer import LN2, _first_loss, _load, _trainer

    policy, other = tiny_model_path(), tiny_model_path(seed=1)
    gen = tmp_path / "gen"
    _gen(source, gen, models=[str(policy), str(other)], n=2)
    summary = prefkit.score(gen, str(tiny_model_path(reward=True)), device="cpu")
    assert summary["completions"] == 40 and summary["scored"] == 40
    rows = completions(gen)
    assert all(isinstance(c["rm_score"], float) for r in rows for c in r)
    pairs = tmp_path / "pairs"
    result = prefkit.build(str(gen), pairs, formats={"rating": "rm_score", "pairs": "best-vs-worst"})
    assert result.manifest["splits"]["train"]["kept"] == 10
    table = pq.read_table(next((pairs / "data").glob("*.parquet"))).to_pylist()
    for row, comps in zip(table, rows, strict=True):
        best = max(comps, key=lambda c: c["rm_score"])
        worst = min(comps, key=lambda c: c["rm_score"])
        assert (
            row["chosen"][0]["content"] == best["response"]
            and row["rejected"][0]["content"] == worst["response"]
        )
        assert row["margin"] == pytest.approx(best["rm_score"] - worst["rm_score"])
    assert "rated by `rm_score` with `--pairs best-vs-worst`" in (pairs / "README.md").read_text()
    assert "completion(s) per prompt" in (gen / "README.md").read_text()
    prefkit.reflogps(pairs, str(policy), max_length=96, device="cpu")
    trainer = _trainer(policy, _load(pairs), tmp_path, prefkit_manifest=pairs)
    assert abs(_first_loss(trainer) - LN2) < 1e-4
    assert math.isfinite(LN2)


def test_delta_pairs_take_chosen_and_rejected_from_the_named_models(source, tmp_path):
    import prefkit

    strong, weak = str(tiny_model_path()), str(tiny_model_path(seed=1))
    gen = tmp_path / "gen"
    _gen(source, gen, models=[strong, weak], n=2, temperature=1.0)
    rows = completions(gen)
    pairs = tmp_path / "pairs"
    prefkit.build(
        str(gen), pairs, formats={"chosen_from": strong, "rejected_from": weak, "pairs": "all-pairs"}
    )
    table = pq.read_table(next((pairs / "data").glob("*.parquet"))).to_pylist()
    assert len(table) == 10 * 4  # 2 strong x 2 weak completions per prompt
    strong_texts = {c["response"] for r in rows for c in r if c["model"] == strong}
    weak_texts = {c["response"] for r in rows for c in r if c["model"] == weak}
    assert all(r["chosen"][0]["content"] in strong_texts for r in table)
    assert all(r["rejected"][0]["content"] in weak_texts for r in table)
    assert all(r["margin"] is None for r in table)
    assert f"every chosen answer is a completion of `{strong}`" in (pairs / "README.md").read_text()


def test_prompt_only_shape_is_detected_and_counted_by_build(source, tmp_path):
    import prefkit
    from prefkit.formats import detect
    from prefkit.sources import head, load_source

    assert detect(head(load_source(str(source)).splits["train"], 8)).family == "prompt-only"
    from prefkit.errors import EmptyResultError

    with pytest.raises(EmptyResultError, match=r"11 invalid \(prompt_only 11\)"):  # the empty-set rule
        prefkit.build(str(source), tmp_path / "b")
    assert not (tmp_path / "b").exists()
    counts = prefkit.build(str(source), tmp_path / "c", dry_run=True).manifest["splits"]["train"]
    assert counts["kept"] == 0 and counts["invalid"] == {"prompt_only": 11}


def test_errors_are_one_line(source, sampled, tmp_path, capsys):
    model = str(tiny_model_path())
    code, _, err = run_cli(
        ["generate", str(source), "--model", model, "-o", str(sampled), "--seed", "8", "--device", "cpu"],
        capsys,
    )
    assert code == 1 and "Error:" in err and "--overwrite" in err  # other settings over a finished set
    for command in (["stats", str(sampled)], ["reflogps", str(sampled), "--model", model, "--device", "cpu"]):
        code, _, err = run_cli(command, capsys)
        assert code == 1 and "not pairs" in err and "prefkit build" in err
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("mine")
    code, _, err = run_cli(
        ["generate", str(source), "--model", model, "-o", str(other), "--overwrite"], capsys
    )
    assert code == 1 and "not a prefkit output folder" in err and (other / "x.txt").exists()
    code, _, err = run_cli(
        ["generate", str(source), "--model", model, "-o", str(tmp_path / "v"), "--engine", "vllm"], capsys
    )
    try:
        import vllm  # noqa: F401
    except ImportError:
        assert code == 1 and "vllm" in err and "Hint: pip install" in err


def test_judge_answers_that_do_not_parse_are_counted_not_guessed(sampled, tmp_path, capsys):
    out = tmp_path / "gen"
    shutil.copytree(sampled, out)
    args = [
        "score",
        str(out),
        "--judge",
        str(tiny_model_path()),
        "--judge-max-new-tokens",
        "6",
        "--device",
        "cpu",
    ]
    code, stdout, err = run_cli([*args, "--json"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["completions"] == 30 and summary["scored"] == 0 and summary["judge_calls"] == 30
    assert sum(summary["unparsed"].values()) == 30 and set(summary["unparsed"]) <= {"no_match", "cut_off"}
    assert all(c["judge_score"] is None for r in completions(out) for c in r)
    assert "unparsed" in err
    manifest = json.loads((out / "prefkit.json").read_text())
    assert manifest["judge"]["rubric"]["name"] == "ultrafeedback-overall"
    code, _, err = run_cli(args, capsys)
    assert code == 0  # the same command again: already complete


def test_rubrics_parse_ratings_and_verdicts_and_swap_positions(tmp_path):
    from prefkit.errors import OptionError
    from prefkit.generate.engine import Output
    from prefkit.rewards.judge import builtin_rubrics, load_rubric, pairwise_scores

    assert {"ultrafeedback-overall", "pairwise"} <= set(builtin_rubrics())
    rating = load_rubric("ultrafeedback-overall")
    said = lambda text, finish="stop": Output(text, None, finish, 1, 1)  # noqa: E731
    assert rating.parse(said("Feedback: fine.\nOverall Score: 7")) == (7.0, None)
    assert rating.parse(said("Overall Score: 11")) == (None, "out_of_scale")
    assert rating.parse(said("I think it is good")) == (None, "no_match")
    assert rating.parse(said("Feedback: the answer", "length")) == (None, "cut_off")
    pairwise = load_rubric("pairwise")
    assert pairwise.parse(said("B is better. [[B]]")) == ("B", None)
    # 0 beats 1 in both orders; 0 vs 2 flips with the order (a tie); 1 vs 2 has an unparsed verdict (left out)
    scores, disagree = pairwise_scores(3, {(0, 1): ("A", "B"), (0, 2): ("A", "A"), (1, 2): (None, "B")})
    assert scores == [0.75, 0.0, 0.5] and disagree == 1
    own = tmp_path / "mine.json"
    own.write_text(json.dumps({"kind": "rating", "template": "{prompt} {response}", "pattern": "(\\d+)"}))
    assert load_rubric(str(own)).parse(said("5")) == (5.0, None)
    with pytest.raises(OptionError, match="unknown --rubric 'nope'"):
        load_rubric("nope")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_openai_engine_against_transformers_serve_equals_the_transformers_engine(
    source, tmp_path, monkeypatch
):
    """`transformers serve` (transformers' own OpenAI-compatible server) on the tiny model: greedy completions
    through --engine openai equal the transformers engine's; the token is sent but never recorded."""
    import time
    import urllib.request

    for module in ("fastapi", "uvicorn", "openai"):
        pytest.importorskip(module)
    model = str(tiny_model_path())
    port = _free_port()
    serve = shutil.which("transformers", path=str(Path(sys.executable).parent)) or "transformers"
    server = subprocess.Popen(
        [serve, "serve", model, "--device", "cpu", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, (
                    "transformers serve did not start"
                )
                time.sleep(1)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-never-recorded")
        served = _gen(
            source,
            tmp_path / "served",
            n=1,
            temperature=0.0,
            engine="openai",
            endpoint=f"http://127.0.0.1:{port}/v1",
            max_prompts=4,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    local = _gen(source, tmp_path / "local", n=1, temperature=0.0, max_prompts=4)
    assert served["completions"] == local["completions"] == 4

    def strip(rows):
        return [[(c["response"], c["completion_tokens"], c["prompt_tokens"]) for c in r] for r in rows]

    assert strip(completions(tmp_path / "served")) == strip(completions(tmp_path / "local"))
    manifest = (tmp_path / "served" / "prefkit.json").read_text()
    assert "sk-test" not in manifest and json.loads(manifest)["generate"]["engine"] == "openai"


@pytest.mark.slow
def test_ray_executor_gives_the_one_worker_completions(source, sampled, tmp_path, monkeypatch):
    """Two Ray tasks on a local Ray instance share the job through the leases: the same completions."""
    pytest.importorskip("ray")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # Ray's worker processes import this checkout's prefkit
    monkeypatch.setenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    out = tmp_path / "gen"
    summary = _gen(source, out, executor="ray", workers=2)
    assert summary["executor"] == "ray" and len(summary["ray_tasks"]) == 2
    assert sum(t["scored"] for t in summary["ray_tasks"]) == 3  # 10 prompts in shards of 4
    assert completions(out) == completions(sampled)


@pytest.mark.slow
def test_killed_worker_process_resumes_to_the_same_completions(source, sampled, tmp_path):
    """A worker killed (SIGKILL) after its first shard: the same command again finishes the job with the same
    completions (shards of 2 prompts, so the kill lands mid-job)."""
    import signal
    import time

    out = tmp_path / "gen"
    proc = _worker(source, out)
    work = out / ".generate-work"
    deadline = time.monotonic() + 240
    while not (work.is_dir() and list(work.glob("*.parquet"))):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    staged = pq.read_schema(next((out / "data").glob("*.parquet")))
    assert "completions" not in staged.names  # the prompt set, not merged yet
    again = _worker(source, out)
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr[-2000:]
    summary = json.loads(stdout)
    assert summary["shards"]["resumed"] >= 1 and summary["shards"]["merged_here"]
    assert completions(out) == completions(sampled)


def test_stop_strings_template_kwargs_and_reasoning_split():
    from prefkit.generate.engine import Request
    from prefkit.generate.hf import TransformersEngine
    from prefkit.generate.sampling import SamplingParams, split_reasoning
    from prefkit.reflogps.job import ModelOptions

    engine = TransformersEngine(str(tiny_model_path()), ModelOptions(device="cpu"), {})
    prompt = [{"role": "user", "content": "Explain rain to a child"}]
    plain = engine.generate([Request(prompt, 0)], SamplingParams(temperature=0.0, max_new_tokens=16))[0]
    stop = plain.response[6:9]
    cut = engine.generate(
        [Request(prompt, 0)], SamplingParams(temperature=0.0, max_new_tokens=16, stop=(stop,))
    )[0]
    assert cut.response == plain.response[: plain.response.find(stop)] and cut.finish_reason == "stop"
    # chat_template_kwargs reach the template (the tiny template closes an empty think block when told)
    off = engine.render(Request(prompt, 0, {"enable_thinking": False}))
    assert len(off) > len(engine.render(Request(prompt, 0)))
    assert "<think>" in engine.loaded.tokenizer.decode(off)
    assert split_reasoning("<think>\nsteps\n</think>\n\nThe answer") == ("The answer", "steps")
    assert split_reasoning("no reasoning") == ("no reasoning", None)


def test_max_prompts_counts_only_the_rows_read(source, tmp_path):
    """With --max-prompts the rows after the last prompt taken are not read, so the counts still add up and the
    set reads back (the count check of every reader refused it when read counted the whole batch)."""
    from prefkit.output import read_output

    out = tmp_path / "few"
    _gen(source, out, n=1, temperature=0.0, max_prompts=3)
    counts = json.loads((out / "prefkit.json").read_text())["splits"]["train"]
    lost = sum(counts["dropped"].values()) + sum(counts["invalid"].values())
    assert counts["kept"] == 3 and counts["read"] == counts["kept"] + lost
    assert read_output(out).manifest["splits"]["train"]["kept"] == 3
