"""Docs coverage: generated references in sync with the code; every command, family, export, template and reason
documented; links resolve and stay inside the repo; every flag named in a message or hint exists."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: flags of other programs that prefkit's text mentions (torchrun, pip, the `hf` CLI), and the secret option
#: names prefkit redacts wherever they appear (prefkit.secrets.SECRET_OPTIONS)
FOREIGN_FLAGS = {
    "--module",  # deepspeed (OpenRLHF's launch in the openrlhf card)
    "--model",  # OpenRLHF >= 0.11's dotted flags: --model.*, --data.*, --ckpt.*
    "--data",
    "--ckpt",
    "--nproc-per-node",
    "--nnodes",
    "--node-rank",
    "--rdzv-backend",
    "--rdzv-endpoint",
    "--rdzv-id",
    "--index-url",
    "--repo-type",
    "--hf-token",
    "--api-key",
    "--password",
    "--secret",
}


def _gen():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_in_sync_with_help():
    assert (DOCS / "cli.md").read_text() == _gen().render(), "run `python scripts/gen_cli_docs.py`"


def test_reason_glossary_is_in_sync():
    assert (DOCS / "reasons.md").read_text() == _gen().render_reasons(), (
        "run `python scripts/gen_cli_docs.py`"
    )


def test_every_command_appears_in_readme():
    from prefkit.cli import cli

    readme = (ROOT / "README.md").read_text()
    for name in cli.list_commands(None):
        assert f"prefkit {name}" in readme, f"README.md does not show `prefkit {name}`"


def test_every_family_export_template_and_reason_is_documented():
    from prefkit.accounting import glossary
    from prefkit.chat.templates import builtin_names
    from prefkit.formats import FAMILIES
    from prefkit.output.exports import EXPORTS

    formats = (DOCS / "formats.md").read_text()
    for name in FAMILIES:
        assert f"`{name}`" in formats, f"family {name} is not in docs/formats.md"
    for name in EXPORTS:
        assert f"`{name}`" in formats, f"export {name} is not in docs/formats.md"
    templates = (DOCS / "templates.md").read_text()
    for name in builtin_names():
        assert f"`{name}`" in templates, f"chat template {name} is not in docs/templates.md"
    reasons = (DOCS / "reasons.md").read_text()
    for stage, name in glossary():
        assert f"`{name}`" in reasons, f"reason {stage}/{name} is not in docs/reasons.md"


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_doc_links_resolve_inside_the_repo():
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    for page in _markdown_files():
        text = page.read_text()
        assert "../shared" not in text, f"{page.name} points outside the repo"
        for target in link.findall(text):
            if target.startswith(("http://", "https://", "mailto:")) or target.startswith("plots/"):
                continue
            path = (page.parent / target).resolve()
            assert path.exists(), f"{page.name}: broken link {target}"
            assert ROOT in path.parents or path == ROOT, f"{page.name}: {target} is outside the repo"


def _strings(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def test_every_flag_named_in_prefkit_exists():
    """Messages, hints and help name only real options (a hint that names a missing flag is a lie)."""
    from prefkit.cli import cli

    known = {"--help", "--version", "--debug"}
    for name in cli.list_commands(None):
        for param in cli.get_command(None, name).params:
            known |= {o for o in [*param.opts, *param.secondary_opts] if o.startswith("--")}
    flag = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*(?![\w-])")
    unknown = set()
    for path in (ROOT / "prefkit").rglob("*.py"):
        for text in _strings(ast.parse(path.read_text())):
            for found in flag.findall(text):
                if found not in known and found not in FOREIGN_FLAGS:
                    unknown.add(f"{path.relative_to(ROOT)}: {found}")
    assert not unknown, sorted(unknown)


@pytest.mark.parametrize("page", ["architecture.md", "design.md", "reasons.md", "trl-contract.md"])
def test_design_pages_exist(page):
    assert (DOCS / page).stat().st_size > 500
