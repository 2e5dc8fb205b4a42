"""The flags of the option groups (:mod:`prefkit.options`), as data the CLI can read without importing them.

`build`, `detect` and `stats` take flags generated from the option groups, and `reflogps`, `score`, `verify` and
`generate` all theirs from their options models (:data:`COMMANDS`); those models import the format registry,
which imports polars, pyarrow and numpy, and the job modules. So that ``--help`` and flag parsing stay fast (heavy imports
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

from prefkit.commands.options import path_type

PACKAGE = Path(__file__).resolve().parent.parent
SPEC_FILE = Path(__file__).with_name("flags.json")
#: the files whose content decides the flags (the option models, every family, exports, eval sets, templates)
SOURCES = (
    "options.py",
    "optionspec.py",
    "loading/__init__.py",
    "jobs/options.py",
    "reflogps/options.py",
    "rewards/options.py",
    "generate/options.py",
    "generate/sampling.py",
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


#: the commands whose flags are one model's (:class:`prefkit.options.CommandOptions`): command -> ``module:class``
COMMANDS = {
    "reflogps": "prefkit.reflogps.options:ReflogpsOptions",
    "score": "prefkit.rewards.options:ScoreOptions",
    "verify": "prefkit.reflogps.options:VerifyOptions",
    "generate": "prefkit.generate.options:GenerateOptions",
}


def model_class(group: str) -> Any:
    """The option model of ``group`` (:data:`MODELS`); imports it (and what it needs)."""
    import importlib

    module, name = MODELS[group]
    return getattr(importlib.import_module(module), name)


def command_model(command: str) -> Any:
    """The options model of ``command`` (:data:`COMMANDS`); imports it (and what it needs)."""
    import importlib

    module, _, name = COMMANDS[command].partition(":")
    return getattr(importlib.import_module(module), name)


def live_spec() -> dict[str, Any]:
    """The flags of every option group from the live models: ``{"hash", "groups": {group: [entry, ...]}}``, an
    entry being what :func:`prefkit.commands.options.field_kwargs` makes of a field, in JSON. A command's own
    group (:data:`COMMANDS`) holds its flags in ``FLAGS`` order, with their defaults as click's."""
    from prefkit.commands.options import field_kwargs, has_flag
    from prefkit.options import GROUPS

    groups = {}
    models: dict[str, Any] = {**GROUPS, **{group: model_class(group) for group in MODELS}}
    for group, model in models.items():
        groups[group] = [
            {"name": name, **_to_json(field_kwargs(info))}
            for name, info in model.model_fields.items()
            if has_flag(info)
        ]
    for command in COMMANDS:
        model = command_model(command)
        groups[command] = [
            {"name": name, **_to_json(field_kwargs(model.model_fields[name], click_defaults=True))}
            for name in model.FLAGS
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
            name = entry["name"]
            decls = kwargs.pop("decls", None) or ["--" + name.replace("_", "-")]
            f = click.option(*decls, name, **kwargs)(f)
        return f

    return decorate


def _to_json(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in kwargs.items() if k != "type"}
    kind = kwargs.get("type")
    if isinstance(kind, click.Choice):
        out["type"] = {"choice": list(kind.choices)}
    elif isinstance(kind, (click.IntRange, click.FloatRange)):
        number = "int" if isinstance(kind, click.IntRange) else "float"
        if kind.max is None and not kind.min_open:
            out["type"] = {number: kind.min}
        else:
            bounds = {"min": kind.min, "max": kind.max, "min_open": kind.min_open}
            out["type"] = {f"{number}_range": bounds}
    elif isinstance(kind, click.Path):
        out["type"] = {"path": "dir" if not kind.file_okay else "file"}
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
            "int_range": lambda: click.IntRange(**arg),
            "float_range": lambda: click.FloatRange(**arg),
            "path": lambda: path_type(arg),
        }[name]()
    elif kind is not None:
        out["type"] = {"int": int, "float": float, "str": str}[kind]
    return out
