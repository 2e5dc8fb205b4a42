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


#: the card's first sentence per `build --export` shape (docs/formats.md, Export shapes)
EXPORT_INTROS = {
    "trl": "Pairs in TRL's conversational format (`prompt` messages, `chosen` / `rejected` = one assistant "
    "message), validated and filtered by [prefkit](https://github.com/prefkit/prefkit).",
    "openrlhf": "Pairs for OpenRLHF: `chosen` / `rejected` are whole conversations (prompt + answer) with a "
    "`margin`, validated and filtered by [prefkit](https://github.com/prefkit/prefkit).",
    "llamafactory": "Pairs in LLaMA-Factory's ShareGPT ranking shape (`conversations`, `system`, `chosen` / "
    "`rejected` = one `{from: gpt, value}`; `dataset_info.json` has the entries), validated and filtered by "
    "[prefkit](https://github.com/prefkit/prefkit).",
    "kto": "Unpaired rows for KTO (`prompt`, `completion`, `label`), made from pairs validated and filtered by "
    "[prefkit](https://github.com/prefkit/prefkit).",
}


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
        EXPORT_INTROS.get((manifest.get("export") or {}).get("shape", "trl"), EXPORT_INTROS["trl"]),
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
    lines += [
        "| source | revision | licence | weight | splits (read / kept) |",
        "|---|---|---|---|---|",
    ]
    for src in manifest.get("sources", []):
        read_kept = ", ".join(
            f"{name} ({c.get('read', '?')} / {c.get('kept', '?')})" if isinstance(c, dict) else name
            for name, c in src.get("splits", {}).items()
        )
        weight = (src.get("weight") or {}).get("text", "-")
        lines.append(
            f"| `{src.get('id')}` | `{src.get('sha') or src.get('revision') or '-'}` "
            f"| {src.get('license') or 'unknown'} | {weight} | {read_kept} |"
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
    # plots written by `prefkit stats OUT --plot OUT/plots` (paths relative to the folder)
    plots = (manifest.get("stats") or {}).get("plots") or []
    if plots:
        lines += ["## Statistics", "", *[f"![{p.rsplit('/', 1)[-1]}]({p})" for p in plots], ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ the Hub card (push)
#: licence families from least to most restrictive (Hub licence ids); an id not listed ranks as "other"
LICENSE_FAMILIES: list[tuple[str, str]] = [
    ("public domain", "cc0-1.0 pddl unlicense wtfpl"),
    (
        "permissive",
        "mit apache-2.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear isc zlib bsl-1.0 postgresql afl-3.0 "
        "ecl-2.0 ncsa ms-pl cc cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 odc-by cdla-permissive-1.0 "
        "cdla-permissive-2.0 etalab-2.0",
    ),
    (
        "share-alike",
        "cc-by-sa-3.0 cc-by-sa-4.0 odbl cdla-sharing-1.0 gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 lgpl-lr "
        "agpl-3.0 mpl-2.0 epl-1.0 epl-2.0 eupl-1.1 eupl-1.2 gfdl osl-3.0 ofl-1.1 artistic-2.0 lppl-1.3c",
    ),
    (
        "use restrictions",
        "openrail openrail++ bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 "
        "bigcode-openrail-m llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 gemma apple-ascl apple-amlr "
        "deepfloyd-if-license",
    ),
    (
        "non-commercial",
        "cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 "
        "fair-noncommercial-research-license intel-research h-research c-uda",
    ),
    ("no derivatives", "cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0"),
    ("other or unknown", "other unknown"),
]
_LICENSE_RANK = {lic: rank for rank, (_, ids) in enumerate(LICENSE_FAMILIES) for lic in ids.split()}


def license_rank(license: str | None) -> int:
    """How restrictive a Hub licence id is (higher = more); unknown ids and None rank highest."""
    return _LICENSE_RANK.get((license or "unknown").lower(), len(LICENSE_FAMILIES) - 1)


def license_family(license: str | None) -> str:
    return LICENSE_FAMILIES[license_rank(license)][0]


def most_restrictive(licenses: list[str | None]) -> str:
    """The most restrictive of several licence ids ("unknown" when any is unknown or there are none)."""
    known = [lic or "unknown" for lic in licenses] or ["unknown"]
    return max(known, key=license_rank)  # max keeps the first of equal rank


def size_category(n: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
    ):
        if n < limit:
            return label
    return "100M<n<1B"


def split_stats(table) -> dict:
    """Margin and length statistics of one split (an Arrow table of canonical records)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def content_chars(column: str):
        values = table[column]
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):  # --output-format text
            return pc.utf8_length(values)
        flat = pc.list_element(values, 0)
        return pc.utf8_length(pc.struct_field(flat, "content"))

    def summary(values) -> dict | None:
        values = values.drop_null() if hasattr(values, "drop_null") else values
        if len(values) == 0:
            return None
        q = pc.quantile(values, q=[0.1, 0.5, 0.9]).to_pylist()
        return {
            "min": pc.min(values).as_py(),
            "p10": q[0],
            "median": q[1],
            "p90": q[2],
            "mean": pc.mean(values).as_py(),
            "max": pc.max(values).as_py(),
        }

    out: dict = {"rows": table.num_rows}
    if table.num_rows == 0:
        return out
    if "margin" in table.column_names:
        out["margin"] = summary(table["margin"])
    answer = (pa.types.is_string, pa.types.is_large_string, pa.types.is_list)
    if not all(
        c in table.column_names and any(t(table[c].type) for t in answer) for c in ("chosen", "rejected")
    ):
        return out  # other export shapes (kto, llamafactory): row counts and margins only
    chosen, rejected = content_chars("chosen"), content_chars("rejected")
    out["chosen_chars"], out["rejected_chars"] = summary(chosen), summary(rejected)
    out["chosen_longer"] = pc.mean(pc.cast(pc.greater(chosen, rejected), "float64")).as_py()
    if {"ref_chosen_logps", "ref_rejected_logps"} <= set(table.column_names):
        diff = pc.subtract(
            pc.cast(table["ref_chosen_logps"], "float64"), pc.cast(table["ref_rejected_logps"], "float64")
        )
        out["ref_margin"] = summary(diff)
        valid = diff.drop_null()
        out["ref_prefers_chosen"] = (
            pc.mean(pc.cast(pc.greater(valid, 0), "float64")).as_py() if len(valid) else None
        )
    return out


MANIFEST_FILE = "prefkit.json"
REF_COLUMN_MEANINGS = {
    "ref_chosen_logps": "reference model's summed log-prob of the chosen completion tokens (TRL-exact)",
    "ref_rejected_logps": "reference model's summed log-prob of the rejected completion tokens (TRL-exact)",
    "chosen_tokens": "completion tokens scored for chosen (after TRL's max_length truncation)",
    "rejected_tokens": "completion tokens scored for rejected (after TRL's max_length truncation)",
}


def _num(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{x:,}"


def render_hub_card(
    manifest: dict,
    features: dict,
    *,
    repo_id: str,
    license: str,
    source_licenses: dict[str, str | None] | None = None,
    stats: dict[str, dict] | None = None,
    split_files: dict[str, dict] | None = None,
    plots: list[str] | None = None,
    include_rejects: bool = False,
    revision: str | None = None,
    extra_metadata: dict | None = None,
) -> str:
    """The README.md `prefkit push` commits: Hub metadata plus the whole story of the set.

    ``split_files`` maps split -> {"num_examples", "num_bytes", "download_size"} for ``dataset_info``;
    ``stats`` maps split -> :func:`split_stats`; ``plots`` are repo paths of images to embed;
    ``extra_metadata`` is metadata of the card already on the Hub: keys prefkit does not write are kept,
    tags and task categories are merged.
    """
    from prefkit.records import PreferenceRecord

    splits = manifest.get("splits", {})
    meta = card_metadata(manifest, features)
    total = sum(c.get("kept", 0) for c in splits.values())
    head: dict = {"license": license}
    if extra_metadata and extra_metadata.get("pretty_name"):
        head["pretty_name"] = extra_metadata["pretty_name"]
    head["task_categories"] = meta.pop("task_categories")
    head["tags"] = meta.pop("tags")
    head["size_categories"] = [size_category(total)]
    if "source_datasets" in meta:
        head["source_datasets"] = meta.pop("source_datasets")
    for key, value in (extra_metadata or {}).items():
        if key in ("tags", "task_categories") and isinstance(value, list):
            head[key] += [v for v in value if v not in head[key]]
        elif (
            key not in head
            and key not in meta
            and key not in ("license", "size_categories", "source_datasets", "license_name", "license_link")
        ):
            head[key] = value
    if split_files and "dataset_info" in meta:
        info = meta["dataset_info"]
        info["splits"] = [
            {"name": s, "num_bytes": f["num_bytes"], "num_examples": f["num_examples"]}
            for s, f in split_files.items()
        ]
        info["download_size"] = sum(f["download_size"] for f in split_files.values())
        info["dataset_size"] = sum(f["num_bytes"] for f in split_files.values())
    front = yaml.safe_dump({**head, **meta}, sort_keys=False, allow_unicode=True)

    reflogps = manifest.get("reflogps") or {}
    has_ref = {"ref_chosen_logps", "ref_rejected_logps"} <= set(features)
    sources = manifest.get("sources", [])
    rev_arg = f', revision="{revision}"' if revision and revision != "main" else ""
    first_split = next(iter(splits), "train")
    counts = ", ".join(f"{name} {c.get('kept', 0):,}" for name, c in splits.items())
    names = ", ".join(f"`{s.get('id')}`" for s in sources) or "local data"
    L = [
        "---",
        front.rstrip(),
        "---",
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
        f"{total:,} preference pairs ({counts}) built from {names} with "
        "[prefkit](https://github.com/prefkit/prefkit): normalised to TRL's conversational format, validated, "
        "and filtered, with every dropped row counted by reason"
        + (
            ", then scored with a frozen reference model so DPO training needs no second model copy."
            if has_ref
            else "."
        ),
        "",
        "## Load it",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("{repo_id}"{rev_arg})',
        f'print(ds["{first_split}"][0]["chosen"])  # [{{"role": "assistant", "content": ...}}]',
        "```",
        "",
        "## Columns",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
    ]
    fields = PreferenceRecord.model_fields
    for name, feat in features.items():
        kind = "messages" if feat.get("_type") == "List" else feat.get("dtype", "")
        meaning = REF_COLUMN_MEANINGS.get(name) or (fields[name].description if name in fields else "") or ""
        L.append(f"| `{name}` | {kind} | {meaning} |")
    L += ["", "## Train with TRL", ""]
    if has_ref:
        model = reflogps.get("model") or "<the reference model>"
        max_length = reflogps.get("max_length")
        L += [
            "The `ref_chosen_logps` / `ref_rejected_logps` columns are what TRL's `DPOTrainer` would compute with "
            f"the reference model `{model}`"
            + (f" at `max_length={max_length}`" if max_length else "")
            + ". `prefkit.trl.PrecomputedRefDPOTrainer` makes TRL use them instead of recomputing them, so "
            "training keeps no reference copy in memory. Train from the same model, with the same `max_length`, "
            "or the values do not apply.",
            "",
            "```python",
            "from datasets import load_dataset",
            "from huggingface_hub import hf_hub_download",
            "from trl import DPOConfig",
            "from prefkit.trl import PrecomputedRefDPOTrainer",
            "",
            f'train = load_dataset("{repo_id}", split="{first_split}"{rev_arg})',
            "trainer = PrecomputedRefDPOTrainer(",
            f'    model="{model}",',
            '    args=DPOConfig(output_dir="dpo", precompute_ref_log_probs=True'
            + (f", max_length={max_length}" if max_length else "")
            + "),",
            "    train_dataset=train,",
            "    # warns if the model, tokenizer or max_length differ from the scoring run",
            f'    prefkit_manifest=hf_hub_download("{repo_id}", "{MANIFEST_FILE}", repo_type="dataset"'
            + rev_arg
            + "),",
            ")",
            "trainer.train()",
            "```",
        ]
    else:
        L += [
            "```python",
            "from datasets import load_dataset",
            "from trl import DPOConfig, DPOTrainer",
            "",
            f'train = load_dataset("{repo_id}", split="{first_split}"{rev_arg})',
            'trainer = DPOTrainer(model="<your SFT model>", args=DPOConfig(output_dir="dpo"), train_dataset=train)',
            "trainer.train()",
            "```",
            "",
            "Precompute the reference log-probs once with `prefkit reflogps` to train without a reference model "
            "copy (`prefkit.trl.PrecomputedRefDPOTrainer`).",
        ]
    L += ["", "## How it was made", ""]
    if manifest.get("command"):
        L += ["```bash", manifest["command"], "```", ""]
    if reflogps.get("command"):
        L += ["```bash", reflogps["command"], "```", ""]
    L.append(f"prefkit {manifest.get('prefkit_version', '?')}, built {manifest.get('created', '?')}.")
    params = {k: v for k, v in (manifest.get("parameters") or {}).items() if v not in (None, False)}
    if params:
        L += ["Parameters: " + ", ".join(f"`{k}={v}`" for k, v in params.items()) + "."]
    L += [
        "",
        "### Sources",
        "",
        "| source | revision | licence | weight | splits (read / kept) |",
        "|---|---|---|---|---|",
    ]
    for src in sources:
        lic = (source_licenses or {}).get(src.get("id")) or src.get("license")
        read_kept = ", ".join(
            f"{s} ({_num(c.get('read'))} / {_num(c.get('kept'))})"
            if isinstance(c, dict)
            else f"{s} ({_num(c)})"
            for s, c in (src.get("splits") or {}).items()
        )
        weight = (src.get("weight") or {}).get("text", "-") if isinstance(src.get("weight"), dict) else "-"
        L.append(
            f"| `{src.get('id')}` | `{src.get('sha') or src.get('revision') or '-'}` | {lic or 'unknown'} "
            f"| {weight} | {read_kept} |"
        )
    L += [
        "",
        f"This set is published under `{license}` ({license_family(license)}): the most restrictive "
        "licence among its sources. Check each source's terms before use.",
        "",
    ]
    L += [
        "### Counts",
        "",
        "Every row read is kept, dropped by a filter, or invalid; the numbers add up.",
        "",
        "| split | read | kept | dropped | invalid |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, c in splits.items():
        L.append(
            f"| {name} | {_num(c['read'])} | {_num(c['kept'])} | {_num(sum(c['dropped'].values()))} "
            f"| {_num(sum(c['invalid'].values()))} |"
        )
    reasons: dict[tuple[str, str], int] = {}
    for c in splits.values():
        for stage in ("dropped", "invalid"):
            for r, n in c.get(stage, {}).items():
                reasons[(stage, r)] = reasons.get((stage, r), 0) + n
    if reasons:
        L += ["", "| stage | reason | rows | meaning |", "|---|---|---:|---|"]
        for (stage, r), n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            meaning = (DROP_REASONS if stage == "dropped" else INVALID_REASONS).get(r, "")
            L.append(f"| {stage} | `{r}` | {_num(n)} | {meaning} |")
    if include_rejects:
        L += ["", "Every row not kept is in `rejects/<split>.parquet` with its stage and reason."]
    else:
        L += ["", "Rows not kept are not in this repo (`prefkit push --include-rejects` adds them)."]
    if stats:
        L += [
            "",
            "## Statistics",
            "",
            "| split | rows | margin median [p10, p90] | chosen chars median | rejected chars median "
            "| chosen longer |",
            "|---|---:|---|---:|---:|---:|",
        ]
        for name, s in stats.items():
            m = s.get("margin")
            margin = f"{_num(m['median'])} [{_num(m['p10'])}, {_num(m['p90'])}]" if m else "-"
            cc, rc = s.get("chosen_chars") or {}, s.get("rejected_chars") or {}
            longer = s.get("chosen_longer")
            L.append(
                f"| {name} | {_num(s['rows'])} | {margin} | {_num(cc.get('median'))} "
                f"| {_num(rc.get('median'))} | {'-' if longer is None else f'{longer:.0%}'} |"
            )
        L += [
            "",
            '"chosen longer" is the share of pairs whose chosen answer is longer than the rejected one '
            "(a length bias DPO can learn).",
        ]
        ref = {n: s for n, s in stats.items() if s.get("ref_margin")}
        if ref:
            L += [
                "",
                "| split | reference margin median (chosen - rejected log-prob) | reference prefers chosen |",
                "|---|---:|---:|",
            ]
            L += [
                f"| {n} | {_num(s['ref_margin']['median'])} | {s['ref_prefers_chosen']:.0%} |"
                for n, s in ref.items()
            ]
    for plot in plots or []:
        L += ["", f"![{plot.rsplit('/', 1)[-1]}]({plot})"]
    if reflogps:
        L += [
            "",
            "## Reference model",
            "",
            "The reference log-probs were computed once, ahead of training, by `prefkit reflogps`:",
            "",
            "| | |",
            "|---|---|",
        ]
        rows = [
            ("model", reflogps.get("model")),
            ("revision", reflogps.get("revision")),
            ("model class", reflogps.get("model_class")),
            ("weights sha256", reflogps.get("weights_sha256")),
            ("tokenizer sha256", reflogps.get("tokenizer_sha256")),
            ("chat template sha256", reflogps.get("chat_template_sha256")),
            ("dtype", reflogps.get("dtype")),
            ("attention", reflogps.get("attn_implementation")),
            ("max_length", reflogps.get("max_length")),
            ("truncation", reflogps.get("truncation_mode")),
            ("TRL rule", reflogps.get("trl_tokenization_rule")),
            ("TRL version", reflogps.get("trl_version")),
            ("prefkit version", reflogps.get("prefkit_version")),
            ("scored", (reflogps.get("totals") or {}).get("scored")),
            ("truncated", (reflogps.get("totals") or {}).get("truncated")),
        ]
        L += [f"| {k} | `{v}` |" for k, v in rows if v not in (None, "", {})]
    L += [
        "",
        "`prefkit.json` in this repo is the full manifest (sources, parameters, counts, provenance).",
        "",
    ]
    return "\n".join(L)
