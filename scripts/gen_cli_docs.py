"""Regenerate the generated reference pages (a test keeps them in sync):

* docs/cli.md from the commands' --help;
* docs/reasons.md from the reason glossary (every way a row can end other than kept);
* prefkit/commands/flags.json, the option groups' flags as data (read by the CLI so that ``--help`` and flag
  parsing import nothing heavy; :mod:`prefkit.commands.flags`).

python scripts/gen_cli_docs.py
"""

from __future__ import annotations

from pathlib import Path

import click

DOCS = Path(__file__).resolve().parent.parent / "docs"
DOC = DOCS / "cli.md"
REASONS = DOCS / "reasons.md"


def render() -> str:
    from prefkit.cli import cli

    settings = {**cli.context_settings, "max_content_width": 100, "terminal_width": 100}
    ctx = click.Context(cli, info_name="prefkit", **settings)
    parts = [
        "# prefkit command reference",
        "",
        "Generated from `--help` by `python scripts/gen_cli_docs.py`; `tests/test_docs.py` keeps it in sync.",
        "",
        "```",
        cli.get_help(ctx).rstrip(),
        "```",
    ]
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        sub = click.Context(cmd, info_name=name, parent=ctx)
        parts += ["", f"## prefkit {name}", "", "```", cmd.get_help(sub).rstrip(), "```"]
    from prefkit.cli import EXIT_CODES

    parts += ["", "## Exit codes", "", "| code | meaning |", "|---:|---|"]
    parts += [f"| {code} | {meaning} |" for code, meaning in EXIT_CODES.items()]
    parts += ["", "## Empty results", "", EMPTY_RULE]
    from prefkit.cli import WAIT_BOUNDS

    parts += ["", "## Waits and their bounds", "", "| wait | bound | set with |", "|---|---|---|"]
    parts += [f"| {wait} | {bound} | {setting} |" for wait, bound, setting in WAIT_BOUNDS]
    return "\n".join(parts) + "\n"


#: the one rule for every path to an empty set or split (prefkit.accounting.check_not_empty)
EMPTY_RULE = (
    "`build` never writes an empty set or an empty split (`datasets` cannot load a split without rows, and a\n"
    "split that silently vanishes hides what happened). Whatever empties it (a source with a header only, a\n"
    "`--min-margin` that drops every row, `--near-dedup` or `--decontaminate` removing every `test` row, a filter\n"
    "on one split), `build -o OUT` refuses with exit code 4 and writes nothing (an existing OUT stays as it\n"
    "was); `Error:` on stderr names each empty split with the counts of the reasons its rows ended elsewhere.\n"
    "`--dry-run` (and `prefkit.build` without an output folder) writes nothing anyway: it prints the same\n"
    "sentence as a `Warning:` on stderr and exits 0, so the counts per reason can be looked at."
)


def render_reasons() -> str:
    from prefkit.accounting import glossary

    titles = {
        "invalid": "Invalid: the row could not become a valid record",
        "dropped": "Dropped: a filter or a selection left the row out",
        "added": "Added: rows beyond one per source row",
        "flags": "Flags: counted properties that are not an outcome",
    }
    parts = [
        "# Why a row is not kept: the reason glossary",
        "",
        "Generated from the stages' declarations (`prefkit.accounting.glossary()`) by "
        "`python scripts/gen_cli_docs.py`; `tests/test_docs.py` keeps it in sync. Every row read is kept, dropped "
        "or invalid; `prefkit.json` counts each reason and `rejects/<split>.parquet` holds each row with its "
        "reason. `read + added = kept + dropped + invalid`.",
    ]
    reasons = glossary().values()
    for stage, title in titles.items():
        mine = sorted((r for r in reasons if r.stage == stage), key=lambda r: r.name)
        parts += ["", f"## {title}", "", "| reason | meaning |", "|---|---|"]
        parts += [
            f"| `{r.name}` | {r.meaning}{' (a selection: rejects hold no text)' if r.selection else ''} |"
            for r in mine
        ]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    import argparse

    about = "Write docs/cli.md, docs/reasons.md and prefkit/commands/flags.json from the code (tests keep them in sync)."
    argparse.ArgumentParser(description=about).parse_args()  # no arguments: --help prints this and writes nothing
    from prefkit.commands.flags import write_spec

    spec = write_spec()  # first: the help below is read from it
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render())
    REASONS.write_text(render_reasons())
    print(f"wrote {spec}, {DOC} and {REASONS}")
