"""The `prefkit` command line: a thin click layer over the library.

Each command lives in ``prefkit/commands/<name>.py`` as a click command named ``command``; this module only
dispatches, and turns :class:`~prefkit.errors.PrefkitError` into ``Error: … / Hint: …`` on stderr, exit 1.
"""

from __future__ import annotations

import importlib
import json
import sys

import click

from prefkit.errors import PrefkitError
from prefkit.version import __version__

#: exit codes of every command (docs/cli.md)
EXIT_CODES = {
    0: "success",
    1: "an error prefkit explains (`Error: …` / `Hint: …` on stderr; with `--json` also a JSON object on stdout), "
    "or `verify` found values beyond tolerance",
    2: "a usage error (unknown option, missing argument)",
    3: "an unexpected error, i.e. a bug in prefkit (one line; `--debug` shows the traceback)",
    4: "`build` kept no row in the set or in one of its splits: nothing is written, and `Error:` names each empty "
    "split with the reasons its rows ended elsewhere (`--dry-run` and a build without -o only warn)",
    130: "interrupted (Ctrl-C)",
}

#: every wait on the network or on another worker, and what bounds it (docs/cli.md, "Waits and their bounds")
WAIT_BOUNDS: list[tuple[str, str, str]] = [
    (
        "a Hub request (dataset info and files, model and tokenizer downloads, `push`)",
        "`PREFKIT_HUB_TIMEOUT` seconds (default 60) to connect and between bytes of the answer; a request that "
        "times out (dataset and `push` requests), a dropped connection, HTTP 429 or 5xx is retried 4 times, waiting `PREFKIT_HUB_BACKOFF` "
        "seconds (default 2) doubling each time: at most 5 × timeout + 30 s, then one `Error:` line",
        "`PREFKIT_HUB_TIMEOUT`, `PREFKIT_HUB_BACKOFF`",
    ),
    (
        "a request that cannot be sent (a token with whitespace, a bad URL)",
        "never sent or retried: one `Error:` line at once",
        "",
    ),
    (
        "a shard or the merge leased by another worker (`reflogps`, `score`)",
        "its lease time without renewal; a holder renews only while its work progresses, so a hung worker's "
        "shard is taken over at most 2 × its lease time after its last progress; a lease renewed more than its "
        "lease time in the future (clock skew) counts as expired; a corrupted lease lasts this worker's "
        "`--lease-seconds`; each wait prints one line naming the shard and its holder",
        "`--lease-seconds` (0.5 to 86400, default 120)",
    ),
    (
        "the work folder removed or replaced under a worker",
        "30 s for it to come back, then one `Error:` line",
        "",
    ),
]

#: command name -> one-line summary (shown by `prefkit --help` without importing the command modules)
COMMANDS: dict[str, str] = {
    "build": "Load preference datasets, normalise, validate, filter by margin, write a clean set.",
    "detect": "Show which dataset shape a source has and how its columns are mapped.",
    "reflogps": "Precompute the reference model's log-probs (TRL-exact) into the set.",
    "verify": "Recompute a sample of reference log-probs the plain way and report the largest difference.",
    "score": "Score every pair with a reward model (rm_chosen/rm_rejected/rm_margin) and audit the labels.",
    "generate": "Sample completions per prompt from one or more models into a set build can pair.",
    "stats": "Counts, margins, token lengths and length bias of a built set.",
    "report": "Write one self-contained HTML page to look at a built set: rows, rejects, charts.",
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


def fail(message: str, hint: str | None, code: int, as_json: bool) -> None:
    """Report a failure the one way: ``Error: …`` / ``Hint: …`` on stderr (secrets masked), with ``--json`` also
    one JSON object on stdout; then exit with ``code``."""
    from prefkit.secrets import redact

    message, hint = redact(message) or "", redact(hint)
    click.echo(f"Error: {message}", err=True)
    if hint:
        click.echo(f"Hint: {hint}", err=True)
    if as_json:
        click.echo(json.dumps({"error": message, "hint": hint, "exit_code": code}))
    sys.exit(code)


#: what rerunning an interrupted command does (only the scoring jobs resume)
INTERRUPTED: dict[str | None, str] = {
    "reflogps": "rerun the same command: it resumes from the shards it finished",
    "score": "rerun the same command: it resumes from the shards it finished",
    "push": "rerun the same command: a push is one commit, so the repo holds all of it or none of it",
    None: "rerun the same command: it starts over (nothing was left half-written)",
}


def _command_of(args: list[str]) -> str | None:
    return next((a for a in args if a in COMMANDS), None)


def debug_exit(code: int) -> None:
    """With ``--debug``: the traceback of the error being handled on stderr, secrets masked; exit ``code``."""
    from prefkit.secrets import redacted_traceback

    click.echo(redacted_traceback(), err=True, nl=False)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `prefkit` script and `python -m prefkit`."""
    from prefkit.limits import usable_streams
    from prefkit.secrets import guard_output

    args = argv if argv is not None else sys.argv[1:]
    debug, as_json = "--debug" in args, "--json" in args
    usable_streams()
    guard_output()
    if "-q" in args or "--quiet" in args:
        from prefkit.progress import quiet_libraries

        quiet_libraries()  # other libraries' progress bars too
    try:
        code = cli.main(args=argv, prog_name="prefkit", standalone_mode=False)
        if isinstance(code, int) and code:  # ctx.exit(n) returns n when not in standalone mode
            sys.exit(code)
    except PrefkitError as err:
        if debug:
            debug_exit(err.exit_code)
        fail(*err.text("cli"), err.exit_code, as_json)
    except (click.exceptions.Abort, KeyboardInterrupt):
        fail("interrupted", INTERRUPTED.get(_command_of(args), INTERRUPTED[None]), 130, as_json)
    except click.ClickException as err:
        if as_json:
            click.echo(json.dumps({"error": err.format_message(), "hint": None, "exit_code": err.exit_code}))
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except MemoryError:
        if debug:
            debug_exit(1)
        fail("out of memory", "use a machine with more memory, or a smaller source or --max-rows", 1, as_json)
    except BaseException as err:  # polars' PanicException is a BaseException
        if isinstance(err, (SystemExit, GeneratorExit)):
            raise
        unexpected(err, debug, as_json)


def unexpected(err: BaseException, debug: bool, as_json: bool) -> None:
    """A failure of the machine (:func:`prefkit.limits.explain`: exit 1), else a bug: still one line, exit 3;
    the traceback behind --debug."""
    from prefkit.limits import explain, stdout_broken

    limit = explain(err)
    if debug:
        debug_exit(1 if limit else 3)
    if limit is not None:
        fail(limit[0], limit[1], 1, as_json and not stdout_broken(err))
    first = (str(err).strip().splitlines() or [""])[0][:300]
    fail(
        f"unexpected {type(err).__name__}: {first}",
        "this is a bug in prefkit: run again with --debug for the traceback and report it",
        3,
        as_json and not stdout_broken(err),
    )
