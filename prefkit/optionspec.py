"""How an option is declared, once for every command: :func:`option` (a documented field: help, default, bounds,
whether it has a flag) and :class:`OptionGroup` (a frozen, strict pydantic model of such fields). The option
models of `build` (:mod:`prefkit.options`) and of model loading (:mod:`prefkit.loading`) are made of them, and the
CLI's flags are generated from them (:mod:`prefkit.commands.options`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from prefkit.values import strict_value

__all__ = ["OptionGroup", "option"]


def option(
    default: Any = None,
    help: str = "",
    *,
    cli: bool = True,
    metavar: str | None = None,
    flag_value: Any = None,
    **kw: Any,
):
    """A documented option field. ``cli=False``: no flag of its own (set through another one or in Python);
    ``flag_value``: the value of the flag given without one (``--near-dedup`` = ``--near-dedup pair``)."""
    extra: dict[str, Any] = {"cli": cli, **({"metavar": metavar} if metavar else {})}
    if flag_value is not None:
        extra["flag_value"] = flag_value
    return Field(default, description=help, json_schema_extra=extra, **kw)


class OptionGroup(BaseModel):
    """Base of the option groups: unknown names are errors, values are immutable, and types are strict
    (:func:`prefkit.values.strict_value`: no bool for a number, no NaN, names as a string or a list of strings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _strict(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        return value if field is None else strict_value(value, field.annotation)
