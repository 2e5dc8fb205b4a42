"""The dataset card (``OUT/README.md``, and the one `prefkit push` commits): one Jinja template
(``card.md.jinja``) filled from one context.

The YAML front matter is what ``datasets`` and the Hub read (``configs`` so ``load_dataset(OUT)`` finds the data,
``dataset_info`` features, tags); the body tells where every row came from: sources and revisions, the exact
command, counts per reason, statistics, and the reference model. The card of a local folder and the card `push`
commits come from the same template and say the same about the data; the Hub card adds only Hub parts (licence,
size category, split sizes, the repo id in the snippets, metadata already on the Hub).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jinja2
import yaml

from prefkit.accounting import meaning
from prefkit.output.exports import DEFAULT_EXPORT, EXPORTS
from prefkit.output.licences import most_restrictive, size_category
from prefkit.output.reference import ref_context
from prefkit.output.shapes import UNSUPPORTED
from prefkit.record import PreferenceRecord, features_yaml
from prefkit.resources import read_text
from prefkit.results import num
from prefkit.secrets import public_path, redact
from prefkit.store.manifest_model import (
    Generate,
    Manifest,
    SourceSplit,
    SplitEntry,
    Tokenizer,
)

#: meanings of the columns `prefkit reflogps` and `prefkit score` add
REF_COLUMN_MEANINGS = {
    "rm_chosen": "the reward model's score of prompt + chosen answer (its own chat template; `prefkit score`)",
    "rm_rejected": "the reward model's score of prompt + rejected answer",
    "rm_margin": "rm_chosen - rm_rejected: above 0 when the reward model agrees with the label",
    "ref_chosen_logps": "reference model's summed log-prob of the chosen completion tokens (TRL-exact)",
    "ref_rejected_logps": "reference model's summed log-prob of the rejected completion tokens (TRL-exact)",
    "chosen_tokens": "completion tokens scored for chosen (after TRL's max_length truncation)",
    "rejected_tokens": "completion tokens scored for rejected (after TRL's max_length truncation)",
    "ref_logps": "reference model's summed log-prob of the completion tokens (TRL KTOTrainer-exact)",
    "ref_KL_logps": "reference model's summed log-prob of the row's KL completion (the completion of the row "
    "before it in its per_device_train_batch_size batch)",
    "completion_tokens": "completion tokens scored (after TRL's max_length truncation)",
    "KL_completion_tokens": "KL completion tokens scored (after TRL's max_length truncation)",
    "KL_completion_hash": "xxh3-64 of the KL completion's token ids (the trainer checks its pairing with it)",
}
#: meanings of the columns an export shape adds (``--export kto``)
EXPORT_COLUMN_MEANINGS = {
    "completion": "one answer of a pair: its chosen answer (label true) or its rejected answer (label false)",
    "label": "true when the completion was the chosen answer of its pair, false when it was the rejected one",
}
#: meanings of the text columns of ``--output-format text``
TEXT_COLUMN_MEANINGS = {
    "prompt": "the history rendered with the chat template, ending with its generation prompt",
    "chosen": "the preferred answer as rendered after the prompt (TRL's apply_chat_template split)",
    "rejected": "the dispreferred answer as rendered after the prompt",
}


@dataclass
class HubCard:
    """What only the Hub card has: the repo, the licence `push` derived, split sizes, metadata on the Hub."""

    repo_id: str
    license: str
    license_family: str
    revision: str | None = None
    split_files: dict[str, dict] = field(default_factory=dict)
    source_licenses: dict[str, str | None] = field(default_factory=dict)
    include_rejects: bool = False
    plots: list[str] = field(default_factory=list)
    report: str | None = None  # the report page's path in the repo (`prefkit report`), when pushed
    extra_metadata: dict = field(default_factory=dict)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


@cache
def _template():
    source = read_text("prefkit.output", "card.md.jinja")
    env = jinja2.Environment(
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = num
    env.filters["pct"] = _pct
    return env.from_string(source)


def card_metadata(
    manifest: Manifest, features: dict, hub: HubCard | None = None, sizes: dict[str, dict] | None = None
) -> dict:
    """The YAML front matter: ``configs`` (so ``load_dataset(OUT)`` finds the data), ``dataset_info`` (features and
    each split's ``sizes``: :func:`prefkit.store.folder.split_sizes`), tags; on the Hub also the licence, size
    category and the keys of the card already there.

    The sizes matter locally too: ``datasets`` caches a local folder under a hash of its card, so a card without
    them would let ``load_dataset(OUT)`` return a previous build's rows after a rebuild."""

    splits = manifest.split_entries
    meta: dict = {}
    if hub is not None:
        meta["license"] = hub.license
        if hub.extra_metadata.get("pretty_name"):
            meta["pretty_name"] = hub.extra_metadata["pretty_name"]
    elif local_licence(manifest):
        meta["license"] = local_licence(manifest)
    meta["task_categories"] = ["text-generation"]
    meta["tags"] = ["dpo", "preference", "rlhf", "prefkit"]
    meta["size_categories"] = [_size_category(sum(c.kept or 0 for c in splits.values()))]
    hub_sources = [s.id for s in manifest.source_entries if s.kind == "hub"]
    if hub_sources:
        meta["source_datasets"] = hub_sources
    written = [name for name, c in splits.items() if (c.kept or 0) > 0]  # an empty split has no data file
    meta["configs"] = [
        {
            "config_name": "default",
            "data_files": [{"split": name, "path": _data_files(manifest, name)} for name in written],
        }
    ]
    if features:
        meta["dataset_info"] = {"features": features_yaml(features)}
        files = sizes if sizes is not None else (hub.split_files if hub is not None else None)
        if files:
            meta["dataset_info"]["splits"] = [
                {"name": s, "num_bytes": f["num_bytes"], "num_examples": f["num_examples"]}
                for s, f in files.items()
            ]
            meta["dataset_info"]["download_size"] = sum(f["download_size"] for f in files.values())
            meta["dataset_info"]["dataset_size"] = sum(f["num_bytes"] for f in files.values())
    return _merge_remote(meta, hub.extra_metadata) if hub is not None else meta


def local_licence(manifest: Manifest) -> str | None:
    """The licence the local card states: the most restrictive of the sources' recorded licences (their presets'),
    or None when a source's licence is not known here (`push` looks it up on the Hub)."""

    known: list[Any] = [s.license for s in manifest.source_entries]
    return most_restrictive(known) if known and all(known) else None


def _merge_remote(meta: dict, remote: dict) -> dict:
    """Keys of the card already on the Hub that prefkit does not write are kept; tags and categories merged."""
    owned = {"license", "size_categories", "source_datasets", "license_name", "license_link"}
    for key, value in remote.items():
        if key in ("tags", "task_categories") and isinstance(value, list):
            meta[key] = meta[key] + [v for v in value if v not in meta[key]]
        elif key not in meta and key not in owned:
            meta[key] = value
    return meta


def _data_files(manifest: Manifest, split: str) -> str | list[str]:
    """A split's data files as the card lists them: by name (so ``datasets``' cache of a local folder changes
    whenever the rows do, see :func:`prefkit.store.folder.content_digest`), else the split's pattern."""
    return manifest.split_entries[split].files or f"data/{split}-*"


def _size_category(n: int) -> str:
    return size_category(n)


def render_card(
    manifest: Manifest | dict,
    features: dict,
    *,
    name: str | None = None,
    hub: HubCard | None = None,
    sizes: dict[str, dict] | None = None,
) -> str:
    """The card's Markdown. ``features``: the data files' ``datasets`` features (dict form); ``name``: the folder's
    name (what ``load_dataset`` is shown loading locally); ``hub``: render the Hub card of `push`; ``sizes``:
    each split's rows and bytes (:func:`prefkit.store.folder.split_sizes`)."""
    manifest = Manifest.read(manifest)
    context = card_context(manifest, features, name=name, hub=hub)
    front = yaml.safe_dump(card_metadata(manifest, features, hub, sizes), sort_keys=False, allow_unicode=True)

    return _template().render(front_matter=front.rstrip(), **context)


def card_context(
    manifest: Manifest, features: dict, *, name: str | None = None, hub: HubCard | None = None
) -> dict:
    """Everything the template shows, from the manifest (and the Hub parts): what the set is and how to load it,
    where it came from, its counts and its statistics."""
    return {
        **_loading_context(manifest, features, name, hub),
        **_provenance_context(manifest, hub),
        **_counts_context(manifest),
        **_stats_context(manifest),
        "rejects_note": _rejects_note(hub),
        "hub": hub,
        "plots": hub.plots if hub else (manifest.stats.plots if manifest.stats else None) or [],
        "report": hub.report if hub else (manifest.report.path if manifest.report else None),
    }


def _loading_context(manifest: Manifest, features: dict, name: str | None, hub: HubCard | None) -> dict:
    """What the set is (title, intro, sizes, columns, reference log-probs) and how to load and train on it."""
    splits = manifest.split_entries
    export = manifest.export_shape
    shape = EXPORTS.get(export)
    tokenizer = manifest.tokenizer or Tokenizer()
    ref = ref_context(manifest.reflogps, features)
    load_id = hub.repo_id if hub else (name or "<this folder>")
    rev_arg = f', revision="{hub.revision}"' if hub and hub.revision and hub.revision != "main" else ""
    return {
        "title": hub.repo_id.split("/")[-1] if hub else (name or "Preference dataset built with prefkit"),
        "intro": (shape or EXPORTS[DEFAULT_EXPORT]).card_intro,
        "total": sum(c.kept or 0 for c in splits.values()),
        "split_counts": ", ".join(f"{n} {c.kept or 0:,}" for n, c in splits.items()),
        "source_names": ", ".join(f"`{s.id}`" for s in manifest.source_entries) or "local data",
        "has_ref": ref is not None,
        "ref": ref,
        "load_id": load_id,
        "rev_arg": rev_arg,
        "first_split": next((n for n, c in splits.items() if (c.kept or 0) > 0), "train"),
        "trl_shape": shape is not None and shape.trl_shape,
        "train": _train_context(export, load_id, splits),
        "text": tokenizer.output_format == "text",
        "template": tokenizer.chat_template,
        "columns": _columns(features, manifest.options.get("margin_col")),
        "manifest_ref": (
            f'hf_hub_download("{load_id}", "prefkit.json", repo_type="dataset"{rev_arg})'
            if hub
            else f'"{load_id}/prefkit.json"'
        ),
    }


def _provenance_context(manifest: Manifest, hub: HubCard | None) -> dict:
    """Where the set came from: the command, version and date, parameters, tokenizer, pairing, sources."""
    return {
        "command": redact(manifest.command),
        "version": manifest.get("prefkit_version", "?"),
        "created": manifest.get("created", "?"),
        "parameters": ", ".join(f"`{k}={v}`" for k, v in manifest.options.items() if v not in (None, False)),
        "tokenizer": _tokenizer_context(manifest.tokenizer),
        "pairing": pairing_sentence(manifest.options),
        "generated": _generated(manifest),
        "sources": _sources(manifest, hub),
    }


def _stats_context(manifest: Manifest) -> dict:
    """The statistics tables: per split lengths and margins, token lengths, the quality pass, the reward-model
    audit, KTO labels, reference margins."""
    stats = manifest.split_stats()
    return {
        "stats": [_stats_row(n, s) for n, s in stats.items() if "chars" in s or s.get("margin")],
        "token_stats": _token_rows(manifest.stats.to_dict() if manifest.stats else {}),
        "quality": {
            k: section.to_dict()
            for k, section in (
                ("decontamination", manifest.decontamination),
                ("near_dedup", manifest.near_dedup),
                ("length_balance", manifest.length_balance),
            )
            if section is not None and section.to_dict()
        },
        "rm_stats": [_rm_row(n, s["rm_audit"]) for n, s in stats.items() if s.get("rm_audit")],
        "label_stats": [_label_row(n, s["labels"]) for n, s in stats.items() if s.get("labels")],
        "ref_stats": [
            {"name": n, "median": s["ref_margin"]["p50"], "prefers": _pct(s.get("ref_prefers_chosen"))}
            for n, s in stats.items()
            if s.get("ref_margin")
        ],
    }


def _rm_row(name: str, audit: dict) -> dict:
    """One split's reward-model audit row."""
    return {
        "name": name,
        "agree": _pct(audit["agree_fraction"]),
        "disagree": audit["disagree"],
        "scored": audit["scored"],
        "spearman": "-" if audit["spearman"] is None else f"{audit['spearman']:+.2f}",
    }


def _train_context(export: str, load_id: str, splits: dict[str, SplitEntry]) -> dict | None:
    """The consumer's config snippet of a non-TRL export (:mod:`prefkit.output.recipes`), or None."""

    shape = EXPORTS.get(export)
    if shape is None or shape.train is None:
        return None
    files = {name: list(c.files or []) for name, c in splits.items() if c.kept}

    language, text = shape.train(load_id, files)
    lacks = ", ".join(f"`{n}`" if "_" in n else n for n in UNSUPPORTED.get(export, ()))
    return {"consumer": shape.consumer, "language": language, "text": text, "lacks": lacks}


def _columns(features: dict, margin_col: str | None = None) -> list[dict]:
    """Each column's name, kind and meaning; ``margin_col``: the source column `build --margin-col` read the
    margin from (then ``margin`` is that column, not the source's own margin)."""

    fields = PreferenceRecord.model_fields
    out = []
    for name, feat in features.items():
        kind = "messages" if feat.get("_type") == "List" else feat.get("dtype", "struct")
        described = fields[name].description if name in fields else None
        if kind == "string" and name in TEXT_COLUMN_MEANINGS:
            described = TEXT_COLUMN_MEANINGS[name]
        if name == "margin" and margin_col:
            described = f"the source's `{margin_col}` column (`--margin-col {margin_col}`)"
        meaning = REF_COLUMN_MEANINGS.get(name) or EXPORT_COLUMN_MEANINGS.get(name) or described or ""
        out.append({"name": name, "kind": kind, "meaning": meaning})
    return out


def _tokenizer_context(entry: Tokenizer | None) -> dict | None:
    if entry is None or not entry.to_dict():
        return None
    return {
        "name": entry.name_or_path or "(none: a built-in template's tokens)",
        "template": entry.chat_template,
        "rule": entry.rule,
    }


def _generated(manifest: Manifest) -> dict | None:
    """What the card says of a `prefkit generate` set (its ``prompts`` and ``generate`` sections), else None."""
    if not manifest.has("prompts"):
        return None
    gen = manifest.generate or Generate()
    models = ", ".join(f"`{m.get('model')}`" for m in gen.models or [])
    return {"models": models, "n": gen.n, "engine": gen.engine}


def pairing_sentence(parameters: dict) -> str | None:
    """How pairs were made from rated completions (UltraFeedback raw, Nectar, a `prefkit generate` set), in
    words, from the build's parameters; None when no binarisation option was set."""
    chosen, rejected = parameters.get("chosen_from"), parameters.get("rejected_from")
    strategy = parameters.get("pairs")
    if chosen and rejected:
        return (
            f"Delta pairs: every chosen answer is a completion of `{chosen}`, every rejected one a completion of "
            f"`{rejected}` (`{strategy or 'best-vs-worst'}`), whatever their scores."
        )
    if not strategy:
        return None
    by = parameters.get("rating")
    rated = f" rated by `{by}`" if by else ""
    return f"Pairs made from several answers per prompt{rated} with `--pairs {strategy}` (equal scores never pair)."


def _sources(manifest: Manifest, hub: HubCard | None) -> list[dict]:
    out = []
    for src in manifest.source_entries:
        licence = (hub.source_licenses.get(str(src.id)) if hub else None) or src.license
        weight = src.weight
        split_text = ", ".join(
            f"{s} ({num(c.read)} / {num(c.kept)})" if isinstance(c, SourceSplit) else f"{s} ({num(c)})"
            for s, c in (src.splits or {}).items()
        )
        out.append(
            {
                "id": src.id,
                "revision": src.sha or src.revision or "-",
                "license": licence or "unknown",
                "weight": weight.get("text", "-") if isinstance(weight, dict) else "-",
                "splits": split_text,
            }
        )
    return out


def _counts_context(manifest: Manifest) -> dict:
    splits = manifest.split_entries
    counts: list[dict[str, Any]] = [
        {
            "name": n,
            "read": c.read,
            "kept": c.kept,
            "dropped": sum((c.dropped or {}).values()),
            "invalid": sum((c.invalid or {}).values()),
            "added": sum((c.added or {}).values()),
        }
        for n, c in splits.items()
    ]
    reasons: dict[tuple[str, str], int] = {}
    for c in splits.values():
        for stage, by_reason in (
            ("dropped", c.dropped),
            ("invalid", c.invalid),
            ("added", c.added),
            ("flags", c.flags),
        ):
            for r, n in (by_reason or {}).items():
                reasons[(stage, r)] = reasons.get((stage, r), 0) + n
    rows = [
        {"stage": stage, "name": r, "rows": n, "meaning": meaning(stage, r)}
        for (stage, r), n in sorted(reasons.items(), key=lambda kv: -kv[1])
    ]
    export = manifest.export.to_dict() if manifest.export else {}
    export_rows = ""
    if export:
        written = sum(s.get("rows", 0) for s in (export.get("splits") or {}).values())
        export_rows = f"{written:,} rows from {sum(c['kept'] for c in counts):,} kept pairs"
    return {
        "counts": counts,
        "any_added": any(c["added"] for c in counts),
        "reasons": rows,
        "export_name": export.get("shape"),
        "export_rows": export_rows,
    }


def _rejects_note(hub: HubCard | None) -> str:
    if hub is None or hub.include_rejects:
        return "Every row not kept is in `rejects/<split>.parquet` with its stage and reason."
    return "Rows not kept are not in this repo (`prefkit push --include-rejects` adds them)."


def _label_row(name: str, labels: dict) -> dict:
    """A KTO split's label counts and TRL's recommended weight ranges (either one, the other left at 1)."""
    ranges = labels.get("recommended_weights")

    def span(key: str) -> str:
        return f"[{ranges[key][0]}, {ranges[key][1]}]" if ranges else "1 (balanced)"

    return {
        "name": name,
        "desirable": labels.get("desirable"),
        "undesirable": labels.get("undesirable"),
        "desirable_weight": span("desirable_weight"),
        "undesirable_weight": span("undesirable_weight"),
    }


def _stats_row(name: str, s: dict) -> dict:
    m = s.get("margin")
    chars = s.get("chars") or {}
    bias = s.get("length_bias") or {}
    return {
        "name": name,
        "rows": s.get("rows"),
        "margin": f"{num(m['p50'])} [{num(m['p10'])}, {num(m['p90'])}]" if m else "-",
        "chosen": (chars.get("chosen") or {}).get("p50"),
        "rejected": (chars.get("rejected") or {}).get("p50"),
        "longer": _pct(bias.get("chosen_longer_chars")),
        "ratio": "-" if bias.get("median_ratio_chars") is None else f"{bias['median_ratio_chars']:.2f}",
        "spearman": "-"
        if bias.get("margin_length_spearman_chars") is None
        else f"{bias['margin_length_spearman_chars']:+.2f}",
    }


def _token_rows(stats: dict) -> dict | None:
    """The token lengths `prefkit stats --tokenizer` recorded: the tokenizer, the measured columns and each split's
    medians; None when none were recorded."""

    rows = [(n, s["tokens"]) for n, s in (stats.get("splits") or {}).items() if s.get("tokens")]
    if not rows:
        return None
    columns = list(dict.fromkeys(k for _, tokens in rows for k in tokens))
    return {
        "tokenizer": public_path(str(name))
        if (name := (stats.get("tokenizer") or {}).get("name_or_path"))
        else "?",
        "columns": columns,
        "rows": [
            {"name": n, "values": [num((t.get(c) or {}).get("p50")) if t.get(c) else "-" for c in columns]}
            for n, t in rows
        ],
    }
