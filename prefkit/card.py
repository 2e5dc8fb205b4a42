"""The dataset card (OUT/README.md): YAML front matter that `datasets` and the Hub read, and a body that tells
where every row came from."""

from __future__ import annotations

import yaml

from prefkit.filters import DROP_REASONS, INVALID_REASONS


def card_metadata(manifest: dict, features: dict) -> dict:
    """The YAML front matter: ``configs`` (so ``load_dataset(OUT)`` finds the data), ``dataset_info``, tags."""
    splits = manifest.get("splits", {})
    meta: dict = {
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": name, "path": f"data/{name}-*"} for name in splits],
            }
        ],
        "tags": ["dpo", "preference", "rlhf", "prefkit"],
        "task_categories": ["text-generation"],
    }
    hub_sources = [s["id"] for s in manifest.get("sources", []) if s.get("kind") == "hub"]
    if hub_sources:
        meta["source_datasets"] = hub_sources
    if features:
        meta["dataset_info"] = {"features": _features_list(features)}
    return meta


def _features_list(features: dict) -> list[dict]:
    """`datasets`' card form of features: a list of {name, dtype | list | struct}."""
    from prefkit.records import features_yaml

    return features_yaml(features)


def render_card(manifest: dict, features: dict) -> str:
    meta = card_metadata(manifest, features)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    splits = manifest.get("splits", {})
    lines = [
        "---",
        front.rstrip(),
        "---",
        "",
        "# Preference dataset built with prefkit",
        "",
        "Pairs in TRL's conversational format (`prompt` messages, `chosen` / `rejected` = one assistant message), "
        "validated and filtered by [prefkit](https://github.com/prefkit/prefkit).",
        "",
        "## Load it",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("<this folder or repo id>")',
        "```",
        "",
        "## How it was made",
        "",
    ]
    if manifest.get("command"):
        lines += ["```", manifest["command"], "```", ""]
    lines += ["| source | revision | splits |", "|---|---|---|"]
    for src in manifest.get("sources", []):
        lines.append(
            f"| `{src.get('id')}` | `{src.get('sha') or src.get('revision') or '-'}` | {', '.join(src.get('splits', {}))} |"
        )
    lines += ["", "## Counts", "", "| split | read | kept | dropped | invalid |", "|---|---:|---:|---:|---:|"]
    for name, c in splits.items():
        lines.append(
            f"| {name} | {c['read']} | {c['kept']} | {sum(c['dropped'].values())} | {sum(c['invalid'].values())} |"
        )
    reasons = {**{k: v for c in splits.values() for k, v in c["dropped"].items()}}
    invalid = {**{k: v for c in splits.values() for k, v in c["invalid"].items()}}
    if reasons or invalid:
        lines += ["", "| reason | stage | meaning |", "|---|---|---|"]
        lines += [f"| `{r}` | dropped | {DROP_REASONS.get(r, '')} |" for r in reasons]
        lines += [f"| `{r}` | invalid | {INVALID_REASONS.get(r, '')} |" for r in invalid]
    lines += [
        "",
        "Every row not kept is in `rejects/<split>.parquet` with its reason; `prefkit.json` is the full manifest.",
        "",
    ]
    return "\n".join(lines)
