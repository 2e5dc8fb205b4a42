"""The manifest (``OUT/prefkit.json``): where the set came from, what was done to it, and how many rows ended
where. Written by `build`, extended by `reflogps` (``reflogps``) and `stats` (``stats``), read by everything."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefkit import __version__


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
