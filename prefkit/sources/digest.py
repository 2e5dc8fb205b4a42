"""What a local source held when a set was built: each data file's size and SHA-256, recorded in the recipe
entry (``files``), so that a rebuild from the recipe (``prefkit build --recipe OUT/prefkit.json``) knows whether it
reads the same input. A rebuild that finds other files refuses (:class:`~prefkit.errors.SourceError`) unless
``--allow-changed-sources``, which builds from the files as they are and says what differs.

Recipe paths: a relative local source in a recipe is read relative to the recipe file's folder (a build records
its local sources relative to OUT, where its ``prefkit.json`` is); a path found only relative to the working
folder is read there (recipes written before this rule).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

#: file suffixes whose content is a local source's data (what ``datasets`` / prefkit read)
DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".ndjson", ".arrow")


def file_digest(path: Path) -> dict[str, Any]:
    """``{"size": bytes, "sha256": hex}`` of one file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


def local_digests(source: str | Path) -> dict[str, dict[str, Any]]:
    """Relative POSIX path → :func:`file_digest` of a local source: the file itself (by its name), or every data
    file (:data:`DATA_SUFFIXES`) under a folder, hidden files and folders left out. Sorted by path."""
    path = Path(source).expanduser()
    if path.is_file():
        return {path.name: file_digest(path)}
    found: dict[str, dict[str, Any]] = {}
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.endswith(DATA_SUFFIXES):
                continue
            file = Path(root) / name
            found[file.relative_to(path).as_posix()] = file_digest(file)
    return dict(sorted(found.items()))


def differences(recorded: dict[str, dict], now: dict[str, dict]) -> list[str]:
    """What differs between the files a recipe recorded and those there now, one phrase each ("a.jsonl: 2,053
    → 2,054 bytes", "b.jsonl: new", "c.jsonl: gone", "d.jsonl: other content, same size")."""
    out = []
    for name in sorted(set(recorded) | set(now)):
        was, is_ = recorded.get(name), now.get(name)
        if was is None:
            out.append(f"{name}: new")
        elif is_ is None:
            out.append(f"{name}: gone")
        elif was.get("size") != is_["size"]:
            out.append(f"{name}: {was.get('size', 0):,} → {is_['size']:,} bytes")
        elif was.get("sha256") != is_["sha256"]:
            out.append(f"{name}: other content, same size")
    return out


def resolve_recipe_path(source: str, recipe_file: Path) -> str:
    """A relative local path in a recipe, as the build reads it: relative to the recipe's folder when there, else
    as written (relative to the working folder, or not a path: a Hub id)."""
    path = Path(source).expanduser()
    if path.is_absolute():
        return source
    beside = recipe_file.resolve().parent / path
    if beside.exists():
        return os.path.normpath(beside)
    return source


def relative_to_output(source: str, output: Path) -> str:
    """How a build records a local source in its recipe: the path relative to OUT (where the recipe is read
    from later), or absolute when there is no relative path (another drive)."""
    try:
        return os.path.relpath(Path(source).expanduser().resolve(), Path(output).resolve())
    except ValueError:
        return str(Path(source).expanduser().resolve())
