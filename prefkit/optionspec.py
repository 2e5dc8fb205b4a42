"""How an option is declared, once for every command: :func:`option` (a documented field: help, default, bounds,
how its flag is spelled), :class:`OptionGroup` (a frozen, strict pydantic model of such fields) and
:class:`CommandOptions` (everything one command can be told). The option models of `build`
(:mod:`prefkit.options`), of model loading (:mod:`prefkit.loading`) and of the jobs are made of them, and the CLI's
flags are generated from them (:mod:`prefkit.commands.options`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from prefkit.errors import OptionError, read_user_file
from prefkit.errors import option as mention
from prefkit.values import strict_value

__all__ = ["CommandOptions", "OptionGroup", "option", "option_error", "read_recipe"]

#: the commands whose options a recipe file may hold in a section of their own (``reflogps:`` …), beside build's
#: sources and option groups at the top level (:meth:`CommandOptions.from_file`)
RECIPE_SECTIONS = ("reflogps", "score", "verify", "generate")


#: what :func:`option` takes besides pydantic's ``Field`` keywords: how the flag is spelled and what it takes
FLAG_KEYS = ("decls", "choices", "required", "path")


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
    ``flag_value``: the value of the flag given without one (``--near-dedup`` = ``--near-dedup pair``).

    How the flag is spelled and what it takes (:data:`FLAG_KEYS`), where it is not the name with dashes
    (``shard_rows``: ``--shard-rows``): ``decls`` (``("-m", "--model")``, ``("-n",)``; ``("--resume/--no-resume",)``
    for an on/off pair; ``("--no-prefix-sharing",)`` for a flag that turns a ``True`` default off); ``choices``:
    the values the flag takes where Python takes any string (the library checks those itself, e.g.
    ``dtype="bf16"``); ``required=True``: the command needs the flag (Python: a positional parameter);
    ``path="dir"``: the flag names a folder (not a file), ``path="file"`` a file. The other keywords are pydantic's (``ge=1``)."""
    extra: dict[str, Any] = {"cli": cli, **({"metavar": metavar} if metavar else {})}
    if flag_value is not None:
        extra["flag_value"] = flag_value
    for key in FLAG_KEYS:
        value = kw.pop(key, None)
        if value:
            extra[key] = list(value) if isinstance(value, tuple) else value
    return Field(default, description=help, json_schema_extra=extra, **kw)


G = TypeVar("G", bound="OptionGroup")


class OptionGroup(BaseModel):
    """Base of the option groups: unknown names are errors, values are immutable, and types are strict
    (:func:`prefkit.values.strict_value`: no bool for a number, no NaN, names as a string or a list of strings).

    A command's options (:class:`CommandOptions`) are one group made of several (``class ReflogpsOptions(JobOptions,
    ModelOptions)``); :meth:`part` reads one of them back out of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: the command whose ``--help`` an error about these options points at ("": none in particular)
    COMMAND: ClassVar[str] = ""

    @field_validator("*", mode="before")
    @classmethod
    def _strict(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        return value if field is None else strict_value(value, field.annotation)

    def part(self, group: type[G]) -> G:
        """The options of ``group`` (a base of this one, or any group sharing its field names) out of these."""
        return group(
            **{name: getattr(self, name) for name in group.model_fields if name in type(self).model_fields}
        )

    def given(self) -> dict[str, Any]:
        """The options set explicitly (by keyword, flag or a copied instance), by name."""
        return {name: getattr(self, name) for name in self.model_fields_set}

    @classmethod
    def create(cls: type[G], options: OptionGroup | dict | None = None, **keywords: Any) -> G:
        """From an instance (of this group: what it was given; of another that shares option names: its values of
        those), a dict of options by name, and/or keywords (keywords win). Raises :class:`OptionError` naming the
        flag and the keyword of an unknown or invalid option, or an ``options`` of no use to this group."""
        known = cls.model_fields
        if isinstance(options, dict):  # options by name, as keywords
            keywords = {**options, **keywords}
            options = None
        elif options is not None and (
            not isinstance(options, OptionGroup) or not set(type(options).model_fields) & set(known)
        ):
            raise OptionError(
                f"options must be a {cls.__name__} (or a dict of its options), got {type(options).__name__}",
                f"pass {cls.__name__}(...) or the options as keywords",
            )
        unknown = sorted(set(keywords) - set(known))
        if unknown:
            raise OptionError(
                f"unknown option(s) {', '.join(unknown)}",
                f"options are: {', '.join(sorted(known))}"
                + (
                    f" (`prefkit {cls.COMMAND} --help` describes those that are flags)" if cls.COMMAND else ""
                ),
            )
        if options is None:
            base = {}
        elif type(options) is cls:  # what it was given (the rest are the same defaults)
            base = options.given()
        else:  # another group (a command's options for its model's): its values of the shared names
            base = {k: getattr(options, k) for k in type(options).model_fields if k in known}
        values = {**base, **keywords}
        try:
            return cls(**values)
        except ValidationError as err:
            raise option_error(err, cls.COMMAND) from None

    def replace(self: G, **changes: Any) -> G:
        """A copy with some options changed (validated)."""
        return type(self).create(self, **changes)


class CommandOptions(OptionGroup):
    """Everything one command (`reflogps`, `score`, `verify`, `generate`) can be told: its flags, its library
    function's keywords (the same names and defaults), one typed object. :data:`FLAGS` lists the fields that are
    flags, in the order ``--help`` shows them (the others are Python keywords only: ``progress``, ``command`` …);
    their click defaults are the fields' defaults (shown as click shows them)."""

    #: the fields that are the command's flags, in ``--help`` order
    FLAGS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_file(cls: type[C], path: str | Path) -> C:
        """The options in a recipe file (YAML, or JSON by its ``.json`` suffix), by their Python names
        (``max_length: 2048``, as the library's keywords): the file's ``<command>:`` section
        (:data:`RECIPE_SECTIONS`; one file may hold build's recipe and a section per command), or the whole file
        when it has no section and no ``sources``. Values are read as the flags' are (paths from the current
        folder). What was set in the file is :meth:`given`; pass the result as ``options=`` (keywords win).

        Raises :class:`OptionError`: the file cannot be read or parsed, is not a mapping, is a set's manifest, has
        sections but none for this command, or holds an option that is not one of the command's flags
        (:data:`FLAGS`) or has a value it cannot take (named, with the file)."""
        return cls.from_recipe(read_recipe(path), f"recipe {str(path)!r}")

    @classmethod
    def from_recipe(cls: type[C], data: dict[str, Any], where: str) -> C:
        """:meth:`from_file` on a recipe already read (:func:`read_recipe`); ``where`` names it in errors."""
        if "prefkit_version" in data and "recipe" in data:  # a set's prefkit.json: its sections record runs
            raise OptionError(
                f"{where} is a set's manifest (prefkit.json), not a recipe of `prefkit {cls.COMMAND}`",
                f"a manifest rebuilds a set (`prefkit build --recipe`); write the {cls.COMMAND} options in a YAML file",
            )
        if cls.COMMAND in data:
            data = data[cls.COMMAND]
            if not isinstance(data, dict):
                raise OptionError(
                    f"`{cls.COMMAND}:` in {where} is not a mapping",
                    f"write the {cls.COMMAND} options under it",
                )
        elif "sources" in data or set(data) & set(RECIPE_SECTIONS):
            sections = ", ".join(f"`{s}:`" for s in RECIPE_SECTIONS if s in data) or "none"
            raise OptionError(
                f"{where} has no `{cls.COMMAND}:` section (its command sections: {sections})",
                f"add a `{cls.COMMAND}:` section with the options of `prefkit {cls.COMMAND}`",
            )
        dashed = sorted(k for k in data if isinstance(k, str) and "-" in k)
        if dashed:
            raise OptionError(
                f"{where}: options are written with underscores, got {', '.join(map(repr, dashed))}",
                f"write {', '.join(repr(k.replace('-', '_')) for k in dashed)} (the Python names)",
            )
        unknown = sorted(str(k) for k in data if k not in cls.FLAGS)  # `progress`, `command`: Python's only
        if unknown:
            raise OptionError(
                f"{where}: unknown option(s) {', '.join(unknown)}",
                f"a recipe holds the options of `prefkit {cls.COMMAND}`'s flags: {', '.join(cls.FLAGS)}",
            )
        try:
            return cls.create({str(k): v for k, v in data.items()})
        except OptionError as err:
            raise OptionError(f"{where}: {err.raw_message}", err.raw_hint) from None


C = TypeVar("C", bound=CommandOptions)


def read_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe file's mapping: YAML, or JSON by its ``.json`` suffix (a build's ``prefkit.json`` is JSON).

    Raises :class:`OptionError`: the file cannot be read (missing, not UTF-8), is not valid YAML/JSON, is empty
    or is not a mapping."""
    if not str(path):  # Path("") is the current folder
        raise OptionError("the recipe's file name is empty", "name a YAML or JSON recipe file")
    path = Path(path)
    where = f"recipe {str(path)!r}"
    text = read_user_file(path, OptionError, where, "pass a YAML or JSON recipe file")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OptionError(f"{where} is not valid: {first}", "check its YAML/JSON syntax") from None
    if data is None:
        raise OptionError(f"{where} is empty", "write its options as a mapping (`name: value`)")
    if not isinstance(data, dict):
        raise OptionError(
            f"{where} is not a mapping (it holds a {type(data).__name__})",
            "write its options as a mapping (`name: value`)",
        )
    return data


def option_error(err: ValidationError, command: str = "build") -> OptionError:
    first = err.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    where = f" (`prefkit {command} --help`)" if command else ""
    if not first["loc"]:  # a rule across options (a model validator): its message names them
        return OptionError(message, f"docs/cli.md{where} describes each option")
    name = str(first["loc"][0])
    return OptionError(
        f"{mention(name)}: {message}, got {first.get('input')!r}",
        f"docs/cli.md{where} says what {mention(name)} takes",
    )
