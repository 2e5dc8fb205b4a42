"""What `prefkit generate` can be told, as data: where the prompts come from (:class:`PromptOptions`), and the whole
options of the command (:class:`GenerateOptions`): the models and how many completions, sampling
(:class:`prefkit.generate.sampling.SamplingParams`), the engine, the prompts, the model's loading
(:class:`prefkit.loading.ModelOptions`) and the job (:class:`prefkit.reflogps.options.JobOptions`). Each option is
declared once; the flags of `prefkit generate` and the keywords of :func:`prefkit.generate.job.generate` are these
fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import field_validator

from prefkit.errors import OptionError
from prefkit.generate.base import ENGINES
from prefkit.generate.sampling import SamplingParams
from prefkit.jobs.options import JobOptions, lease_option, resume_option
from prefkit.loading import RUN_FLAGS, ModelOptions
from prefkit.optionspec import CommandOptions, OptionGroup, option
from prefkit.values import names

#: prompts per work shard
DEFAULT_SHARD_ROWS = 256
#: where the job's workers run
EXECUTORS = ("local", "ray")


class PromptOptions(OptionGroup):
    """Where the prompts come from: the source's splits, Hub revision, shape and columns, and at most
    ``max_prompts`` prompts per split."""

    split: tuple[str, ...] | None = option(
        None, "Split(s) of SOURCE to read (repeatable). Default: all splits."
    )
    source_revision: str | None = option(None, "Hub branch, tag or commit of SOURCE.")
    format: str | None = option(None, "Force the source's shape (e.g. prompt-only) instead of detecting it.")
    prompt_col: str | None = option(None, "Column holding the prompt (text or messages).")
    system_col: str | None = option(None, "Column holding a system prompt.")
    max_prompts: int | None = option(None, "At most this many prompts per split (the first ones).", ge=1)
    token: str | bool | None = option(None, "Hugging Face token for a Hub source.", cli=False)

    @field_validator("split", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return names(value, None) or None

    def read_keywords(self) -> dict[str, Any]:
        """The keywords of :func:`prefkit.generate.prompts.read_prompts`."""
        return {
            "split": list(self.split) if self.split else None,
            "revision": self.source_revision,
            "format": self.format,
            "prompt_col": self.prompt_col,
            "system_col": self.system_col,
            "max_prompts": self.max_prompts,
            "token": self.token,
        }


class GenerateOptions(JobOptions, ModelOptions, PromptOptions, SamplingParams, CommandOptions):
    """Everything `prefkit generate` (:func:`prefkit.generate.job.generate`) can be told."""

    COMMAND = "generate"
    FLAGS = (
        "model",
        "n",
        "output",
        "temperature",
        "top_p",
        "top_k",
        "max_new_tokens",
        "seed",
        "stop",
        "chat_template_kwargs",
        "engine",
        "endpoint",
        "executor",
        "ray_address",
        "workers",
        "batch_size",
        "split",
        "source_revision",
        "format",
        "prompt_col",
        "system_col",
        "max_prompts",
        *RUN_FLAGS,
        "shard_rows",
        "lease_seconds",
        "resume",
        "overwrite",
    )

    model: tuple[str, ...] | None = option(
        None,
        "Model that writes completions: a local folder or a Hub model id (repeatable: K completions from each).",
        decls=("-m", "--model"),
        metavar="MODEL",
        required=True,
    )
    n: int = option(1, "Completions per prompt per model.", decls=("-n",), ge=1)
    output: Path | None = option(None, "Output folder.", decls=("-o", "--output"), required=True, path="dir")
    chat_template_kwargs: dict | None = option(
        None,
        """Arguments for the models' chat templates, e.g. '{"enable_thinking": false}' (a row's own win).""",
        metavar="JSON",
    )
    engine: str = option(
        "transformers",
        "What generates: transformers (CPU or GPU), vllm (extra prefkit[vllm], GPU), or openai (an "
        "OpenAI-compatible server at --endpoint).",
        choices=ENGINES,
    )
    endpoint: str | None = option(
        None,
        "--engine openai: the server's base URL (e.g. http://localhost:8000/v1); the token is read from "
        "OPENAI_API_KEY and never recorded. --model is the served model's name.",
        metavar="URL",
    )
    executor: str = option(
        "local",
        "local: this process is one worker (start more with the same command); ray: --workers Ray tasks are the "
        "workers (extra prefkit[ray]; OUT on storage every node reaches).",
        choices=EXECUTORS,
    )
    ray_address: str | None = option(
        None,
        "--executor ray: the cluster (ray://head:10001, auto); default: a local Ray instance.",
        metavar="ADDRESS",
    )
    workers: int | None = option(
        None,
        "--executor ray: Ray tasks (workers) to run (default: one per GPU of the cluster, or one).",
        ge=1,
    )
    batch_size: int | None = option(
        None,
        "Completions per generate() call (transformers engine; default 32), or requests in flight (openai; 8).",
        ge=1,
    )
    revision: str | None = option(
        None, "Hub branch, tag or commit of the model(s) (recorded as the resolved commit)."
    )
    chat_template: str | None = option(
        None, "Chat template to use instead of the tokenizer's.", metavar="NAME|FILE"
    )
    shard_rows: int = option(
        DEFAULT_SHARD_ROWS, "Prompts per work shard (the unit of resume and of work a worker leases).", ge=1
    )
    lease_seconds: float = lease_option(
        "How long this worker's claim on a shard lasts without renewal; a killed worker's shard is taken over "
        "after this long."
    )
    resume: bool = resume_option(
        "Continue from the finished shards (same options; also joins workers already running)."
    )
    overwrite: bool = option(
        False,
        "Replace OUT when it holds something else, and discard unfinished work from a run with other options.",
    )

    @field_validator("model", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        return names(value, None)

    @field_validator("chat_template_kwargs", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        """A JSON object's text (the flag) is read; ``""`` is none."""
        if not isinstance(value, str):
            return value
        if not value:
            return None
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise OptionError(
                f"--chat-template-kwargs must be a JSON object, got {value!r}",
                """e.g. --chat-template-kwargs '{"enable_thinking": false}'""",
            )
        return parsed

    @property
    def sampling(self) -> SamplingParams:
        return self.part(SamplingParams)

    @property
    def prompts(self) -> PromptOptions:
        return self.part(PromptOptions)
