"""`prefkit generate`."""

from __future__ import annotations

import json

import click

from prefkit.commands.reflogps import run_job
from prefkit.errors import OptionError


def _kwargs(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise OptionError(
            f"--chat-template-kwargs must be a JSON object, got {text!r}",
            """e.g. --chat-template-kwargs '{"enable_thinking": false}'""",
        )
    return value


@click.command("generate", context_settings={"max_content_width": 100})
@click.argument("source")
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    required=True,
    metavar="MODEL",
    help="Model that writes completions: a local folder or a Hub model id (repeatable: K completions from each).",
)
@click.option(
    "-n",
    "n",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Completions per prompt per model.",
)
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option(
    "--temperature",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Sampling temperature (GenerationConfig / SamplingParams name); 0 is greedy.",
)
@click.option(
    "--top-p",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=1.0,
    show_default=True,
    help="Nucleus sampling: keep the smallest set of tokens whose probability reaches it (1.0: off).",
)
@click.option(
    "--top-k",
    type=click.IntRange(min=0),
    help="Keep the k most likely tokens (default, or 0: off, as vLLM's default).",
)
@click.option(
    "--max-new-tokens",
    type=click.IntRange(min=1),
    default=512,
    show_default=True,
    help="Most tokens generated per completion (the end-of-sequence token included).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Run seed: each completion's seed derives from (seed, prompt id, sample index).",
)
@click.option("--stop", multiple=True, help="A string that ends a completion, left out of it (repeatable).")
@click.option(
    "--chat-template-kwargs",
    metavar="JSON",
    help="""Arguments for the models' chat templates, e.g. '{"enable_thinking": false}' (a row's own win).""",
)
@click.option(
    "--engine",
    type=click.Choice(["transformers", "vllm", "openai"]),
    default="transformers",
    show_default=True,
    help="What generates: transformers (CPU or GPU), vllm (extra prefkit[vllm], GPU), or openai (an "
    "OpenAI-compatible server at --endpoint).",
)
@click.option(
    "--endpoint",
    metavar="URL",
    help="--engine openai: the server's base URL (e.g. http://localhost:8000/v1); the token is read from "
    "OPENAI_API_KEY and never recorded. --model is the served model's name.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this process is one worker (start more with the same command); ray: --workers Ray tasks are the "
    "workers (extra prefkit[ray]; OUT on storage every node reaches).",
)
@click.option(
    "--ray-address",
    metavar="ADDRESS",
    help="--executor ray: the cluster (ray://head:10001, auto); default: a local Ray instance.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="--executor ray: Ray tasks (workers) to run (default: one per GPU of the cluster, or one).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Completions per generate() call (transformers engine; default 32), or requests in flight (openai; 8).",
)
@click.option("--split", multiple=True, help="Split(s) of SOURCE to read (repeatable). Default: all splits.")
@click.option("--source-revision", help="Hub branch, tag or commit of SOURCE.")
@click.option(
    "--format", "format_", help="Force the source's shape (e.g. prompt-only) instead of detecting it."
)
@click.option("--prompt-col", help="Column holding the prompt (text or messages).")
@click.option("--system-col", help="Column holding a system prompt.")
@click.option(
    "--max-prompts", type=click.IntRange(min=1), help="At most this many prompts per split (the first ones)."
)
@click.option(
    "--revision", help="Hub branch, tag or commit of the model(s) (recorded as the resolved commit)."
)
@click.option(
    "--dtype",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
    help="Compute dtype; auto = bfloat16 on CUDA, float32 on the CPU.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="cpu, cuda, cuda:N or auto (under torchrun: one GPU per rank).",
)
@click.option(
    "--attn-implementation",
    default="sdpa",
    show_default=True,
    help="transformers attention kernel: sdpa, eager, flash_attention_2, ...",
)
@click.option("--chat-template", metavar="NAME|FILE", help="Chat template to use instead of the tokenizer's.")
@click.option("--trust-remote-code", is_flag=True, help="Allow custom model/tokenizer code from the repo.")
@click.option(
    "--shard-rows",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Prompts per work shard (the unit of resume and of work a worker leases).",
)
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=0.5),
    default=120.0,
    show_default=True,
    help="How long this worker's claim on a shard lasts without renewal; a killed worker's shard is taken over after this long.",
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue from the finished shards (same options; also joins workers already running).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace OUT when it holds something else, and discard unfinished work from a run with other options.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
def command(
    source,
    models,
    n,
    out,
    temperature,
    top_p,
    top_k,
    max_new_tokens,
    seed,
    stop,
    chat_template_kwargs,
    engine,
    endpoint,
    executor,
    ray_address,
    workers,
    batch_size,
    split,
    source_revision,
    format_,
    prompt_col,
    system_col,
    max_prompts,
    revision,
    dtype,
    device,
    attn_implementation,
    chat_template,
    trust_remote_code,
    shard_rows,
    lease_seconds,
    resume,
    overwrite,
    as_json,
    quiet,
):
    """Sample N completions per prompt of SOURCE from each --model, into a set build can pair.

    SOURCE is anything `prefkit build` reads (a Hub id, a file or folder, a prefkit set; any shape) or a
    prompt-only set (a `prompt` column of text or messages); each distinct prompt is rendered with the model's
    own chat template and generation prompt. OUT gets `prompt_id`, `prompt` and `completions` (UltraFeedback's
    names: `model`, `response`, plus `reasoning_content`, revision, sampling parameters, seed, finish_reason
    and token counts); prefkit.json records the engine, its version and the models' provenance.

    Each completion's seed derives from (--seed, prompt id, sample index): a killed run restarted with the same
    command resumes from its finished shards (OUT/.generate-work) and gives the same completions, and any number
    of workers with the same command (machines sharing OUT, torchrun ranks) share the work.

    \b
    Then score and pair:
      prefkit score OUT --reward-model RM                  # each completion gets rm_score
      prefkit build OUT --rating rm_score --pairs best-vs-worst -o pairs
      prefkit build OUT --chosen-from BIG --rejected-from SMALL -o delta   # delta pairs

    \b
    Examples:
      prefkit generate prompts.jsonl --model Qwen/Qwen3-0.6B -n 4 --temperature 0.8 -o gen
      prefkit generate HuggingFaceH4/ultrafeedback_binarized --split train_prefs --max-prompts 1000 \\
          --model Qwen/Qwen3-1.7B --model Qwen/Qwen3-0.6B -n 2 --chat-template-kwargs '{"enable_thinking": false}' -o gen
      torchrun --nproc-per-node 8 -m prefkit generate prompts.jsonl --model ./policy -n 8 -o /shared/gen
    """
    from prefkit.generate.job import generate

    run_job(
        generate,
        quiet,
        as_json,
        source=source,
        output=out,
        model=list(models),
        n=n,
        engine=engine,
        endpoint=endpoint,
        chat_template_kwargs=_kwargs(chat_template_kwargs),
        temperature=temperature,
        top_p=top_p,
        top_k=top_k or None,
        max_new_tokens=max_new_tokens,
        seed=seed,
        stop=tuple(stop),
        batch_size=batch_size,
        executor=executor,
        ray_address=ray_address,
        workers=workers,
        split=list(split) or None,
        revision=revision,
        format=format_,
        prompt_col=prompt_col,
        system_col=system_col,
        max_prompts=max_prompts,
        dtype=dtype,
        device=device,
        attn_implementation=attn_implementation,
        chat_template=chat_template,
        trust_remote_code=trust_remote_code,
        shard_rows=shard_rows,
        lease_seconds=lease_seconds,
        resume=resume,
        overwrite=overwrite,
    )

