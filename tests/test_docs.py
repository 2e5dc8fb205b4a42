"""Docs coverage: generated references in sync with the code; every command, family, export, template and reason
documented; links resolve and stay inside the repo; every flag named in a message or hint exists."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

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


def _command_flags() -> dict[str, set[str]]:
    """Each command's long options (``--top``, ``--no-resume`` …)."""
    from prefkit.cli import cli

    return {
        name: {
            o
            for p in cli.get_command(None, name).params
            for o in [*p.opts, *p.secondary_opts]
            if o.startswith("--")
        }
        for name in cli.list_commands(None)
    }


#: the long options of other programs that the docs show next to prefkit's: what they belong to
OTHER_PROGRAMS = {
    "sbatch (Slurm)": {
        "--array",
        "--cpus-per-task",
        "--dependency",
        "--gres",
        "--job-name",
        "--parsable",
        "--requeue",
        "--time",
        "--wrap",
    },
    "torchrun": {
        "--nproc-per-node",
        "--nnodes",
        "--node-rank",
        "--max-restarts",
        "--rdzv-backend",
        "--rdzv-endpoint",
        "--rdzv-id",
    },
    "ray start": {"--address", "--head", "--port"},
    "pip": {"--index-url"},
    "OpenRLHF (its dotted --data.* flags)": {"--data"},
}


def _script_flags() -> set[str]:
    """The options prefkit's own scripts and benchmarks declare (the string constants of their sources)."""
    found = set()
    for path in [*(ROOT / "scripts").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        found |= {t for t in _strings(ast.parse(path.read_text())) if t.startswith("--")}
    return found


def test_every_command_has_its_section_in_the_cli_reference_with_every_option():
    text = (DOCS / "cli.md").read_text()
    sections = {s.split("\n", 1)[0]: s for s in re.split(r"^## ", text, flags=re.M)[1:]}
    flags = _command_flags()
    assert {f"prefkit {name}" for name in flags} <= set(sections), "docs/cli.md lacks a command's section"
    for name, options in flags.items():
        body = sections[f"prefkit {name}"]
        missing = sorted(o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", body))
        assert not missing, f"the section of `prefkit {name}` in docs/cli.md lacks {missing}"


def test_every_flag_the_docs_name_exists():
    """A page that names an option prefkit does not have (a renamed or removed flag) is wrong; the options of
    other programs (Slurm, torchrun, Ray, pip) and of prefkit's own scripts are named as theirs."""
    known = set().union(*_command_flags().values(), *OTHER_PROGRAMS.values(), _script_flags())
    known |= {"--help", "--version", "--debug"}
    flag = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*(?![\w-])")
    unknown = sorted(
        f"{page.relative_to(ROOT)}: {found}"
        for page in _markdown_files()
        for found in set(flag.findall(page.read_text()))
        if found not in known
    )
    assert not unknown, unknown


def test_the_architecture_page_names_every_package_and_module():
    text = (DOCS / "architecture.md").read_text()
    packages = sorted(p.name for p in (ROOT / "prefkit").iterdir() if (p / "__init__.py").is_file())
    assert [p for p in packages if f"`{p}/`" not in text] == [], "docs/architecture.md lacks a package"
    assert "## What each folder owns" in text and "## Where a new thing goes" in text


def test_the_design_page_states_every_record_column():
    from prefkit.record import PreferenceRecord

    text = (DOCS / "design.md").read_text()
    contract = text.split("## The contract: canonical record", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in PreferenceRecord.model_fields if f"`{name}`" not in text]
    assert not missing, f"docs/design.md does not describe the record's {missing}"
    assert "prompt" in contract and "chosen" in contract and "rejected" in contract


def test_the_reason_glossary_lists_each_reason_under_its_stage():
    from prefkit.accounting import glossary

    text = (DOCS / "reasons.md").read_text()
    headings = {"invalid": "## Invalid", "dropped": "## Dropped", "added": "## Added", "flags": "## Flags"}
    sections = {stage: text.split(h, 1)[1].split("\n## ", 1)[0] for stage, h in headings.items() if h in text}
    for stage, name in glossary():
        assert f"`{name}`" in sections.get(stage, ""), f"reason {name} is not under the {stage} section"


def test_the_trl_contract_states_what_prefkit_reproduces():
    from prefkit.record import REFLOGPS_FIELDS

    text = (DOCS / "trl-contract.md").read_text()
    for name, _ in REFLOGPS_FIELDS[:2]:  # ref_chosen_logps, ref_rejected_logps
        assert f"`{name}`" in text or name in text, name
    for topic in ("## Tokenization in DPOTrainer", "## precompute_ref_log_probs", "## Numerics"):
        assert topic in text, topic
