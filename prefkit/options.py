"""Options are data: what `prefkit build` does, as one typed, grouped, documented object.

:class:`BuildOptions` has one group per pipeline stage (``sources``, ``formats``, ``filters``, ``select``,
``chat``, ``output``). Every option has one name, used the same way everywhere:

* Python: ``prefkit.build(src, "out", min_margin=1)`` (flat keywords) or ``options=BuildOptions(...)``;
* a recipe file (``prefkit build --recipe mix.yaml``): ``filters: {min_margin: 1}`` (or flat ``min_margin: 1``);
* the command line: ``--min-margin 1`` (the flags of `prefkit build` are generated from these fields, with
  this help text; see :mod:`prefkit.commands.options`).

A family's own options (``--pairs``, ``--axis`` …) are declared by the family (:mod:`prefkit.formats`) and
become fields of the ``formats`` group here. A recipe also lists the sources; the manifest of every build
records the resolved recipe, with each Hub source pinned to the commit it was read at, so
``prefkit build --recipe OUT/prefkit.json -o OUT2`` rebuilds the same set.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from prefkit.chat.target import TargetOptions
from prefkit.errors import OptionError
from prefkit.formats import FAMILIES, family_options
from prefkit.formats.system import SYSTEM_MODES, parse_system
from prefkit.optionspec import RECIPE_SECTIONS, OptionGroup, option, option_error, read_recipe
from prefkit.output.exports import DEFAULT_EXPORT, EXPORTS
from prefkit.select.evalsets import evalset_presets
from prefkit.values import names

#: what the manifest's recipe says it is (bumped when the recipe's meaning changes)
RECIPE_VERSION = 1


class SourceOptions(OptionGroup):
    """Where in each source to read (a recipe source's own settings win over these)."""

    split: tuple[str, ...] | None = option(None, "Split(s) to read (repeatable). Default: all splits.")
    revision: str | None = option(None, "Hub branch, tag or commit sha (recorded as the resolved sha).")
    config: str | None = option(None, "Hub dataset config (subset) name.")
    data_dir: str | None = option(
        None, "Folder inside the repo/folder to read, e.g. `helpful-base` for Anthropic/hh-rlhf."
    )
    preset: str | None = option(
        None,
        "Read every source with this known dataset's preset (`prefkit presets` lists them). Default: the preset "
        "whose id matches the source, else detection from the columns.",
    )
    allow_changed_sources: bool = option(
        False,
        "Rebuild from a recipe even when a local source's files differ from those it recorded (sizes and "
        "SHA-256); the differences are reported. Default: such a rebuild is refused.",
    )

    @field_validator("split", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return names(value, None) or None


class _FormatBase(OptionGroup):
    format: Literal[tuple(FAMILIES)] | None = option(  # type: ignore[valid-type]
        None, "Force a dataset shape instead of detecting it."
    )
    prompt_col: str | None = option(None, "Column holding the prompt (string or messages).")
    chosen_col: str | None = option(None, "Column holding the chosen answer.")
    rejected_col: str | None = option(None, "Column holding the rejected answer.")
    system_col: str | None = option(None, "Column holding a system prompt.")
    margin_col: str | None = option(
        None, "Numeric column to use as the margin (default: delta_score or chosen - rejected score)."
    )
    system: Literal[SYSTEM_MODES] = option(  # type: ignore[valid-type]
        "keep",
        "System prompts: keep (default), drop, override TEXT (replace or add everywhere), default TEXT (add "
        "where missing).",
        metavar="keep|drop|override TEXT|default TEXT",
    )
    system_text: str | None = option(None, "The system prompt of `system` override/default.", cli=False)

    @model_validator(mode="before")
    @classmethod
    def _split_system(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("system"), str):
            mode, text = parse_system(data["system"], data.get("system_text"))
            data = {**data, "system": mode, "system_text": text}
        return data


def _family_fields() -> dict[str, Any]:
    fields = {}
    for name, (decl, _) in family_options().items():
        constraints: dict[str, Any] = {"ge": decl.ge} if decl.ge is not None else {}
        fields[name] = (decl.annotation | None, option(None, decl.help, **constraints))
    return fields


#: the ``formats`` group: columns, shape, system prompts, and every family's own options
if TYPE_CHECKING:

    class FormatOptions(_FormatBase):
        """How rows are read: shape, columns, family options (fields made from the families' declarations)."""

        def __getattr__(self, name: str) -> Any: ...

else:
    FormatOptions = create_model(
        "FormatOptions",
        __base__=_FormatBase,
        __doc__="How rows are read: shape, columns, family options.",
        **_family_fields(),
    )


class FilterOptions(OptionGroup):
    """Row filters (validation always runs). Defaults: drop ties and template residue, keep the rest."""

    keep_ties: bool = option(False, "Keep pairs whose margin is 0 (dropped by default).")
    keep_residue: bool = option(
        False, "Keep rows whose text holds chat-template tokens (dropped by default)."
    )
    min_margin: float | None = option(None, "Drop rows whose margin is below this value.")
    negative_margin: Literal["keep", "drop", "flip"] = option(
        "keep",
        "Pairs whose margin prefers the rejected answer (margin < 0; always counted): keep them, drop them, "
        "or flip them (swap chosen and rejected).",
    )
    drop_disagreeing: bool = option(
        False,
        "Drop pairs the reward model does not prefer as labelled (rm_margin <= 0; a set scored by `prefkit "
        "score` given as the source).",
    )
    flip_disagreeing: bool = option(
        False,
        "Swap chosen and rejected where the reward model prefers the rejected answer (rm_margin < 0), with "
        "their scores, reference log-probs and reward scores.",
    )
    max_length: int | None = option(
        None,
        "Drop rows whose prompt + answer (either answer) has more than N tokens of --tokenizer, counted as "
        "TRL's DPOTrainer counts them, so TRL never truncates an answer (exactly N is kept).",
        ge=1,
    )
    max_prompt_length: int | None = option(None, "Drop rows whose prompt has more than N tokens.", ge=1)
    min_answer_tokens: int | None = option(
        None, "Drop rows whose chosen or rejected answer has fewer than N tokens.", ge=0
    )

    @model_validator(mode="after")
    def _one_way_for_disagreeing(self) -> FilterOptions:
        if self.drop_disagreeing and self.flip_disagreeing:
            raise ValueError("--drop-disagreeing and --flip-disagreeing exclude each other: choose one")
        return self

    @property
    def token_filters(self) -> bool:
        return any(v is not None for v in (self.max_length, self.max_prompt_length, self.min_answer_tokens))


def _evalset_names() -> list[str]:
    return list(evalset_presets())


class SelectOptions(OptionGroup):
    """Selection among valid rows, within and across sources."""

    top: int | None = option(
        None,
        "Keep the N rows with the largest margin (stable sort, descending), per split of each source; "
        "with several sources, size each one with a weight (`SOURCE:2000`).",
        ge=1,
    )
    max_rows: int | None = option(
        None, "Keep at most N rows per split (the first N, or a seeded sample with --seed).", ge=1
    )
    seed: int | None = option(
        None,
        "Seed for sampling (--max-rows, source weights, --pairs best-vs-random, --test-size).",
        ge=0,
        le=2**32 - 1,
    )
    dedup: bool = option(
        False, "Drop exact duplicates of normalised (prompt, chosen, rejected), across all sources."
    )
    one_pair_per_prompt: bool = option(
        False, "Keep only the highest-margin pair of each prompt (across all sources)."
    )
    near_dedup: Literal["pair", "prompt"] | None = option(
        None,
        "Drop near-duplicates across all sources (MinHash over word 3-shingles, LSH): `pair` (the value when "
        "none is given) compares prompt + both answers and keeps the first; `prompt` keeps one pair per cluster "
        "of near-identical prompts, the highest margin.",
        flag_value="pair",
    )
    near_dedup_threshold: float = option(
        0.8,
        "Jaccard similarity at or above which --near-dedup calls two texts near-duplicates.",
        ge=0.05,
        le=1,
    )
    decontaminate: tuple[str, ...] | None = option(
        None,
        "Drop rows whose prompt contains an item of this eval set (repeatable): a built-in name "
        f"({', '.join(_evalset_names())}), a local file or a Hub dataset id.",
        metavar="EVAL",
    )
    decontaminate_answers: bool = option(
        False, "With --decontaminate: also drop rows whose chosen or rejected answer contains an eval item."
    )
    length_balance: bool = option(
        False,
        "Drop the fewest pairs (lowest margins first) so the chosen answer is longer in 50 % ± 1 % of pairs per "
        "split (tokens with --tokenizer, else characters).",
    )

    test_size: float | None = option(
        None,
        "Write train/test splits with this share of the rows in test, grouped so no prompt is on both sides.",
    )
    test_rows: int | None = option(
        None, "Like --test-size, as a number of test rows (at least; whole prompt groups move).", ge=1
    )

    @field_validator("near_dedup", mode="before")
    @classmethod
    def _near_dedup_flag(cls, value: Any) -> Any:
        return {True: "pair", False: None}.get(value, value) if isinstance(value, bool) else value

    @field_validator("decontaminate", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return names(value, None) or None


class ChatOptions(TargetOptions):
    """The target model's tokenizer and chat template (token-length filters, text output)."""

    output_format: Literal["auto", "messages", "text", "plain"] = option(
        "auto",
        "auto: plain when every source is implicit text (chosen/rejected strings sharing their start) and no "
        "--tokenizer/--chat-template is given, else messages. messages: TRL's conversational columns (what TRL >= "
        "0.29 wants). plain: TRL's standard text format, prompt/chosen/rejected strings as the source wrote them "
        "(a base-model set; implicit-text sources only). text: prompt rendered with the chat template and "
        "generation prompt, chosen/rejected as the continuation, split as TRL's apply_chat_template does; for "
        "trainers that take text (fed to TRL >= 0.29 it gets a double BOS). --format is the INPUT shape.",
    )


class OutputOptions(OptionGroup):
    """What the output folder holds besides the canonical records."""

    export: Literal[tuple(EXPORTS)] = option(  # type: ignore[valid-type]
        DEFAULT_EXPORT,
        "Shape of the data files: TRL messages, OpenRLHF full conversations + margin, LLaMA-Factory ShareGPT "
        "(+ dataset_info.json), TRL KTO unpaired rows, hosted DPO fine-tuning JSONL (openai: OpenAI, Azure "
        "OpenAI, Together, Fireworks), axolotl chat_template.default, NeMo-RL context + ranked completions, or "
        "torchtune preference_dataset conversations. Rows the trainer has no place for (tools, reasoning, ...) "
        "are dropped as export_unsupported.",
    )
    full_rejects: bool = option(
        False,
        "Copy every original column of every row not kept into rejects/ (by default: the columns the build "
        "read, and for rows not chosen by --top/--max-rows only source_index, reason and margin).",
    )

    @property
    def trl_shaped(self) -> bool:
        """Whether the export writes the canonical records as they are (TRL's shape: what `reflogps` and
        `stats` read, and what text output reshapes)."""
        return EXPORTS[self.export].trl_shape


GROUPS: dict[str, type[OptionGroup]] = {
    "sources": SourceOptions,
    "formats": FormatOptions,
    "filters": FilterOptions,
    "select": SelectOptions,
    "chat": ChatOptions,
    "output": OutputOptions,
}
#: flat option name -> its group
GROUP_OF: dict[str, str] = {name: group for group, model in GROUPS.items() for name in model.model_fields}


def flag(name: str) -> str:
    """The command-line flag of an option (``min_margin`` -> ``--min-margin``)."""
    return "--" + name.replace("_", "-")


#: options that only modify another one: option -> the option it modifies (a warning when given alone)
MODIFIES = {
    "near_dedup_threshold": "near_dedup",
    "decontaminate_answers": "decontaminate",
}


class BuildOptions(BaseModel):
    """Everything `prefkit build` can be told, grouped by pipeline stage (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: SourceOptions = Field(default_factory=SourceOptions)
    formats: FormatOptions = Field(default_factory=FormatOptions)
    filters: FilterOptions = Field(default_factory=FilterOptions)
    select: SelectOptions = Field(default_factory=SelectOptions)
    chat: ChatOptions = Field(default_factory=ChatOptions)
    output: OutputOptions = Field(default_factory=OutputOptions)

    @classmethod
    def create(cls, data: dict[str, Any] | None = None, **flat: Any) -> BuildOptions:
        """From a grouped dict (a recipe) and/or flat names (keywords, flags); flat names win.

        Raises :class:`OptionError` naming the flag and the keyword of an unknown or invalid option.
        """
        grouped: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
        for key, value in {**(data or {}), **flat}.items():
            if key in GROUPS and isinstance(value, dict):
                for name, inner in value.items():
                    _place(grouped, name, inner, key)
            else:
                _place(grouped, key, value, None)
        try:
            return cls.model_validate({g: GROUPS[g](**values) for g, values in grouped.items()})
        except ValidationError as err:
            raise option_error(err) from None

    def inert(self) -> list[str]:
        """Warnings for options given without the option they modify (:data:`MODIFIES`): they change nothing."""
        given = self.flat()
        return [
            f"--{name.replace('_', '-')} changes nothing without --{needs.replace('_', '-')}"
            for name, needs in MODIFIES.items()
            if name in given and not given.get(needs)
        ]

    def flat(self, *, changed_only: bool = True) -> dict[str, Any]:
        """Every option by its flat name (only those that differ from the default, by default)."""
        out = {}
        for group in GROUPS:
            model = getattr(self, group)
            for name, info in type(model).model_fields.items():
                value = getattr(model, name)
                if not changed_only or value != info.default:
                    out[name] = list(value) if isinstance(value, tuple) else value
        return out

    def replace(self, **flat: Any) -> BuildOptions:
        """A copy with some options changed (flat names)."""
        return BuildOptions.create(self.to_recipe(), **flat)

    def recipe(self, sources: list) -> dict[str, Any]:
        """The manifest's recipe: the resolved sources (recipe entries) and the options that differ from defaults."""
        return {"prefkit_recipe": RECIPE_VERSION, "sources": sources, **self.to_recipe()}

    def to_recipe(self) -> dict[str, dict[str, Any]]:
        """The options that differ from the defaults, grouped (the recipe's option part)."""
        out: dict[str, dict[str, Any]] = {}
        for name, value in self.flat().items():
            out.setdefault(GROUP_OF[name], {})[name] = value
        return out


def _place(grouped: dict[str, dict], name: str, value: Any, group: str | None) -> None:
    home = GROUP_OF.get(name)
    if home is not None and group is not None and group != home:
        raise OptionError(
            f"option {name!r} is not in group {group!r}: it belongs to group {home!r}",
            f"move it under `{home}:` (or write it at the top level: `{name}: ...`)",
        )
    if home is None:
        where = f" in group {group!r}" if group else ""
        raise OptionError(
            f"unknown option {name!r}{where}",
            f"options are: {', '.join(sorted(GROUP_OF))} (docs/cli.md describes their flags)",
        )
    if value is not None:
        grouped[home][name] = value


# ------------------------------------------------------------------------------------------------ recipes


def load_recipe(path: str | Path) -> tuple[list, BuildOptions]:
    """Read a recipe: YAML or JSON with ``sources`` and option groups (or flat options), or a build's
    ``prefkit.json`` (its ``recipe``). A section of another command's options (``reflogps:``, ``score:`` …,
    :data:`prefkit.optionspec.RECIPE_SECTIONS`) is that command's (:meth:`CommandOptions.from_file`), not the
    build's. Returns (source specs as written, options). Raises :class:`OptionError`."""
    path = Path(path)
    data = read_recipe(path)
    if "recipe" in data and "prefkit_version" in data:  # a manifest
        data = data["recipe"]
        if not isinstance(data, dict):
            raise OptionError(
                f"the recipe in {str(path)!r} is not a mapping", "rebuild the set, or pass a recipe file"
            )
    data = {k: v for k, v in data.items() if k != "prefkit_recipe" and k not in RECIPE_SECTIONS}
    sources = data.pop("sources", None) or []
    if not isinstance(sources, list):
        raise OptionError(f"`sources` in {str(path)!r} is not a list", "write `sources:` as a YAML list")
    return sources, BuildOptions.create(data)
