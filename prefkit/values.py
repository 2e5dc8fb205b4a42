"""Strict checks of option values, wherever they come from (a flag, a recipe file, a manifest, a Python keyword).

YAML and JSON give values their own types, and pydantic's lax mode would read ``top: true`` as 1 and let
``min_margin: .nan`` through. :func:`strict_value` refuses, before pydantic converts anything: a bool where a
number is meant, a number that is not finite, a fraction where a whole number is meant, and anything but a
string or a list of strings where names are meant (``split``, ``decontaminate``). :func:`names` is the same rule
for the settings of one recipe source. Errors are ``ValueError`` (pydantic names the field) or
:class:`~prefkit.errors.OptionError` naming the key.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any, Literal

from prefkit.errors import OptionError


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
