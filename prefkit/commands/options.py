"""Click options generated from the library's option models (:mod:`prefkit.options`): one flag per field, named
after it (``min_margin`` -> ``--min-margin``), with the field's help, type, choices and bounds. A command stacks
the groups it takes; the help and docs/cli.md come from the same declarations as the Python API."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from pydantic import BaseModel


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return annotation, False


#: what ``option(path=...)`` asks of a flag's value: a folder, or a file
PATHS = ("dir", "file")


def path_type(kind: str) -> click.Path:
    """The click type of ``option(path=kind)``: a folder (``"dir"``) or a file (``"file"``)."""
    return click.Path(file_okay=kind != "dir", dir_okay=kind != "file")


def _click_type(
    annotation: Any, metadata: list, extra: dict | None = None, upper: bool = False
) -> tuple[Any, bool]:
    """(click type, multiple) of a field: its choices, bounds (``ge``; ``gt``/``le`` too with ``upper``), a folder
    (``path="dir"``), a file (``path="file"``)."""
    import annotated_types

    extra = extra or {}
    base, _ = _unwrap(annotation)
    if typing.get_origin(base) is typing.Literal:
        return click.Choice([str(v) for v in typing.get_args(base)]), False
    if typing.get_origin(base) is tuple:
        return (path_type(extra["path"]) if extra.get("path") in PATHS else str), True
    if extra.get("choices"):
        return click.Choice(list(extra["choices"])), False
    if extra.get("path") in PATHS:
        return path_type(extra["path"]), False
    bound = {
        name: next((getattr(m, name) for m in metadata if isinstance(m, kind)), None)
        for name, kind in (
            ("ge", annotated_types.Ge),
            ("gt", annotated_types.Gt),
            ("le", annotated_types.Le),
        )
    }
    if not upper:  # the build's flags show their lower bound only
        bound["gt"] = bound["le"] = None
    whole = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in bound.items()}
    bound = whole if upper else bound  # 86400, not 86400.0, in the help
    low = bound["ge"] if bound["ge"] is not None else bound["gt"]
    if base in (int, float) and (low is not None or bound["le"] is not None):
        kind = click.IntRange if base is int else click.FloatRange
        return kind(min=low, max=bound["le"], min_open=bound["gt"] is not None), False
    if base in (int, float):
        return base, False
    return str, False


def field_option(name: str, info: Any, overrides: dict[str, Any] | None = None) -> Callable:
    """The click option of one model field (``overrides``: extra click keywords, e.g. ``cls``)."""
    kwargs = {**field_kwargs(info), **(overrides or {})}
    decls = kwargs.pop("decls", None) or ["--" + name.replace("_", "-")]
    return click.option(*decls, name, **kwargs)


def field_kwargs(info: Any, click_defaults: bool = False) -> dict[str, Any]:
    """The click keywords of one model field's flag: help, default, type, choices, bounds, metavar (and ``decls``,
    the flag's spellings, where they are not the name with dashes).

    ``click_defaults`` (a command's own options, :class:`prefkit.options.CommandOptions`): the flag's default is
    the field's, shown as click shows it (``[default: 2048; x>=1]``); the command passes on only what was given
    (:func:`given`). Otherwise (the build's groups) the default is None and the field's default is written into
    the help."""
    extra = info.json_schema_extra or {}
    kwargs: dict[str, Any] = {"help": info.description, "default": None, "show_default": False}
    if extra.get("metavar"):
        kwargs["metavar"] = extra["metavar"]
    if extra.get("decls"):
        kwargs["decls"] = list(extra["decls"])
    if extra.get("required"):
        kwargs["required"] = True
    base, _ = _unwrap(info.annotation)
    if base is bool:
        kwargs.update(is_flag=True, default=None)
        if click_defaults:
            negated = any(d.startswith("--no-") for d in extra.get("decls") or ())
            paired = any("/" in d for d in extra.get("decls") or ())
            kwargs["default"] = info.default
            if negated:
                kwargs["flag_value"] = False
            if paired:
                del kwargs["is_flag"]
                kwargs["show_default"] = True
        return kwargs
    kind, multiple = _click_type(info.annotation, info.metadata, extra, upper=click_defaults)
    kwargs["type"] = kind
    if multiple:
        kwargs["multiple"] = True
    if click_defaults and not multiple:
        kwargs.update(default=info.default, show_default=info.default is not None)
    elif info.default is not None and not multiple:
        kwargs["help"] = f"{info.description} [default: {info.default}]"
    if extra.get("flag_value") is not None:
        kwargs.update(is_flag=False, flag_value=extra["flag_value"])
    if kwargs.get("required") and kwargs.get("default") is None:
        del kwargs["default"]  # click >= 8.3 takes an explicit None default as a value given
    return kwargs


def model_options(
    model: type[BaseModel],
    *,
    only: tuple[str, ...] | None = None,
    exclude: tuple[str, ...] = (),
    overrides=None,
) -> Callable:
    """A decorator adding the flags of ``model``'s fields (in declaration order)."""
    fields = [
        (name, info)
        for name, info in model.model_fields.items()
        if has_flag(info) and name not in exclude and (only is None or name in only)
    ]

    def decorate(f: Callable) -> Callable:
        for name, info in reversed(fields):
            f = field_option(name, info, (overrides or {}).get(name))(f)
        return f

    return decorate


def has_flag(info: Any) -> bool:
    """Whether a model field has a flag of its own (``option(cli=False)`` has none)."""
    extra = info.json_schema_extra
    return not isinstance(extra, dict) or bool(extra.get("cli", True))


#: ``ctx.meta`` key of the options a command's ``--recipe`` file gave (:func:`prefkit.commands.common.model_command`)
RECIPE = "prefkit.recipe"


def given(ctx: click.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The option values the user gave (not click's defaults): a model command's ``--recipe`` file's, then the
    flags typed (they win over the file's; build merges its recipe itself)."""
    out = dict(ctx.meta.get(RECIPE) or {})
    for name, value in values.items():
        source = ctx.get_parameter_source(name)
        if source not in (None, click.core.ParameterSource.DEFAULT) and value not in (None, ()):
            out[name] = value
    return out


def passed(flags: dict[str, Any]) -> dict[str, Any]:
    """The flags to pass to a library function that takes them as keywords: those not given (None: click's
    default of a generated flag) are left out, so the function's own defaults apply."""
    return {name: value for name, value in flags.items() if value is not None}
