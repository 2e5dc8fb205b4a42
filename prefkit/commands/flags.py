"""The flags of the option groups (:mod:`prefkit.options`), as data the CLI can read without importing them.

`build`, `detect`, `stats`, `report`, `push` and the scoring commands take flags generated from the option models
(:data:`GROUPS` of :mod:`prefkit.options` and the models of :data:`MODELS`); those models import the format
registry, which imports polars, pyarrow and numpy. So that ``--help`` and flag parsing stay fast (heavy imports
happen when work starts), the flags are written once to ``flags.json`` beside this module (every field's name,
help, type, choices, bounds, metavar) and read from there. The file records a hash of the sources that declare
options; when they changed since it was written (a new option, a new family, an edited help text), the CLI builds
the flags from the live models instead (the same flags, slower), and ``tests/test_startup.py`` fails until
``python scripts/gen_cli_docs.py`` writes the file again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from prefkit.commands.options import declarations

PACKAGE = Path(__file__).resolve().parent.parent
SPEC_FILE = Path(__file__).with_name("flags.json")
#: the files whose content decides the flags (the option models, every family, exports, eval sets, templates)
SOURCES = (
    "options.py",
    "values.py",
    "loading.py",
    "chat/target.py",
    "output/stats.py",
    "report/options.py",
    "publish/options.py",
    "commands/options.py",
    "commands/flags.py",
    "formats/*.py",
    "output/exports.py",
    "select/evalsets.py",
    "select/evalsets.json",
    "chat/templates.py",
    "chat/builtin/*.json",
)


#: option models besides ``BuildOptions``' groups whose flags are generated: group -> (module, class); a model
#: listed here has its module in :data:`SOURCES`
MODELS: dict[str, tuple[str, str]] = {
    "load": ("prefkit.loading", "LoadOptions"),
    "target": ("prefkit.chat.target", "TargetOptions"),
    "stats": ("prefkit.output.stats", "StatsOptions"),
    "report": ("prefkit.report.options", "ReportOptions"),
    "push": ("prefkit.publish.options", "PushOptions"),
}


def sources_hash() -> str:
    """SHA-256 over the paths and contents of :data:`SOURCES` (a few dozen small files; about a millisecond)."""
    digest = hashlib.sha256()
    for pattern in SOURCES:
        for path in sorted(PACKAGE.glob(pattern)):
            digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def live_spec() -> dict[str, Any]:
    """The flags of every option group from the live models: ``{"hash", "groups": {group: [entry, ...]}}``, an
    entry being what :func:`prefkit.commands.options.field_kwargs` makes of a field, in JSON."""
    import importlib

    from prefkit.commands.options import field_kwargs, field_short, has_flag
    from prefkit.options import GROUPS

    groups = {}
    models: dict[str, Any] = dict(GROUPS)
    models |= {group: getattr(importlib.import_module(m), name) for group, (m, name) in MODELS.items()}
    for group, model in models.items():
        groups[group] = [
            {"name": name, **_to_json(field_kwargs(info)), **({"short": s} if (s := field_short(info)) else {})}
            for name, info in model.model_fields.items()
            if has_flag(info)
        ]
    return {"hash": sources_hash(), "groups": groups}


def write_spec() -> Path:
    """Write :data:`SPEC_FILE` from the live models (``scripts/gen_cli_docs.py`` calls this)."""
    SPEC_FILE.write_text(json.dumps(live_spec(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return SPEC_FILE


_LOADED: dict[str, Any] = {}


def spec() -> dict[str, Any]:
    """The flags: from :data:`SPEC_FILE` when it was written from the current sources, else from the models."""
    if not _LOADED:
        try:
            saved = json.loads(SPEC_FILE.read_text(encoding="utf-8"))
            fresh = saved.get("hash") == sources_hash()
        except (OSError, ValueError):
            saved, fresh = None, False
        _LOADED.update(saved if fresh and saved else live_spec())
    return _LOADED


def names(group: str) -> tuple[str, ...]:
    """The fields of the option group ``group`` that have flags, in declaration order."""
    return tuple(entry["name"] for entry in spec()["groups"][group])


def group_options(
    group: str,
    *,
    only: tuple[str, ...] | None = None,
    exclude: tuple[str, ...] = (),
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Callable:
    """A decorator adding the flags of the option group ``group`` (``"sources"``, ``"formats"`` …) in declaration
    order; ``only``/``exclude`` pick fields, ``overrides`` adds click keywords per field (e.g. ``cls``)."""

    def decorate(f: Callable) -> Callable:
        entries = [
            e
            for e in spec()["groups"][group]
            if e["name"] not in exclude and (only is None or e["name"] in only)
        ]
        for entry in reversed(entries):
            kwargs = {**_from_json(entry), **(overrides or {}).get(entry["name"], {})}
            f = click.option(*declarations(entry["name"], entry.get("short")), **kwargs)(f)
        return f

    return decorate


def _to_json(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in kwargs.items() if k != "type"}
    kind = kwargs.get("type")
    if isinstance(kind, click.Choice):
        out["type"] = {"choice": list(kind.choices)}
    elif isinstance(kind, click.IntRange):
        out["type"] = {"int": kind.min}
    elif isinstance(kind, click.FloatRange):
        out["type"] = {"float": kind.min}
    elif isinstance(kind, click.Path):
        out["type"] = {"path": {"file_okay": kind.file_okay, "dir_okay": kind.dir_okay}}
    elif kind in (int, float, str):
        out["type"] = kind.__name__
    elif kind is not None:
        raise TypeError(f"no JSON form for the click type {kind!r}")
    return out


def _from_json(entry: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in entry.items() if k not in ("name", "short", "type")}
    kind = entry.get("type")
    if isinstance(kind, dict):
        ((name, arg),) = kind.items()
        out["type"] = {
            "choice": lambda: click.Choice(arg),
            "int": lambda: click.IntRange(min=arg),
            "float": lambda: click.FloatRange(min=arg),
            "path": lambda: click.Path(**arg),
        }[name]()
    elif kind is not None:
        out["type"] = {"int": int, "float": float, "str": str}[kind]
    return out
