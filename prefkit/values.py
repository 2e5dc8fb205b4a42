"""Strict checks of option values, wherever they come from (a flag, a recipe file, a manifest, a Python keyword).

YAML and JSON give values their own types, and pydantic's lax mode would read ``top: true`` as 1 and let
``min_margin: .nan`` through. :func:`strict_value` refuses, before pydantic converts anything: a bool where a
number is meant, a number that is not finite, a fraction where a whole number is meant, and anything but a
string or a list of strings where names are meant (``split``, ``decontaminate``). :func:`names` is the same rule
for the settings of one recipe source. Errors are ``ValueError`` (pydantic names the field) or
:class:`~prefkit.errors.OptionError` naming the key.

The option models are built from the same rule: :func:`option` declares a documented field (its help becomes the
flag's, :mod:`prefkit.commands.options`), :class:`OptionGroup` is the strict, immutable base of every option model
(``BuildOptions``' groups, ``LoadOptions``, ``PushOptions`` …), and :meth:`OptionGroup.from_keywords` makes one from
a function's keywords.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from prefkit.errors import OptionError
from prefkit.errors import option as mention


def _kinds(annotation: Any) -> set[Any]:
    """The base types an annotation allows (``int | None`` -> {int, NoneType}; Literal -> {Literal})."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return {kind for arg in typing.get_args(annotation) for kind in _kinds(arg)}
    if origin is Literal:
        return {Literal}
    return {origin or annotation}


def strict_value(value: Any, annotation: Any) -> Any:
    """``value`` unchanged when it may become ``annotation``; raises ValueError (worded for a user) when it is a
    bool for a number, a non-finite or fractional number for an int, a non-finite float, or not a string / list of
    strings for a tuple of names."""
    if value is None:
        return value
    kinds = _kinds(annotation)
    if Literal in kinds or bool in kinds or Any in kinds:
        return value
    if kinds & {int, float} and isinstance(value, bool):
        raise ValueError(f"must be a number, not {str(value).lower()}")
    if isinstance(value, float) and kinds & {int, float} and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if int in kinds and float not in kinds and isinstance(value, float) and not value.is_integer():
        raise ValueError("must be a whole number")
    if tuple in kinds:
        names(value, None)
    return value


def names(value: Any, key: str | None) -> tuple[str, ...] | None:
    """A name or a list of names (``split: train`` / ``split: [train, test]``) as a tuple; None stays None.
    Raises ValueError (``key`` None) or OptionError naming ``key`` for anything else."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if key is None:  # pydantic adds the value
        raise ValueError("must be a name or a list of names")
    raise OptionError(
        f"{key}: must be a name or a list of names, got {value!r}",
        f"write e.g. `{key}: train` or `{key}: [train, test]`",
    )


def text(value: Any, key: str) -> str | None:
    """A string setting (``revision``, ``config``, ``data_dir`` of a recipe source); None stays None. Raises
    OptionError naming ``key`` for anything else (a number, a list)."""
    if value is None or isinstance(value, str):
        return value
    raise OptionError(
        f"{key}: must be text, got {value!r}", f'quote it in the recipe, e.g. `{key}: "{value}"`'
    )


def option(
    default: Any = None,
    help: str = "",
    *,
    cli: bool = True,
    metavar: str | None = None,
    flag_value: Any = None,
    flag: dict[str, Any] | None = None,
    **kw: Any,
):
    """A documented option field. ``cli=False``: no flag of its own (set through another one or in Python);
    ``flag_value``: the value of the flag given without one (``--near-dedup`` = ``--near-dedup pair``); ``flag``:
    how the flag shows besides its name and help (:func:`prefkit.commands.options.field_kwargs`): ``short``
    (``"-m"``), ``path`` (click.Path's ``file_okay``/``dir_okay``: FILE or DIRECTORY), ``show_default`` (click
    shows and passes the default)."""
    extra: dict[str, Any] = {"cli": cli, **({"metavar": metavar} if metavar else {})}
    if flag_value is not None:
        extra["flag_value"] = flag_value
    if flag:
        extra["flag"] = flag
    return Field(default, description=help, json_schema_extra=extra, **kw)


G = TypeVar("G", bound="OptionGroup")


class OptionGroup(BaseModel):
    """Base of the option groups: unknown names are errors, values are immutable, and types are strict
    (:func:`strict_value`: no bool for a number, no NaN, names as a string or a list of strings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _strict(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        return value if field is None else strict_value(value, field.annotation)

    @classmethod
    def from_keywords(cls: type[G], options: G | None, keywords: dict[str, Any], function: str) -> G:
        """``options`` (default: the defaults) with ``keywords`` applied: the options of a library function that
        takes its flags as keywords (``push(folder, repo, private=True)``). An unknown keyword is a ``TypeError``,
        as Python's own for ``function``; a value the option cannot take an :class:`OptionError` naming it."""
        unknown = [name for name in keywords if name not in cls.model_fields]
        if unknown:
            raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r}")
        try:
            return cls.model_validate({**(dict(options) if options is not None else {}), **keywords})
        except ValidationError as err:
            first = err.errors()[0]
            message = first["msg"].removeprefix("Value error, ")
            if not first["loc"]:  # a rule across options: its message names them
                raise OptionError(message, f"`prefkit {function} --help` describes each option") from None
            name = str(first["loc"][0])
            raise OptionError(
                f"{mention(name)}: {message}, got {first.get('input')!r}",
                f"`prefkit {function} --help` (docs/cli.md) says what {mention(name)} takes",
            ) from None
