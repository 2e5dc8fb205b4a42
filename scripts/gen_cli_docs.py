"""Regenerate docs/cli.md from the commands' --help (a test keeps it in sync).

python scripts/gen_cli_docs.py
"""

from __future__ import annotations

from pathlib import Path

import click

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


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
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render())
    print(f"wrote {DOC}")
