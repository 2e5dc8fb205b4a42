"""Every command and recipe in README.md and docs/ can be followed: each `prefkit ...` line of a code block parses
with the CLI's own parser (its options exist and its values have their types), each recipe loads with the
recipe reader, and the recipes whose sources are catalog datasets build against the local Hub."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from prefkit.commands.flags import command_model
from prefkit.optionspec import RECIPE_SECTIONS

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "cli.md")]
FENCE = re.compile(r"^```(\w*)\s*$")
SHELL = {">", ">>", "<", "&&", "||", ";", "&", "2>&1"}


def blocks(page: Path) -> list[tuple[str, str, int]]:
    """(language, text, first line) of each fenced code block."""
    out, lang, lines, start = [], None, [], 0
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        fence = FENCE.match(line.strip())
        if fence and lang is None:
            lang, lines, start = fence.group(1) or "text", [], number + 1
        elif fence:
            out.append((lang, "\n".join(lines), start))
            lang = None
        elif lang is not None:
            lines.append(line)
    return out


def commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `prefkit`) of every `prefkit ...` line in a shell block (continuations joined, trailing
    comments and `$ ` prompts dropped)."""
    found = []
    for page in PAGES:
        for lang, text, start in blocks(page):
            if lang not in ("bash", "sh", "shell", "console", "text"):
                continue
            for offset, line in enumerate(text.replace("\\\n", " ").splitlines()):
                line = line.strip().removeprefix("$ ")
                if not line.startswith("prefkit ") or "|" in line:
                    continue
                try:
                    argv = shlex.split(line, comments=True)
                except ValueError:
                    continue
                ends = [i for i, a in enumerate(argv) if a in SHELL or a.startswith((">", "2>", "&>"))]
                found.append((f"{page.name}:{start + offset}", argv[1 : ends[0] if ends else None]))
    return found


COMMANDS = commands()


def test_the_docs_hold_commands():
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("where,argv", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_every_documented_command_parses(where, argv):
    from prefkit.cli import cli

    top = click.Context(cli, info_name="prefkit", **cli.context_settings)
    args = [a for a in argv if a != "--debug"]
    if args and args[0] in ("--help", "-h", "--version"):
        return
    name, rest = args[0], args[1:]
    cmd = cli.get_command(top, name)
    assert cmd is not None, f"{where}: unknown command {name!r}"
    try:
        cmd.make_context(name, rest, parent=top)
    except click.exceptions.Exit:
        pass  # --help / --version
    except click.UsageError as err:
        pytest.fail(f"{where}: `prefkit {shlex.join(argv)}` does not parse: {err.format_message()}")


def recipes() -> list[tuple[str, str]]:
    return [
        (f"{page.name}:{start}", text)
        for page in PAGES
        for lang, text, start in blocks(page)
        if lang in ("yaml", "yml") and re.search(r"^sources:", text, re.M)
    ]


RECIPES = recipes()


@pytest.mark.parametrize("where,text", RECIPES, ids=[w for w, _ in RECIPES])
def test_every_documented_recipe_loads_and_builds(where, text, hub, tmp_path, monkeypatch):
    from prefkit import build
    from prefkit.options import load_recipe
    from prefkit.sources.spec import parse_source
    from tests.catalog import catalog, publish

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    sources, _ = load_recipe(recipe)  # every key and value is one the options take
    for section in set(yaml.safe_load(text)) & set(RECIPE_SECTIONS):  # and those of the commands' sections
        command_model(section).from_file(recipe)
    known = catalog()
    monkeypatch.chdir(tmp_path)
    for spec in map(parse_source, sources):
        name = str(spec.source)
        if name in known:
            publish(hub, name)
        elif name.startswith("."):
            rows = [
                {"prompt": f"ours {i}", "chosen": f"yes {i}", "rejected": f"no {i}", "delta_score": 2.0}
                for i in range(4)
            ]
            Path(name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            pytest.skip(f"{where}: source {name} has no local stand-in")
    result = build(None, tmp_path / "out", recipe_file=str(recipe))
    assert sum(s["kept"] for s in result.manifest["splits"].values()) > 0, where
