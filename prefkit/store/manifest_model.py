"""The manifest as a typed model: :class:`Manifest` reads and writes ``OUT/prefkit.json``.

Each section of the manifest is a sub-model whose known keys are typed; a key the model does not know (one a
later prefkit adds, or one a section carries freely) is kept as it is (``extra="allow"``), and every key is
optional, so a manifest written by an older prefkit reads. Writing gives the bytes prefkit has always written: a
section keeps the order its keys were read (or given) in, a key set later goes last (as in a dict), and only the
keys that were read or set are written (:meth:`Manifest.to_dict`).

Sections owned by later stages (``reflogps``, ``rm_scores``, ``generate``, ``judge``, ``report``, ``push``) are
typed here as plain models: this module imports nothing above :mod:`prefkit.output`. The JSON Schema of the model
is ``schemas/manifest.schema.json`` (``python scripts/export_schemas.py``; a test keeps it in sync).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidatorFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from prefkit.record import same_for_every_pydantic

#: a number as JSON holds it: an int stays an int, a float a float (so the bytes written back are the same)
Number = int | float
#: counts by reason (``dropped``, ``invalid``, ``added``, ``flags``)
ByReason = dict[str, int]


class Section(BaseModel):
    """A manifest section: typed keys, any other key kept, written back in the order it was read.

    Values are not converted (strict): a key that holds the wrong type is a :class:`pydantic.ValidationError`,
    never a silently changed value."""

    model_config = ConfigDict(
        extra="allow", strict=True, populate_by_name=True, protected_namespaces=(), validate_default=False
    )

    #: the keys (as written) in the order they were read or set
    _order: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _read_order(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        made = handler(data)
        if isinstance(data, dict) and isinstance(made, Section):
            made._order = [str(k) for k in data]
        return made

    @model_serializer(mode="wrap")
    def _write_in_order(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        ordered = {k: data[k] for k in self._order if k in data}
        ordered.update((k, v) for k, v in data.items() if k not in ordered)
        return ordered

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if not name.startswith("_"):
            field = type(self).model_fields.get(name)
            key = (field.alias if field is not None else None) or name
            if key not in self._order:
                self._order.append(key)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` as written in the manifest (a typed key or a kept one), ``default`` when absent."""
        field = next((n for n, f in type(self).model_fields.items() if (f.alias or n) == key), None)
        if field is not None:
            return getattr(self, field) if field in self.model_fields_set else default
        return (self.model_extra or {}).get(key, default)

    def has(self, key: str) -> bool:
        """Whether the section holds ``key`` (read or set), even with a null value."""
        field = next((n for n, f in type(self).model_fields.items() if (f.alias or n) == key), None)
        return field in self.model_fields_set if field is not None else key in (self.model_extra or {})

    def to_dict(self) -> dict[str, Any]:
        """The section as JSON holds it: the keys read or set, in their order."""
        return self.model_dump(by_alias=True, exclude_unset=True)


# ------------------------------------------------------------------------------------------------ counts
class Counts(Section):
    """Where the rows of a split ended (:meth:`prefkit.accounting.Counts.to_dict`): ``read`` + ``added`` =
    ``kept`` + ``dropped`` + ``invalid``; ``flags`` count rows kept with a mark."""

    read: int | None = None
    kept: int | None = None
    dropped: ByReason | None = None
    invalid: ByReason | None = None
    added: ByReason | None = None
    flags: ByReason | None = None


class SplitEntry(Counts):
    """One output split (``splits.<name>``): its counts and its data files (relative to OUT; absent in sets of
    prefkit 0.1, whose shards are found by name)."""

    files: list[str] | None = None


class SourceSplit(Counts):
    """One split of a source (``sources[].splits.<name>``): the format it was read as, its counts, the columns the
    format left unused."""

    format: dict[str, Any] | None = None
    #: the columns the format did not read, with their non-null values
    unused_columns: dict[str, int] | None = None


class SourceEntry(Section):
    """One source (``sources[]``): its identity and the revision it resolved to, and per split its format and
    counts; its weight, preset and licence, and the margin scale when several sources were mixed."""

    source: str | None = None
    id: str | None = None
    kind: str | None = None
    revision: str | None = None
    sha: str | None = None
    config: str | None = None
    data_dir: str | None = None
    #: per split its format and counts (a source described before it was read: its rows, when known)
    splits: dict[str, SourceSplit | int | None] | None = None
    weight: dict[str, Any] | None = None
    preset: str | None = None
    #: the preset's licence id (several, when its parts differ)
    license: str | list[str] | None = None
    gated: bool | None = None
    margin_scale: dict[str, Any] | None = None
    #: the source is a prefkit set (its columns carried)
    prefkit_set: bool | None = None
    #: rows read when a sample was asked for
    sample: int | None = None
    #: files of a local folder not read
    skipped: list[str] | None = None
    unread: Any = None
    #: a generated set's prompt source: the families its splits were read as
    families: dict[str, Any] | None = None


class Recipe(Section):
    """``recipe``: what rebuilds the set (``prefkit build --recipe OUT/prefkit.json``): the sources as read (Hub
    sources pinned to their commit, local ones with their files' sizes and SHA-256) and the options that differ
    from the defaults, by group (the groups' keys are :class:`prefkit.options.BuildOptions`')."""

    prefkit_recipe: int | None = None
    sources: list[Any] | dict[str, Any] | None = None
    formats: dict[str, Any] | None = None
    filters: dict[str, Any] | None = None
    select: dict[str, Any] | None = None
    chat: dict[str, Any] | None = None
    output: dict[str, Any] | None = None


class TestSplit(Section):
    """``test_split``: how the leak-free test split was drawn (``--test-size``/``--test-rows``)."""

    __test__ = False  # not a pytest class

    groups: int | None = None
    test_groups: int | None = None
    test_kept: int | None = None
    target: int | None = None
    test_size: Number | None = None
    test_rows: int | None = None
    seed: int | None = None
    grouped_by: str | None = None


class Tokenizer(Section):
    """``tokenizer`` (and ``stats.tokenizer``): what decided token lengths and text rendering: the tokenizer's
    identity and hash, the chat template's origin and hash, and the length settings."""

    name_or_path: str | None = None
    revision: str | None = None
    hash: str | None = None
    class_: str | None = Field(default=None, alias="class")
    chat_template: str | None = None
    chat_template_hash: str | None = None
    bos_token: str | None = None
    max_length: int | None = None
    max_prompt_length: int | None = None
    min_answer_tokens: int | None = None
    output_format: str | None = None
    rule: str | None = None


class Export(Section):
    """``export``: the shape an ``--export`` other than ``trl`` wrote, and per split what it wrote (``rows``…)."""

    shape: str | None = None
    splits: dict[str, dict[str, Any]] | None = None


class Stats(Section):
    """``stats``: per split the statistics of what was written (:mod:`prefkit.output.stats`), the plots recorded
    inside the folder, the tokenizer that counted tokens."""

    plots: list[str] | None = None
    splits: dict[str, dict[str, Any]] | None = None
    tokenizer: Tokenizer | None = None


# ------------------------------------------------------------------------------------- the quality pass
class EvalSet(Section):
    """One eval set of ``--decontaminate``: its items, where it was read (``revision``…), the rows removed."""

    name: str | None = None
    items: int | None = None
    #: a Hub eval set: its id and the commit it was read at
    hub_id: str | None = None
    revision: str | None = None
    #: a local eval set: its path
    path: str | None = None
    split: str | None = None
    column: str | None = None
    rows_removed: int | None = None


class Decontamination(Section):
    """``decontamination``: the eval sets compared with and the n-gram settings."""

    sets: list[EvalSet] | None = None
    answers: bool | None = None
    n: int | None = None
    min_words: int | None = None


class NearDedup(Section):
    """``near_dedup``: MinHash near-duplicate removal."""

    mode: str | None = None
    threshold: Number | None = None
    num_perm: int | None = None
    shingle_words: int | None = None
    seed: int | None = None
    rows_removed: int | None = None


class LengthBalanceSplit(Section):
    chosen_longer_before: Number | None = None
    chosen_longer_after: Number | None = None
    rows_removed: int | None = None


class LengthBalance(Section):
    """``length_balance``: the chosen-longer share per split before and after balancing."""

    tolerance: Number | None = None
    unit: str | None = None
    splits: dict[str, LengthBalanceSplit] | None = None


# --------------------------------------------------------------------------------- the jobs on the runner
class JobRun(Section):
    """What every sharded job (`reflogps`, `score`, `generate`, the judge) records: the command, the counts per
    split and in total, the workers, the time, and the fingerprints that tell a later worker the job is done."""

    command: str | None = None
    world_size: int | None = None
    workers: int | None = None
    splits: dict[str, dict[str, Any]] | None = None
    totals: dict[str, Any] | None = None
    seconds: Number | None = None
    shards: int | None = None
    fingerprint: str | None = None
    result_fingerprint: str | None = None


class ModelRun(JobRun):
    """A scoring run's model provenance (``reflogps``, ``rm_scores``): the model (id or path, resolved revision,
    weight / tokenizer / chat-template hashes), its loading (dtype, attention, quantization, adapter), the
    length settings, the TRL rule and the engine."""

    prefkit_version: str | None = None
    created: str | None = None
    columns: list[str] | None = None
    model: str | None = None
    model_source: str | None = None
    model_path: str | None = None
    revision: str | None = None
    model_class: str | None = None
    weights_sha256: str | None = None
    weight_files: list[str] | None = None
    tokenizer_sha256: str | None = None
    chat_template: str | None = None
    chat_template_sha256: str | None = None
    dtype: str | None = None
    device: str | None = None
    attn_implementation: str | None = None
    quantization: dict[str, Any] | None = None
    adapter: dict[str, Any] | None = None
    max_length: int | None = None
    truncation_mode: str | None = None
    trl_releases: str | None = None
    trl_version: str | None = None
    engine: dict[str, Any] | None = None


class Kto(Section):
    """``reflogps.kto``: what KTO's KL values depend on, the label counts, TRL's recommended weights."""

    trainer: str | None = None
    per_device_train_batch_size: int | None = None
    kl_order: str | None = None
    train_sampling_strategy: str | None = None
    labels: dict[str, Any] | None = None
    recommended_weights: dict[str, Any] | None = None


class Reflogps(ModelRun):
    """``reflogps``: the reference model's log-probabilities (``ref_chosen_logps`` / ``ref_rejected_logps``)."""

    trl_tokenization_rule: str | None = None
    kto: Kto | None = None


class RmScores(ModelRun):
    """``rm_scores``: reward-model scores of pairs (``rm_chosen`` …) or, with ``scope: completions``, of a
    generated set's completions."""

    tokenization_rule: str | None = None
    num_labels: int | None = None
    pad_token_id: int | None = None
    scope: str | None = None


class Generate(JobRun):
    """``generate``: the completions' engine, models, sampling and seed rule."""

    engine: str | None = None
    engine_version: str | None = None
    models: list[dict[str, Any]] | None = None
    sampling: dict[str, Any] | None = None
    n: int | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    seed_rule: str | None = None


class Judge(JobRun):
    """``judge``: an LLM judge's model and rubric."""

    model: dict[str, Any] | None = None
    rubric: dict[str, Any] | None = None
    columns: list[str] | None = None


class Prompts(Section):
    """``prompts``: a generated set's prompt set (one row per distinct prompt) and its counts per split."""

    fingerprint: str | None = None
    counts: dict[str, dict[str, Any]] | None = None


class Report(Section):
    """``report``: the page `prefkit report` wrote inside the folder."""

    path: str | None = None
    created: str | None = None
    seed: int | None = None
    rows_shown: dict[str, Any] | None = None


class Push(Section):
    """``push``: the files a push wrote (in the Hub copy; what a later push may delete)."""

    files: list[str] | None = None


# ----------------------------------------------------------------------------------------- the manifest
class Manifest(Section):
    """``OUT/prefkit.json``: where the set came from, what was done to it, how many rows ended where, and what
    each later command (`reflogps`, `score`, `generate`, `stats`, `report`, `push`) added."""

    prefkit_version: str | None = None
    created: str | None = None
    command: str | None = None
    sources: list[SourceEntry] | None = None
    parameters: dict[str, Any] | None = None
    recipe: Recipe | None = None
    splits: dict[str, SplitEntry] | None = None
    totals: Counts | None = None
    prompts: Prompts | None = None
    test_split: TestSplit | None = None
    tokenizer: Tokenizer | None = None
    decontamination: Decontamination | None = None
    near_dedup: NearDedup | None = None
    length_balance: LengthBalance | None = None
    export: Export | None = None
    stats: Stats | None = None
    reflogps: Reflogps | None = None
    rm_scores: RmScores | None = None
    generate: Generate | None = None
    judge: Judge | None = None
    report: Report | None = None
    push: Push | None = None

    @classmethod
    def read(cls, data: Manifest | dict[str, Any]) -> Manifest:
        """The manifest of a dict as ``prefkit.json`` holds it (a manifest passes as it is)."""
        return data if isinstance(data, Manifest) else cls.model_validate(data)

    @classmethod
    def load(cls, path: Path | str) -> Manifest:
        """Read a ``prefkit.json`` file."""
        return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_json(self) -> str:
        """The text prefkit writes to ``prefkit.json`` (indented, the keys in their order, a newline at the end)."""
        return manifest_text(self.to_dict())

    # what readers ask of the whole manifest
    @property
    def export_shape(self) -> str:
        """The shape the set was exported in (``trl`` unless an ``--export`` wrote another)."""
        return (self.export.shape if self.export else None) or "trl"

    @property
    def split_entries(self) -> dict[str, SplitEntry]:
        return self.splits or {}

    @property
    def source_entries(self) -> list[SourceEntry]:
        return self.sources or []

    @property
    def options(self) -> dict[str, Any]:
        """The build's options that differ from the defaults (``parameters``)."""
        return self.parameters or {}

    @property
    def built_max_length(self) -> int | None:
        """The ``max_length`` the set was built with (its ``tokenizer`` entry's, or the build option), if any."""
        value = (self.tokenizer.max_length if self.tokenizer else None) or self.options.get("max_length")
        return int(value) if value else None

    def split_stats(self) -> dict[str, dict[str, Any]]:
        """The statistics recorded per split (``stats.splits``)."""
        return (self.stats.splits if self.stats else None) or {}


def manifest_text(data: Any) -> str:
    """``prefkit.json``'s text of a manifest dict: indented JSON, values JSON cannot hold as strings."""
    return json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"


def checked_manifest(data: Manifest | dict[str, Any]) -> Manifest:
    """The manifest a writer hands over, read through the model (its values as JSON holds them: a tuple is a list,
    a path its text), so what is written is what :meth:`Manifest.load` reads back."""
    if isinstance(data, Manifest):
        return data
    return Manifest.model_validate(json.loads(manifest_text(data)))


def json_schema() -> dict:
    """JSON Schema of ``prefkit.json`` (what ``schemas/manifest.schema.json`` holds)."""
    schema = same_for_every_pydantic(Manifest.model_json_schema(by_alias=True))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/prefkit/prefkit/schemas/manifest.schema.json"
    return schema


def write_json_schema(path: Path) -> Path:
    """Write :func:`json_schema` to ``path`` (``schemas/manifest.schema.json``: ``python scripts/export_schemas.py``)."""
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
    return path
