"""Every reason a build's frame (and so a rejects file or the manifest's counts) can hold is a declared
:class:`prefkit.accounting.Reason`, documented in docs/reasons.md: reasons are made only where they are declared,
and no site writes a reason's name as a string literal instead of using its ``Reason``."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from prefkit import build
from prefkit.accounting import Reason, glossary
from prefkit.frame import REASON, Stage

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "prefkit"

#: the calls a Reason may be made in: what declares it
DECLARING = {"declare", "RowFilter"}
#: string literals equal to a reason's name that mean something else (file, literal): a column, a label value,
#: an option, a manifest section
NOT_REASONS = {
    ("prefkit/frame.py", "tie"),  # the tie label column
    ("prefkit/formats/pairwise.py", "tie"),  # Chatbot Arena's winner label
    ("prefkit/filters/registry.py", "negative_margin"),  # the option that turns the filter on
    ("prefkit/select/__init__.py", "length_balance"),  # the manifest section
    ("prefkit/output/card.py", "length_balance"),
    ("prefkit/report/build.py", "length_balance"),
    ("prefkit/report/page.py", "contaminated"),  # the kind of evidence the page shows
}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def test_every_reason_is_made_where_it_is_declared():
    """A ``Reason(...)`` is an argument of ``declare(...)`` (or of a filter, which declares it), or assigned to a
    name that is: so every reason object is in the glossary."""
    undeclared = []
    for path in _modules():
        tree = ast.parse(path.read_text())
        parents = _parents(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name(node) == "Reason":
                parent = parents.get(node)
                if not (isinstance(parent, ast.Call) and _name(parent) in DECLARING) and not (
                    isinstance(parent, ast.keyword) and _name(parents[parent]) in DECLARING
                ):
                    undeclared.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not undeclared, f"Reason(...) made outside declare(...) / RowFilter(...): {undeclared}"


def test_every_reason_object_is_declared_and_documented():
    """Every ``Reason`` a module holds (by name or in a tuple such as a family's ``reasons``) is in the glossary
    and documented."""
    docs = (ROOT / "docs" / "reasons.md").read_text()
    declared = glossary()
    seen = 0
    for path in _modules():
        if "Reason" not in path.read_text():
            continue
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        module = importlib.import_module(name)
        for value in vars(module).values():
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, Reason):
                    seen += 1
                    assert declared.get((item.stage, item.name)) == item, f"{name}: {item} is not declared"
                    assert f"`{item.name}`" in docs, f"{item.stage}/{item.name} is not in docs/reasons.md"
    assert seen >= len(declared)


def test_no_site_writes_a_reason_name_as_a_string():
    names = {name for _, name in glossary()}
    found = []
    for path in _modules():
        rel = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text())
        parents = _parents(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names):
                continue
            parent = parents.get(node)
            if (
                isinstance(parent, ast.Call)
                and _name(parent) == "Reason"
                and parent.args
                and parent.args[0] is node
            ):
                continue  # the declaration itself
            if (rel, node.value) in NOT_REASONS:
                continue
            found.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not found, "use the declared Reason (its .name / .lit()) instead of the literal: " + ", ".join(
        found
    )


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"keep_ties": True, "min_margin": 1.0, "dedup": True, "top": 3},
        {"negative_margin": "drop", "max_rows": 2, "seed": 1, "near_dedup": "pair"},
    ],
    ids=["defaults", "margins-dedup-top", "negative-sample-near"],
)
def test_the_reasons_a_build_writes_are_declared(tmp_path, options):
    """Through the whole build: every reason in the rejects and in the manifest's counts is declared."""
    import json

    rows = []
    for i in range(12):
        chosen = f"Answer number {i % 5} is here." if i % 4 else "Same."
        rejected = "Same." if i % 4 == 0 else f"Worse answer {i}."
        rows.append({"prompt": f"Question {i % 6}?", "chosen": chosen, "rejected": rejected})
        rows[-1] |= {"score_chosen": float(i % 3), "score_rejected": 1.0}
    rows.append({"prompt": "Empty?", "chosen": "", "rejected": "x"})
    rows.append({"prompt": "Residue?", "chosen": "A<|im_end|>", "rejected": "B"})
    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = build(str(src), tmp_path / "out", **options)
    declared = glossary()
    for name, counts in result.manifest["splits"].items():
        for stage in ("dropped", "invalid", "added", "flags"):
            for reason in counts.get(stage, {}):
                assert (stage, reason) in declared, f"{stage}/{reason}"
        rejects = pq.read_table(tmp_path / "out" / "rejects" / f"{name}.parquet").to_pylist()
        assert rejects, "the rows above give rejects"
        for row in rejects:
            assert (Stage(row["stage"]).value, row[REASON]) in declared
