"""Options and rendering shared by several commands: option groups defined once, stacked where needed."""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

import click

from prefkit.commands.flags import command_model, group_options, spec
from prefkit.commands.options import RECIPE

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


quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")


def model_command(name: str, argument: Callable, outputs: tuple[Callable, ...] = ()) -> Callable:
    """A command (`reflogps`, `score`, `verify`, `generate`) whose flags are its options model's
    (:data:`prefkit.commands.flags.COMMANDS`, read as data by :mod:`prefkit.commands.flags`), after its
    ``argument``, then ``--recipe`` and ``outputs`` (default ``--json`` and ``-q``); the callback gets the click
    context first and the options as ``**flags``; :func:`prefkit.commands.options.given` adds the recipe's.

    A flag the command needs (``option(required=True)``: `reflogps`' ``--model``) may come from the recipe
    instead, so click does not require it: it is checked once the recipe is read (click's own error when it is
    in neither)."""
    required = tuple(e["name"] for e in spec()["groups"][name] if e.get("required"))
    helps = {e["name"]: e.get("help") or "" for e in spec()["groups"][name]}
    overrides = {n: {"required": False, "help": f"{helps[n]} Required (here or in --recipe)."} for n in required}
    decorators = (
        click.command(name, context_settings={"max_content_width": 100}),
        argument,
        group_options(name, overrides=overrides),
        recipe_option(name),
        *(outputs or (json_option, quiet_option)),
        click.pass_context,
    )

    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def with_recipe(ctx: click.Context, *args: Any, recipe: str | None = None, **flags: Any) -> Any:
            read = command_model(name).from_file(recipe).given() if recipe is not None else {}
            ctx.meta[RECIPE] = read
            for param in ctx.command.params:
                if param.name in required and flags.get(param.name) in (None, ()) and param.name not in read:
                    also = f"Give it, or `{param.name}:` in a --recipe file (its `{name}:` section or the whole file)."
                    raise click.MissingParameter(also, ctx=ctx, param=param)
            return f(ctx, *args, **flags)

        out: Callable = with_recipe
        for decorator in reversed(decorators):
            out = decorator(out)
        return out

    return decorate


def recipe_option(command: str) -> Callable:
    """``--recipe FILE``: the command's options from a YAML/JSON file
    (:meth:`prefkit.optionspec.CommandOptions.from_file`)."""
    return click.option(
        "--recipe",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help=f"Read options from a YAML/JSON file: its `{command}:` section, or the whole file, by their Python "
        "names (`max_length: 2048`). Flags given here win.",
    )


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
