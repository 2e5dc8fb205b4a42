"""Imports run one way: every import in ``prefkit/`` (function-local ones too) goes to its own layer or one below
in the layer table of docs/architecture.md, the modules import each other without a cycle, and a function imports
a module locally only when it is a heavy optional dependency (or the import is the CLI's or the package's lazy
entry point, which keep ``--help`` and ``import prefkit`` fast)."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "prefkit"
DOC = ROOT / "docs" / "architecture.md"

#: third-party modules a function may import locally: heavy or optional ones (seconds to import, or an extra that
#: may be missing), so that a command loads them only when its work starts; tqdm.auto probes for a notebook, and
#: the CLI imports prefkit.progress before every command
HEAVY = {
    "torch", "transformers", "datasets", "huggingface_hub", "matplotlib", "trl", "peft", "bitsandbytes", "vllm",
    "ray", "openai", "tqdm",
}
#: modules whose prefkit imports may be function-local: the lazy entry points (the CLI imports a command's library
#: code when the command runs; ``prefkit.X`` imports X's module on first use)
LAZY_ENTRY = ("prefkit", "prefkit.cli", "prefkit._callable")
LAZY_PACKAGES = ("prefkit.commands",)


def layers() -> dict[str, int]:
    """The layer table of docs/architecture.md (section "Imports run one way"): unit -> layer number."""
    text = DOC.read_text(encoding="utf-8")
    table = text.split("## Imports run one way", 1)[1].split("\n## ", 1)[0]
    out: dict[str, int] = {}
    for line in table.splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|([^|]+)\|", line)
        if m:
            for unit in re.findall(r"`([\w.]+)`", m.group(2)):
                out[unit.strip("/")] = int(m.group(1))
    return out


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "prefkit"


def _typing_only(tree: ast.Module) -> set[int]:
    """The import nodes under ``if TYPE_CHECKING:`` (read by the type checker, never run)."""
    return {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for n in ast.walk(stmt)
        if isinstance(n, (ast.Import, ast.ImportFrom))
    }


def imports(run_only: bool = False) -> list[tuple[str, str, int, bool]]:
    """Every import in prefkit/: (importer, imported module, line, inside a function); ``run_only``: without those
    under ``if TYPE_CHECKING:``."""
    modules = {_module(p) for p in PACKAGE.rglob("*.py")}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mod = _module(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        skip = _typing_only(tree) if run_only else set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                found.append((mod, name, node.lineno, id(node) in local))
    return found


def _lazy(importer: str) -> bool:
    return importer in LAZY_ENTRY or importer.startswith(LAZY_PACKAGES)


def test_the_layer_table_names_every_folder_and_module():
    table = layers()
    units = {_unit(_module(p)) for p in PACKAGE.rglob("*.py")}
    assert units - set(table) == set(), "add these to the layer table in docs/architecture.md"
    assert set(table) - units == set(), "the layer table names what is not in prefkit/"


def backward(found: list[tuple[str, str, int, bool]], table: dict[str, int]) -> list[str]:
    """The imports that go up a layer."""
    return [
        f"{src}:{line} imports {dst} (layer {table[_unit(dst)]} above {table[_unit(src)]})"
        for src, dst, line, _ in found
        if dst.startswith("prefkit") and table[_unit(dst)] > table[_unit(src)]
    ]


def cycles(found: list[tuple[str, str, int, bool]]) -> list[str]:
    """Each cycle among the modules, as ``a -> b -> a``."""
    graph: dict[str, set[str]] = defaultdict(set)
    for src, dst, _, _ in found:
        if dst.startswith("prefkit.") and dst != src:
            graph[src].add(dst)
    out: list[str] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                out.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return out


def stray_local(found: list[tuple[str, str, int, bool]]) -> list[str]:
    """Function-local imports of what is neither a heavy dependency nor imported by a lazy entry point."""
    return [
        f"{src}:{line} imports {dst} inside a function"
        for src, dst, line, inside in found
        if inside and not _lazy(src) and dst.split(".")[0] not in HEAVY
    ]


def test_no_import_goes_up_a_layer():
    assert backward(imports(), layers()) == []


def test_modules_import_each_other_without_a_cycle():
    assert cycles(imports(run_only=True)) == []


def test_function_local_imports_are_heavy_dependencies_only():
    assert stray_local(imports()) == []


def test_the_checks_see_what_they_look_for():
    """Each check reports a made-up fault of its kind: a low layer importing the CLI, two modules importing each
    other, a library function importing a light module locally."""
    table = layers()
    assert backward([("prefkit.sources.local", "prefkit.commands.build", 3, False)], table)
    assert not backward([("prefkit.commands.build", "prefkit.sources.local", 3, False)], table)
    found = [("prefkit.a", "prefkit.b", 1, False), ("prefkit.b", "prefkit.a", 1, False)]
    assert cycles(found) == ["prefkit.a -> prefkit.b -> prefkit.a"]
    assert stray_local([("prefkit.output.card", "json", 9, True)])
    assert not stray_local([("prefkit.output.card", "torch", 9, True), ("prefkit.cli", "prefkit.options", 9, True)])
