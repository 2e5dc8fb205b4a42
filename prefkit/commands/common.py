"""Options and rendering shared by several commands: option groups defined once, stacked where needed."""

from __future__ import annotations

import json
import shlex
import sys

import click

from prefkit.commands.flags import group_options, spec

#: where in a source to read (`detect`)
source_options = group_options("sources", exclude=("preset", "allow_changed_sources"))
#: the shape and column overrides (`detect`)
column_options = group_options(
    "formats", only=("format", "prompt_col", "chosen_col", "rejected_col", "system_col", "margin_col")
)
#: the target model's tokenizer and template (`stats`, `report`)
target_options = group_options("target")


def checked_token(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The ``--token`` callback: refuse a token with whitespace or control characters before any request, and
    mask it from then on (:func:`prefkit.secrets.check_token`)."""
    from prefkit.secrets import check_token

    from_env = ctx.get_parameter_source(param.name or "token") == click.core.ParameterSource.ENVIRONMENT
    check_token(value, "HF_TOKEN" if from_env else "--token")
    return value


token_option = click.option(
    "--token",
    envvar="HF_TOKEN",
    callback=checked_token,
    help="Hugging Face token (default: HF_TOKEN or your `hf auth login`).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")


def scoring_model_options(
    required: bool = True,
    help_suffix: str = "",
    flag: str = "--model",
    short: str | None = "-m",
    dtype_note: str = " (log-probs are summed in fp32)",
    optional_model: bool = False,
):
    """--model/--revision/--dtype/--device/--attn-implementation/--chat-template/--trust-remote-code and the
    quantization / adapter flags of :class:`prefkit.loading.LoadOptions` (`reflogps`, `verify`, `score`);
    ``required=False`` leaves the recorded model as the default. ``flag``/``short`` name the model option (`score`
    takes ``--reward-model``); the value always goes to the ``model`` parameter; ``optional_model``: the model
    option may be left out (`score --judge` names another model)."""
    default = None if not required else "auto"
    opts = [
        click.option(
            *([short] if short else []),
            flag,
            "model",
            metavar="MODEL",
            required=required and not optional_model,
            help="Model: a local folder or a Hub model id" + (help_suffix or "."),
        ),
        click.option(
            "--revision", help="Hub branch, tag or commit of the model (recorded as the resolved commit)."
        ),
        click.option(
            "--dtype",
            default=default,
            show_default=required,
            type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
            help=f"Compute dtype; auto = bfloat16 on CUDA, float32 on the CPU{dtype_note}"
            + ("." if required else "; default: the recorded one."),
        ),
        click.option(
            "--device",
            default="auto",
            show_default=True,
            help="cpu, cuda, cuda:N or auto (under torchrun: one GPU per rank).",
        ),
        click.option(
            "--attn-implementation",
            default="sdpa",
            show_default=True,
            help="transformers attention kernel: sdpa, eager, flash_attention_2, ...",
        ),
        click.option(
            "--chat-template",
            metavar="NAME|FILE",
            help="Chat template to use instead of the tokenizer's: a built-in name, a Jinja file or the template text.",
        ),
        click.option(
            "--trust-remote-code", is_flag=True, help="Allow custom model/tokenizer code from the repo."
        ),
    ]

    def decorate(f):
        f = load_options(f)
        for opt in reversed(opts):
            f = opt(f)
        return f

    return decorate


#: the scoring model's quantization and adapter (`reflogps`, `verify`, `score`), from
#: :class:`prefkit.loading.LoadOptions` (read as data, like the build's groups)
load_options = group_options("load")


def given_load_options(values: dict) -> dict:
    """The :class:`~prefkit.loading.LoadOptions` flags given on the command line (None and unset flags left out),
    as keywords."""
    names = {entry["name"] for entry in spec()["groups"]["load"]}
    return {k: v for k, v in values.items() if k in names and v is not None}


def command_line() -> str:
    """The command as typed, for the manifest (``prefkit`` + arguments), secrets redacted."""
    from prefkit.secrets import redact_argv

    return shlex.join(["prefkit", *redact_argv(sys.argv[1:])])


def echo_json(obj: dict) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def render_counts(
    splits: dict[str, dict],
    seconds: float | None = None,
    output: str | None = None,
    export: dict | None = None,
) -> None:
    """The human summary: read / kept / dropped / invalid (/ added) per split, the reasons, what an export wrote
    (stderr)."""
    from prefkit.accounting import meaning

    err = lambda s="": click.echo(s, err=True)  # noqa: E731
    added_any = any(c.get("added") for c in splits.values())
    header = f"{'split':<16} {'read':>9} {'kept':>9} {'dropped':>9} {'invalid':>9}" + (
        f" {'added':>9}" if added_any else ""
    )
    err(header)
    err("-" * len(header))
    for name, c in splits.items():
        row = f"{name:<16} {c['read']:>9,} {c['kept']:>9,} {sum(c['dropped'].values()):>9,} {sum(c['invalid'].values()):>9,}"
        err(row + (f" {sum((c.get('added') or {}).values()):>9,}" if added_any else ""))
    reasons: dict[tuple[str, str], int] = {}
    for c in splits.values():
        for stage in ("dropped", "invalid", "added", "flags"):
            for r, n in c.get(stage, {}).items():
                reasons[(stage, r)] = reasons.get((stage, r), 0) + n
    if reasons:
        err()
        for (stage, r), n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            err(f"  {stage:<8} {r:<28} {n:>9,}  {meaning(stage, r)}")
    if export:
        rows = sum(s.get("rows", 0) for s in export.get("splits", {}).values())
        kept = sum(c["kept"] for c in splits.values())
        err()
        err(f"  export {export['shape']}: {rows:,} rows written from {kept:,} kept pairs")
    tail = []
    if output:
        tail.append(f"wrote {output}")
    if seconds is not None:
        tail.append(f"in {seconds:.1f}s")
    if tail:
        err()
        err(" ".join(tail))
