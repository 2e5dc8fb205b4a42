"""`prefkit score OUT --judge MODEL [--rubric NAME|FILE]`: an LLM judge's score of every completion of a generated
set (``judge_score``, float32, in each completion's struct), on the sharded job machinery (work folder
``.judge-work``, manifest section ``judge``), through a generation engine (:mod:`prefkit.generate.engine`,
greedy).

A rubric is data: a JSON file (built-in ones in ``prefkit/rewards/rubrics/``, or a file of your own) with
``kind`` (``rating``: one answer, a number; ``pairwise``: two answers, a verdict ``A``/``B``/``C`` for a tie),
``template`` (``{prompt}``, ``{response}`` or ``{response_a}``/``{response_b}``), an optional ``system``
message, ``pattern`` (a regular expression whose first group is the rating or the verdict; the last match in
the answer counts), ``scale`` (``[low, high]``: a rating outside it does not count) and ``max_new_tokens``.

A pairwise rubric judges every pair of a prompt's completions twice, the answers swapped; a win counts only when
both orders agree, a disagreement is a tie (MT-Bench's position-swap rule), and ``judge_score`` is the share
of a completion's comparisons it won (ties count half). An answer that does not parse is never guessed: its
score is null (rating) or its comparison left out (pairwise), and it is counted by reason (``no_match``: no
rating or verdict in the rubric's format; ``cut_off``: no match and the answer stopped at ``max_new_tokens``;
``out_of_scale``: a rating outside ``scale``).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from prefkit.errors import OptionError, OutputError
from prefkit.generate.base import Engine, Output, Request
from prefkit.generate.engine import load_engine
from prefkit.generate.sampling import SamplingParams
from prefkit.jobs.distributed import init_distributed
from prefkit.jobs.plan import data_fingerprint, settings_fingerprint
from prefkit.jobs.runner import JobKind, JobSpec, merging, run_shards
from prefkit.loading.model import resolve_device
from prefkit.output import OutputFolder, read_output
from prefkit.resources import data_files, read_text
from prefkit.rewards.rm import COLUMN, completion_type, completions_summary, guard, is_generated

FIELD = "judge_score"
SECTION = "judge"
WORK_DIR = ".judge-work"
DEFAULT_RUBRIC = "ultrafeedback-overall"
COUNT_KEYS = ("rows", "scored", "completions", "judge_calls", "tokens")
#: an LLM judge's scores of each completion (with the position-swap disagreements of pairwise rubrics)
KIND = JobKind(SECTION, WORK_DIR, "LLM-judge score", (*COUNT_KEYS, "position_swap_disagrees"))


@dataclass(frozen=True)
class Rubric:
    """A judge prompt and how its answers are read (see the module docstring)."""

    name: str
    kind: str
    template: str
    pattern: str
    system: str | None = None
    scale: tuple[float, float] | None = None
    max_new_tokens: int = 512
    description: str = ""

    def messages(self, **fields: str) -> list[dict]:
        """The judge's conversation: the system message (if any) and the filled template as the user turn."""
        user = {"role": "user", "content": self.template.format(**fields)}
        return ([{"role": "system", "content": self.system}] if self.system else []) + [user]

    def parse(self, out: Output) -> tuple[str | float | None, str | None]:
        """(the rating or verdict, None) or (None, the reason it does not count)."""
        found = re.findall(self.pattern, out.response)
        if not found:
            return None, "cut_off" if out.finish_reason == "length" else "no_match"
        value = found[-1] if isinstance(found[-1], str) else found[-1][0]
        if self.kind == "pairwise":
            return value.strip().upper(), None
        number = float(value)
        if self.scale is not None and not self.scale[0] <= number <= self.scale[1]:
            return None, "out_of_scale"
        return number, None


def builtin_rubrics() -> list[str]:
    return [f.name.removesuffix(".json") for f in data_files("prefkit.rewards", "rubrics", ".json")]


def load_rubric(spec: str | None) -> Rubric:
    """A built-in rubric by name, or a JSON file. Raises OptionError for an unknown name or a malformed file."""

    spec = spec or DEFAULT_RUBRIC
    path = Path(spec)
    try:
        text = (
            path.read_text(encoding="utf-8")
            if path.is_file()
            else read_text("prefkit.rewards", "rubrics", f"{spec}.json")
        )
    except FileNotFoundError:
        raise OptionError(
            f"unknown --rubric {spec!r}", f"use a JSON file or one of: {', '.join(builtin_rubrics())}"
        ) from None
    try:
        data = json.loads(text)
        scale = data.get("scale")
        rubric = Rubric(
            path.stem if path.is_file() else spec,
            data["kind"],
            data["template"],
            data["pattern"],
            data.get("system"),
            tuple(scale) if scale else None,
            int(data.get("max_new_tokens", 512)),
            data.get("description", ""),
        )
        re.compile(rubric.pattern)
    except (ValueError, KeyError, TypeError, re.error) as err:
        raise OptionError(
            f"rubric {spec!r} is malformed ({type(err).__name__}: {err})",
            "a rubric is a JSON object with kind, template and pattern (docs/generate.md)",
        ) from None
    if rubric.kind not in ("rating", "pairwise"):
        raise OptionError(f"rubric {spec!r} has kind {rubric.kind!r}", "kind is rating or pairwise")
    return rubric


def prompt_text(messages: list[dict]) -> str:
    """A prompt as the judge reads it: a lone user turn as its text, a conversation as ``role: content`` lines."""
    turns = [m for m in messages if m.get("content") is not None]
    if len(turns) == 1 and turns[0]["role"] == "user":
        return str(turns[0]["content"])
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in turns)


def pairwise_scores(
    n: int, verdicts: dict[tuple[int, int], tuple[str | None, str | None]]
) -> tuple[list[float | None], int]:
    """Each completion's share of comparisons won (ties half) from ``verdicts[(i, j)] = (verdict with i as A,
    verdict with j as A)``; comparisons with an unparsed verdict are left out. Returns (scores, disagreements)."""
    won = [0.0] * n
    played = [0] * n
    disagree = 0
    for (i, j), (first, second) in verdicts.items():
        if first is None or second is None:
            continue
        winner_first = {"A": i, "B": j}.get(first)
        winner_second = {"A": j, "B": i}.get(second)
        if winner_first is not None and winner_first == winner_second:
            won[winner_first] += 1.0
        else:
            disagree += int(first != "C" or second != "C")
            won[i] += 0.5
            won[j] += 0.5
        played[i] += 1
        played[j] += 1
    return [won[k] / played[k] if played[k] else None for k in range(n)], disagree


def _requests(rubric: Rubric, rows: list[dict]) -> tuple[list[Request], list[tuple[int, int, int | None]]]:
    """The judge's requests for ``rows`` and, for each, (row, completion, the other completion or None): one per
    completion for a rating rubric, one per ordered pair of a row's completions for a pairwise one."""
    requests: list[Request] = []
    where: list[tuple[int, int, int | None]] = []
    for i, row in enumerate(rows):
        text = prompt_text(row["prompt"])
        comps = row.get(COLUMN) or []
        if rubric.kind == "rating":
            for j, c in enumerate(comps):
                requests.append(Request(rubric.messages(prompt=text, response=c.get("response") or ""), 0))
                where.append((i, j, None))
            continue
        for a in range(len(comps)):
            for b in range(len(comps)):
                if a != b:
                    fields = {
                        "prompt": text,
                        "response_a": comps[a].get("response") or "",
                        "response_b": comps[b].get("response") or "",
                    }
                    requests.append(Request(rubric.messages(**fields), 0))
                    where.append((i, a, b))
    return requests, where


def judge_shard(
    engine: Engine, rubric: Rubric, rows: list[dict], on_progress: Any = None
) -> tuple[dict, dict]:
    """``judge_score`` for every completion of ``rows`` → ({"completions": …}, counts)."""
    params = SamplingParams(temperature=0.0, max_new_tokens=rubric.max_new_tokens)
    requests, where = _requests(rubric, rows)
    outputs = engine.generate(
        requests,
        params,
        lambda done, tokens: on_progress and on_progress(done * len(rows) / max(len(requests), 1), tokens),
    )
    out = [[dict(c) for c in (row.get(COLUMN) or [])] for row in rows]
    dropped: Counter = Counter()
    verdicts: list[dict] = [{} for _ in rows]
    for (i, a, other), answer in zip(where, outputs, strict=True):
        value, reason = rubric.parse(answer)
        if reason:
            dropped[reason] += 1
        if other is None:
            out[i][a][FIELD] = value
            continue
        key = (min(a, other), max(a, other))
        first, second = verdicts[i].get(key, (None, None))
        verdicts[i][key] = (value, second) if a < other else (first, value)
    disagree = 0
    if rubric.kind == "pairwise":
        for i, comps in enumerate(out):
            scores, d = pairwise_scores(len(comps), verdicts[i])
            disagree += d
            for c, s in zip(comps, scores, strict=True):
                c[FIELD] = s
    total = sum(len(c) for c in out)
    scored = sum(c.get(FIELD) is not None for comps in out for c in comps)
    counts = {
        "rows": len(rows),
        "completions": total,
        "scored": scored,
        "judge_calls": len(requests),
        "tokens": sum(o.completion_tokens for o in outputs),
        "dropped": dict(dropped),
        "position_swap_disagrees": disagree,
    }
    return {COLUMN: out}, counts


def judge(out_dir: str | Path, options: Any) -> dict:
    """Score every completion of the generated set in ``out_dir`` with the LLM judge ``options.judge`` by
    ``options.rubric`` (a built-in name or a JSON file; default UltraFeedback's overall rating);
    ``options.judge_max_new_tokens`` overrides the rubric's. ``options``:
    :class:`prefkit.rewards.options.ScoreOptions` (the model's options and the job's flags). Returns the summary
    (``unparsed``: answers that did not parse, by reason). Raises OutputError (not a generated set; judge_score
    already there without ``overwrite``), OptionError (the rubric), ModelError."""

    start = time.perf_counter()
    the_rubric = load_rubric(options.rubric)
    if options.judge_max_new_tokens is not None:
        the_rubric = replace(the_rubric, max_new_tokens=options.judge_max_new_tokens)
    folder = read_output(out_dir)
    if not is_generated(folder):
        raise OutputError(
            f"{out_dir} is not a generated set (no completions column)",
            "judge the completions of a set written by `prefkit generate`",
        )
    dev = resolve_device(options.device)
    with init_distributed(dev) as ctx:
        return _run(folder, the_rubric, options.replace(device=str(dev)), ctx, start)


def _run(folder: OutputFolder, rubric: Rubric, options: Any, ctx: Any, start: float) -> dict:

    engine = load_engine("transformers", str(options.judge), options, {})
    spec = _job_spec(folder, engine, rubric, options, ctx)

    def section(shards: list, counts: dict) -> dict:
        return {
            "command": options.command,
            "model": engine.info,
            "rubric": asdict(rubric),
            "columns": [f"{COLUMN}.{FIELD}"],
            "seconds": round(time.perf_counter() - start, 3),
            **counts,
        }

    done = run_shards(folder, spec, ctx, options, merging(folder.path, spec, section))
    return ctx.on_main(lambda: _summary(folder.path, done, time.perf_counter() - start))


def _job_spec(folder: OutputFolder, engine: Any, rubric: Rubric, options: Any, ctx: Any) -> Any:
    """The judge's job: its settings (the judge model, the rubric, the data; fingerprinted) and shard scorer."""


    keep = (
        "model",
        "revision",
        "weights_sha256",
        "tokenizer_sha256",
        "chat_template_sha256",
        "dtype",
        "engine",
        "engine_version",
    )
    settings = ctx.on_main(
        lambda: {
            "kind": "judge",
            "judge": {k: engine.info.get(k) for k in keep},
            "rubric": asdict(rubric),
            "data_sha256": data_fingerprint(folder),
            "shard_rows": options.shard_rows,
            "device": str(engine.info.get("device", "")).split(":")[0],
        }
    )
    guard(folder, FIELD, SECTION, WORK_DIR, settings, options.overwrite)

    def score(rows: list[dict], on_progress: Any) -> tuple[dict, dict]:
        return judge_shard(engine, rubric, rows, on_progress)

    return JobSpec(
        [(COLUMN, completion_type(folder, FIELD))],
        ("prompt", COLUMN),
        settings,
        settings_fingerprint(settings),
        score,
        KIND,
        guard_columns=(),
    )


def _summary(out: Path, run: Any, seconds: float) -> dict:
    section = run.manifest[SECTION]
    about = {"scope": "judge", "judge": section["model"].get("model"), "rubric": section["rubric"]["name"]}
    counts = {"judge_calls": "judge_calls", "unparsed": "dropped", "position_swap_disagrees": "position_swap_disagrees"}
    return completions_summary(out, run, seconds, section, about, counts)
