"""The manifest (``OUT/prefkit.json``): where the set came from, what was done to it, and how many rows ended
where. Written by `build`, extended by `reflogps` (``reflogps``) and `stats` (``stats``), read by everything."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from prefkit.accounting import total
from prefkit.chat.tokenize import TRL_TOKENIZATION_RULE
from prefkit.output.exports import DEFAULT_EXPORT, check_export
from prefkit.version import __version__


def manifest_base(command: str | None) -> dict[str, Any]:
    """The fields every manifest starts with: prefkit version, creation time (UTC), the command (redacted)."""
    return {
        "prefkit_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }


def source_entry(
    src: Any, spec: Any, preset: Any, described: list[dict], scale: dict | None
) -> dict[str, Any]:
    """One ``sources`` entry: the source's identity and resolved revision, and per split its format and counts;
    its weight, preset, licence, and the margin scale when several sources were mixed."""
    entry = {k: v for k, v in src.describe().items() if v is not None}
    entry["splits"] = {
        d["split"]: {
            "format": d["format"],
            **d["counts"],
            **({"unused_columns": d["unused_columns"]} if d.get("unused_columns") else {}),
        }
        for d in described
        if d["source"] == src.label
    }
    if spec.weight is not None:
        entry["weight"] = spec.weight.to_dict()
    if preset is not None:
        entry["preset"] = preset.id
        entry["license"] = preset.license
        if preset.gated:
            entry["gated"] = True
    if scale is not None:
        entry["margin_scale"] = scale
    return entry


def make_manifest(
    loaded: list[Any],
    specs: list[Any],
    presets: list,
    described: list[dict],
    counts: dict,
    options: Any,
    command: str | None,
    scales: dict[int, dict],
) -> dict:
    """``prefkit.json``: version, command, sources (revisions, formats, counts), options, recipe, counts."""
    sources = [
        source_entry(src, spec, pre, described, scales[i] if len(specs) > 1 else None)
        for i, (src, spec, pre) in enumerate(zip(loaded, specs, presets, strict=True))
    ]
    pinned = [_pinned(src, spec) for src, spec in zip(loaded, specs, strict=True)]
    return {
        **manifest_base(command),
        "sources": sources,
        "parameters": options.flat(),
        "recipe": options.recipe(pinned),
        "splits": counts,
        "totals": total(counts).to_dict(),
    }


def _pinned(src: Any, spec: Any) -> dict | str:
    """The recipe entry of a source as read: a Hub source pinned to the commit it resolved to."""

    if src.kind == "hub" and src.sha:
        spec = replace(spec, revision=src.sha, config=src.config, data_dir=src.data_dir)
    return spec.to_recipe()


def describe_target(manifest: dict, target: Any, options: Any, filtered: bool) -> None:
    """The manifest's ``tokenizer`` entry: what decided token lengths and text rendering."""
    if target is None:
        return

    f = options.filters
    manifest["tokenizer"] = target.manifest_entry(
        max_length=f.max_length,
        max_prompt_length=f.max_prompt_length,
        min_answer_tokens=f.min_answer_tokens,
        output_format="messages" if options.chat.output_format == "auto" else options.chat.output_format,
        rule=TRL_TOKENIZATION_RULE if filtered else None,
    )


def finish_manifest(
    manifest: dict, written: dict[str, dict], files: dict[str, list[str]] | None, options: Any
) -> None:
    """The data files of each split (``files``: when an output folder is written), the export's figures and the
    statistics of what was written."""

    for name, paths in (files or {}).items():
        manifest["splits"][name]["files"] = paths
    export = check_export(options.output.export)
    if export.name != DEFAULT_EXPORT:
        manifest["export"] = {"shape": export.name, "splits": {n: w["export"] for n, w in written.items()}}
    manifest["stats"] = {
        "splits": {name: w["stats"] for name, w in written.items() if w["stats"] is not None}
    }


#: manifest sections that describe carried columns: (section, a column it describes)
CARRIED_SECTIONS = (("reflogps", "ref_chosen_logps"), ("rm_scores", "rm_margin"))


def carry_sections(parts: list[Any], manifest: dict) -> list[str]:
    """Copy the provenance of carried columns (a prefkit set's ``reflogps`` section …) into the manifest, when the
    columns come from one scoring run; say so when they do not."""
    warnings = []
    for section, column in CARRIED_SECTIONS:
        found = {
            id(p.src): p.src.manifest[section]
            for p in parts
            if column in (p.mapping.extra.get("carry") or ()) and p.src.manifest and section in p.src.manifest
        }
        distinct = {json.dumps(v, sort_keys=True, default=str) for v in found.values()}
        if len(distinct) == 1:
            manifest[section] = next(iter(found.values()))
        elif len(distinct) > 1:
            warnings.append(
                f"the sources' `{section}` columns come from different runs; their provenance is not recorded"
            )
    return warnings
