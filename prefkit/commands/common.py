"""Options and rendering shared by several commands: option groups defined once, stacked where needed."""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

import click

from prefkit.commands.flags import group_options

#: where in a source to read (`detect`)
source_options = group_options("sources", exclude=("preset", "allow_changed_sources"))
#: the shape and column overrides (`detect`)
column_options = group_options(
    "formats", only=("format", "prompt_col", "chosen_col", "rejected_col", "system_col", "margin_col")
)
#: the target model's tokenizer and template (`stats`)
target_options = group_options("chat", exclude=("output_format",))


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


quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")


def command_options(command: str) -> Callable:
    """The flags of `command` (`reflogps`, `score`, `verify`, `generate`), generated from its options model
    (:data:`prefkit.commands.flags.COMMANDS`) and read as data (:mod:`prefkit.commands.flags`)."""
    return group_options(command)


def run_job(job: Callable, quiet: bool, as_json: bool, *args: Any, **keywords: Any) -> Any:
    """Run a command's library function (`reflogps`, `score`, `verify`, `generate`) with its progress bar unless
    ``quiet``; under torchrun only rank 0 reports (``--json`` object on stdout, summary on stderr). Returns the
    result."""
    from prefkit.progress import enabled

    show = enabled(quiet)
    quiet_transformers(quiet or not show)
    result = job(*args, progress=show, **keywords)
    if int(os.environ.get("RANK", "0") or 0) != 0:  # torchrun: rank 0 reports
        return result
    if as_json:
        echo_json(result.to_dict())
    if not quiet:
        click.echo(result.summary(), err=True)
    return result


def quiet_transformers(quiet: bool) -> None:
    """Silence transformers' own progress bars and info logs (they write to stderr)."""
    if quiet:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:
            from transformers.utils import logging

            logging.disable_progress_bar()
            logging.set_verbosity_error()
        except ImportError:
            pass


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
