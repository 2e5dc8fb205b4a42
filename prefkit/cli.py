"""The `prefkit` command line: a thin click layer over the library.

Each command lives in ``prefkit/commands/<name>.py`` as a click command named ``command``; this module only
dispatches, and turns :class:`~prefkit.errors.PrefkitError` into ``Error: … / Hint: …`` on stderr, exit 1.
"""

from __future__ import annotations

import importlib
import sys

import click

from prefkit import __version__
from prefkit.errors import PrefkitError

#: exit codes of every command (docs/cli.md)
EXIT_CODES = {
    0: "success",
    1: "an error prefkit explains (`Error: …` / `Hint: …` on stderr; with `--json` also a JSON object on stdout), "
    "or `verify` found values beyond tolerance",
    2: "a usage error (unknown option, missing argument)",
    130: "interrupted (Ctrl-C)",
}

#: command name -> one-line summary (shown by `prefkit --help` without importing the command modules)
COMMANDS: dict[str, str] = {
    "build": "Load preference datasets, normalise, validate, filter by margin, write a clean set.",
    "detect": "Show which dataset shape a source has and how its columns are mapped.",
    "reflogps": "Precompute the reference model's log-probs (TRL-exact) into the set.",
    "verify": "Recompute a sample of reference log-probs the plain way and report the largest difference.",
    "stats": "Counts, margins, token lengths and length bias of a built set.",
    "presets": "List the known Hub datasets and how prefkit reads each.",
    "push": "Publish a built set to the Hugging Face Hub with a dataset card.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if _module_exists(name)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not _module_exists(name):
            return None
        cmd = importlib.import_module(f"prefkit.commands.{name}").command
        cmd.short_help = COMMANDS[name]
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(f"prefkit.commands.{name}") is not None


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="prefkit")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """prefkit: prepare preference data for DPO.

    \b
    Typical flow:
      prefkit build mlabonne/chatml-OpenHermes2.5-dpo-binarized-alpha --top 2000 -o hermes2k
      prefkit reflogps hermes2k --model ./my-sft-model
      prefkit push hermes2k me/hermes-dpo-2k

    Run `prefkit COMMAND --help` for the options and examples of each command.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `prefkit` script and `python -m prefkit`."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        code = cli.main(args=argv, prog_name="prefkit", standalone_mode=False)
        if isinstance(code, int) and code:  # ctx.exit(n) returns n when not in standalone mode
            sys.exit(code)
    except PrefkitError as err:
        if debug:
            raise
        click.echo(f"Error: {err.message}", err=True)
        if err.hint:
            click.echo(f"Hint: {err.hint}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
