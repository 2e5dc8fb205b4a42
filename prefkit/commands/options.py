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


def _click_type(annotation: Any, metadata: list) -> tuple[Any, bool]:
    """(click type, multiple) of a field."""
    import annotated_types

    base, _ = _unwrap(annotation)
    if typing.get_origin(base) is typing.Literal:
        return click.Choice([str(v) for v in typing.get_args(base)]), False
    if typing.get_origin(base) is tuple:
        return str, True
    low: Any = next((m.ge for m in metadata if isinstance(m, annotated_types.Ge)), None)
    if base is int:
        return (click.IntRange(min=typing.cast(int, low)) if low is not None else int), False
    if base is float:
        return (click.FloatRange(min=typing.cast(float, low)) if low is not None else float), False
    return str, False


def field_option(name: str, info: Any, overrides: dict[str, Any] | None = None) -> Callable:
    """The click option of one model field (``overrides``: extra click keywords, e.g. ``cls``)."""
    kwargs = {**field_kwargs(info), **(overrides or {})}
    return click.option(*declarations(name, field_short(info)), **kwargs)


def declarations(name: str, short: str | None = None) -> list[str]:
    """click's declarations of a field's flag: ``[short,] "--" + name with dashes, name``."""
    return [*([short] if short else []), "--" + name.replace("_", "-"), name]


def field_short(info: Any) -> str | None:
    """A field's short flag (``option(flag={"short": "-m"})``), None when it has none."""
    return ((info.json_schema_extra or {}).get("flag") or {}).get("short")


def field_kwargs(info: Any) -> dict[str, Any]:
    """The click keywords of one model field's flag: help, default, type, choices, bounds, metavar; what
    ``option(flag=...)`` asks: a path type (FILE, DIRECTORY), a default click shows (``show_default``)."""
    extra = info.json_schema_extra or {}
    shown = extra.get("flag") or {}
    kwargs: dict[str, Any] = {"help": info.description, "default": None, "show_default": False}
    if extra.get("metavar"):
        kwargs["metavar"] = extra["metavar"]
    base, _ = _unwrap(info.annotation)
    if base is bool:
        kwargs.update(is_flag=True, default=None)
    else:
        kind, multiple = _click_type(info.annotation, info.metadata)
        kwargs["type"] = click.Path(**shown["path"]) if "path" in shown else kind
        if multiple:
            kwargs["multiple"] = True
        if shown.get("show_default"):
            kwargs.update(default=info.default, show_default=True)
        elif info.default is not None and not multiple:
            kwargs["help"] = f"{info.description} [default: {info.default}]"
        if extra.get("flag_value") is not None:
            kwargs.update(is_flag=False, flag_value=extra["flag_value"])
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


def given(ctx: click.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The option values the user gave (not click's defaults): what overrides a recipe."""
    out = {}
    for name, value in values.items():
        source = ctx.get_parameter_source(name)
        if source not in (None, click.core.ParameterSource.DEFAULT) and value not in (None, ()):
            out[name] = value
    return out


def passed(flags: dict[str, Any]) -> dict[str, Any]:
    """The flags to pass to a library function that takes them as keywords: those not given (None: click's
    default of a generated flag) are left out, so the function's own defaults apply."""
    return {name: value for name, value in flags.items() if value is not None}
