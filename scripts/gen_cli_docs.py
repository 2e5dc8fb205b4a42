"""Regenerate the generated reference pages (a test keeps them in sync):

* docs/cli.md from the commands' --help;
* docs/reasons.md from the reason glossary (every way a row can end other than kept).

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
    from prefkit.cli import WAIT_BOUNDS

    parts += ["", "## Waits and their bounds", "", "| wait | bound | set with |", "|---|---|---|"]
    parts += [f"| {wait} | {bound} | {setting} |" for wait, bound, setting in WAIT_BOUNDS]
    return "\n".join(parts) + "\n"


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
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render())
    REASONS.write_text(render_reasons())
    print(f"wrote {DOC} and {REASONS}")
