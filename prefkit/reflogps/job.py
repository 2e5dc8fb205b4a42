"""`prefkit reflogps OUT --model M`: add TRL-exact reference log-probs to a built set, resumably.

The job, for each split of the output folder:

1. cuts the rows into shards of ``shard_rows`` pairs (shard ``g`` of the whole job goes to rank
   ``g % world_size`` under torchrun);
2. tokenizes each shard exactly like TRL (``prefkit.templates.tokenize_pairs``), scores it with the engine
   (``prefkit.reflogps.engine.score_pairs``) and writes the result atomically to
   ``OUT/.reflogps-work/<split>-<shard>.parquet``, stamped with the run's settings fingerprint;
3. when every shard is there, rank 0 merges: the data shards get ``ref_chosen_logps``, ``ref_rejected_logps``
   (float32), ``chosen_tokens``, ``rejected_tokens`` (int32), ``prefkit.json`` a ``reflogps`` section and
   README.md fresh ``dataset_info`` features. The new folder is staged next to OUT (unchanged files are
   hard-linked) and swapped in with a rename, so OUT is always either the old set or the new one; the
   work folder goes away with the old folder.

A killed run restarted with the same command skips the shards already in the work folder. Rows whose
prompt alone reaches ``max_length`` (TRL drops them) are counted in the manifest and get nulls.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from prefkit import __version__
from prefkit.errors import ModelError, OutputError
from prefkit.output import (
    CARD_NAME,
    DATA_DIR,
    MANIFEST_NAME,
    OutputFolder,
    read_output,
    refresh_card,
    require_trl_shape,
    staged_folder,
    write_manifest,
    write_parquet,
    write_text,
)
from prefkit.records import REFLOGPS_FIELDS

WORK_DIR = ".reflogps-work"
SETTINGS_NAME = "settings.json"
#: pairs per work shard: large enough for good length-sorted batches, small enough to lose little on a kill
DEFAULT_SHARD_ROWS = 2048
REF_COLUMNS = [name for name, _ in REFLOGPS_FIELDS]
ROW_COLUMNS = ("prompt", "chosen", "rejected", "tools", "chat_template_kwargs")
PART_META_KEY = b"prefkit_reflogps"


@dataclass(frozen=True)
class Shard:
    """Rows ``start:stop`` of one split; ``number`` is its position in the whole job (rank assignment)."""

    split: str
    index: int
    start: int
    stop: int
    number: int

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}.parquet"

    @property
    def rows(self) -> int:
        return self.stop - self.start


# --------------------------------------------------------------------------------------------------- planning


def plan_shards(folder: OutputFolder, shard_rows: int) -> list[Shard]:
    """Every split cut into shards of ``shard_rows`` rows, in manifest split order."""
    shards: list[Shard] = []
    for split in folder.splits:
        n = sum(pq.ParquetFile(p).metadata.num_rows for p in folder.shards[split])
        for index, start in enumerate(range(0, n, shard_rows)):
            shards.append(Shard(split, index, start, min(start + shard_rows, n), len(shards)))
    return shards


def data_fingerprint(folder: OutputFolder) -> str:
    """SHA-256 over the data files' names and bytes (a rebuilt set invalidates unfinished work)."""
    digest = hashlib.sha256()
    for split in folder.splits:
        for path in folder.shards[split]:
            digest.update(f"{path.name}\0".encode())
            with open(path, "rb") as fh:
                while chunk := fh.read(8 << 20):
                    digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def _has_ref_columns(folder: OutputFolder) -> bool:
    return any(
        name in pq.read_schema(path).names
        for paths in folder.shards.values()
        for path in paths
        for name in REF_COLUMNS
    )


# --------------------------------------------------------------------------------------------------- work folder


def _read_part_meta(path: Path) -> dict | None:
    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta[PART_META_KEY])
    except (OSError, KeyError, ValueError, pa.ArrowInvalid):
        return None


def finished_shards(work: Path, shards: list[Shard], fingerprint: str) -> set[str]:
    """Names of the shards whose part file exists with this run's fingerprint and the right row range."""
    done = set()
    for shard in shards:
        path = work / shard.name
        if path.is_file():
            meta = _read_part_meta(path)
            if (
                meta
                and meta.get("fingerprint") == fingerprint
                and (meta["start"], meta["stop"])
                == (
                    shard.start,
                    shard.stop,
                )
            ):
                done.add(shard.name)
    return done


def prepare_work(out: Path, settings: dict, fingerprint: str, *, resume: bool, overwrite: bool) -> Path:
    """Check OUT's state against this run and make the work folder ready (rank 0 only).

    * work folder from the same settings: kept (resume) unless ``resume=False``;
    * work folder from other settings: OutputError unless ``overwrite`` (then discarded);
    * no resumable work and OUT already has reference columns: OutputError unless ``overwrite``.
    """
    work = out / WORK_DIR
    earlier = None
    if work.is_dir():
        try:
            earlier = json.loads((work / SETTINGS_NAME).read_text())
        except (OSError, ValueError):
            earlier = {}
    resumable = earlier is not None and earlier.get("fingerprint") == fingerprint
    if earlier is not None and not resumable:
        if not overwrite:
            changed = sorted(
                k
                for k in set(settings) | set(earlier.get("settings", {}))
                if settings.get(k) != earlier.get("settings", {}).get(k)
            )
            raise OutputError(
                f"{out} has unfinished reference scoring from a run with other settings"
                + (f" (differs in: {', '.join(changed)})" if changed else ""),
                "rerun with the same options to resume it, or pass --overwrite to discard it and start over",
            )
        shutil.rmtree(work)
    elif resumable and not resume:
        shutil.rmtree(work)
        resumable = False
    if not resumable and _has_ref_columns(read_output(out)) and not overwrite:
        raise OutputError(
            f"{out} already has reference log-prob columns ({', '.join(REF_COLUMNS[:2])})",
            "pass --overwrite to recompute them (e.g. with another model)",
        )
    work.mkdir(exist_ok=True)
    if not resumable:
        write_text(
            work / SETTINGS_NAME,
            json.dumps({"fingerprint": fingerprint, "settings": settings}, indent=2, default=str) + "\n",
        )
    return work


def write_part(path: Path, values: dict[str, list], meta: dict) -> None:
    """One finished shard's columns, written atomically, with its metadata (fingerprint, range, counts)."""
    table = pa.table({name: pa.array(values[name], type=type_) for name, type_ in REFLOGPS_FIELDS})
    table = table.replace_schema_metadata({PART_META_KEY: json.dumps(meta).encode()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------- scoring


def _read_rows(folder: OutputFolder, split: str) -> pa.Table:
    names = pq.read_schema(folder.shards[split][0]).names
    return folder.read_split(split, columns=[c for c in ROW_COLUMNS if c in names])


def _is_conversational(schema: pa.Schema) -> bool:
    type_ = schema.field("chosen").type
    return pa.types.is_list(type_) or pa.types.is_large_list(type_)


def _check_ids(pairs: list, vocab: int, model_name: str) -> None:
    top = max(
        (max(ids) for p in pairs for ids in (p.prompt_ids, p.chosen_ids, p.rejected_ids) if ids), default=-1
    )
    if top >= vocab:
        raise ModelError(
            f"tokenizer/model mismatch for {model_name}: token id {top} is outside the model's vocabulary ({vocab})",
            "the tokenizer must be the model's own; check --model and --chat-template",
        )


def score_shard(
    loaded: Any,
    rows: list[dict],
    *,
    max_length: int,
    token_budget: int | None,
    prefix_sharing: bool,
    on_progress: Any = None,
) -> tuple[dict[str, list], dict]:
    """``on_progress(pairs, tokens)`` is called as batches finish (the engine's progress callback)."""
    """Tokenize (TRL-exact) and score one shard → (column values, counts)."""
    from prefkit.reflogps import engine
    from prefkit.templates import tokenize_pairs

    pairs = tokenize_pairs(rows, loaded.tokenizer, max_length)
    _check_ids(
        pairs, loaded.model.get_input_embeddings().num_embeddings, loaded.provenance.get("model", "the model")
    )
    chosen, rejected = engine.score_pairs(
        loaded.model, pairs, token_budget=token_budget, prefix_sharing=prefix_sharing, progress=on_progress
    )
    values: dict[str, list] = {name: [] for name in REF_COLUMNS}
    dropped: Counter = Counter()
    counts = {"rows": len(pairs), "scored": 0, "truncated": 0, "completion_tokens": 0, "tokens": 0}
    for pair, c, r in zip(pairs, chosen.tolist(), rejected.tolist(), strict=True):
        if pair.dropped:
            dropped[pair.dropped] += 1
            for name in REF_COLUMNS:
                values[name].append(None)
            continue
        nc, nr = len(pair.chosen_ids), len(pair.rejected_ids)
        values["ref_chosen_logps"].append(c)
        values["ref_rejected_logps"].append(r)
        values["chosen_tokens"].append(nc)
        values["rejected_tokens"].append(nr)
        counts["scored"] += 1
        counts["truncated"] += bool(getattr(pair, "truncated", False))
        counts["completion_tokens"] += nc + nr
        counts["tokens"] += 2 * len(pair.prompt_ids) + nc + nr
    counts["dropped"] = dict(dropped)
    return values, counts


# --------------------------------------------------------------------------------------------------- merging


def _link_tree(src: Path, dst: Path, skip: set[Path]) -> None:
    """Recreate ``src`` under ``dst`` with hard links (copies where linking fails), leaving out ``skip``."""
    for root, dirs, files in os.walk(src):
        root_path = Path(root)
        dirs[:] = [d for d in dirs if root_path / d not in skip]
        target = dst / root_path.relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            path = root_path / name
            if path in skip:
                continue
            try:
                os.link(path, target / name)
            except OSError:
                shutil.copy2(path, target / name)


def merge(out: Path, shards: list[Shard], reflogps_section: dict) -> dict:
    """Add the work folder's columns to OUT's data shards, update manifest and card; atomic swap."""
    folder = read_output(out)
    work = out / WORK_DIR
    by_split: dict[str, list[Shard]] = {}
    for shard in shards:
        by_split.setdefault(shard.split, []).append(shard)
    data_files = {p for paths in folder.shards.values() for p in paths}
    skip = {work, out / MANIFEST_NAME, out / CARD_NAME, *data_files}
    manifest = dict(folder.manifest)
    manifest["reflogps"] = reflogps_section
    schemas: dict[str, pa.Schema] = {}
    mode = out.stat().st_mode & 0o7777
    with staged_folder(out, overwrite=True) as stage:
        os.chmod(stage, mode)  # the staging folder is created 0700; keep OUT's permissions
        _link_tree(out, stage, skip)
        for split in folder.splits:
            parts = [pq.read_table(work / s.name) for s in by_split.get(split, [])]
            if parts:
                columns = pa.concat_tables(parts).replace_schema_metadata(None)
            else:  # an empty split (every row dropped at build time) has no shards
                columns = pa.schema(REFLOGPS_FIELDS).empty_table()
            offset = 0
            for path in folder.shards[split]:
                table = pq.read_table(path)
                table = table.drop_columns([c for c in REF_COLUMNS if c in table.column_names])
                piece = columns.slice(offset, table.num_rows)
                for name in REF_COLUMNS:
                    table = table.append_column(name, piece.column(name))
                offset += table.num_rows
                write_parquet(table, stage / DATA_DIR / path.name)
                schemas[split] = table.schema
            if offset != columns.num_rows:
                raise OutputError(
                    f"split {split!r} changed while it was being scored ({offset} rows, {columns.num_rows} scored)",
                    "rerun with --overwrite",
                )
        write_manifest(stage, manifest)
        refresh_card(stage, manifest, {split: schemas[split] for split in folder.splits})
    return manifest


# --------------------------------------------------------------------------------------------------- the job


def check_build_tokenizer(built: dict, prov: dict, model: str) -> None:
    """Refuse to score a set that `build --tokenizer` filtered or rendered for another tokenizer or template."""
    pairs = (
        ("hash", "tokenizer_sha256", "tokenizer"),
        ("chat_template_hash", "chat_template_sha256", "chat template"),
    )
    for built_key, prov_key, what in pairs:
        if built.get(built_key) and prov.get(prov_key) and built[built_key] != prov[prov_key]:
            raise ModelError(
                f"the set was built for another {what} ({built.get('name_or_path') or 'unknown'}) than {model}'s",
                "score with the model whose tokenizer built the set, rebuild with --tokenizer MODEL, "
                "or pass --allow-mismatch to score anyway",
            )


def reflogps(
    out_dir: str | Path,
    model: str,
    *,
    revision: str | None = None,
    dtype: str | None = "auto",
    device: str | None = "auto",
    attn_implementation: str | None = "sdpa",
    max_length: int = 1024,
    token_budget: int | None = None,
    prefix_sharing: bool = True,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    resume: bool = True,
    overwrite: bool = False,
    chat_template: str | None = None,
    trust_remote_code: bool = False,
    allow_mismatch: bool = False,
    progress: bool = False,
    command: str | None = None,
) -> dict:
    """Score every pair of the set in ``out_dir`` with the reference ``model`` and add the columns.

    Returns a summary dict (counts per split, rows TRL would drop, tokens, throughput, resumed shards).
    Under ``torchrun`` every rank calls this; each scores its shards and rank 0 merges.

    >>> reflogps("hermes2k", "./my-sft-model", max_length=2048)  # doctest: +SKIP
    {'output': 'hermes2k', 'pairs': 2000, 'scored': 1996, 'dropped': {'prompt_too_long': 4}, ...}
    """
    from prefkit.models import load_model, require_chat_template, resolve_device
    from prefkit.reflogps.distributed import init_distributed
    from prefkit.templates import TRL_TOKENIZATION_RULE

    if max_length < 1:
        raise OutputError(f"--max-length must be positive, got {max_length}", "TRL's default is 1024")
    if shard_rows < 1:
        raise OutputError(f"--shard-rows must be positive, got {shard_rows}", "the default is 2048")
    out = Path(out_dir)
    start_time = time.perf_counter()
    folder = read_output(out)  # fail fast, before loading a model
    require_trl_shape(folder, "reflogps")
    if not folder.splits:
        raise OutputError(
            f"{out} has no splits to score", "build it first with `prefkit build SOURCE -o OUT`"
        )
    if not overwrite and not (out / WORK_DIR).is_dir() and _has_ref_columns(folder):
        raise OutputError(
            f"{out} already has reference log-prob columns ({', '.join(REF_COLUMNS[:2])})",
            "pass --overwrite to recompute them (e.g. with another model)",
        )

    dev = resolve_device(device)  # under torchrun, auto/cuda → cuda:LOCAL_RANK
    ctx = init_distributed(dev)
    try:
        loaded = load_model(
            model,
            revision=revision,
            dtype=dtype,
            device=str(dev),
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
            chat_template=chat_template,
            hash_weights=ctx.is_main,
        )
        schemas = [pq.read_schema(folder.shards[split][0]) for split in folder.splits]
        if any(_is_conversational(schema) for schema in schemas):
            require_chat_template(loaded.tokenizer, model)
        from prefkit.reflogps import engine

        # what decides the values (the automatic token budget follows free memory, so it is left out)
        fingerprint_engine = engine.engine_settings(token_budget=token_budget, prefix_sharing=prefix_sharing)
        engine_settings = engine.engine_settings(
            loaded.model, token_budget=token_budget, prefix_sharing=prefix_sharing
        )
        engine_settings.pop("device", None)
        engine_settings["self_test_max_abs_diff"] = engine.self_test(loaded.model)
        prov = loaded.provenance
        if not allow_mismatch:
            check_build_tokenizer(folder.manifest.get("tokenizer") or {}, prov, model)

        def settings_and_fingerprint() -> tuple[dict, str]:
            settings = {
                "model": prov["model"],
                "model_source": prov["source"],
                "revision": prov["revision"],
                "weights_sha256": prov["weights_sha256"],
                "tokenizer_sha256": prov["tokenizer_sha256"],
                "chat_template_sha256": prov["chat_template_sha256"],
                "dtype": prov["dtype"],
                "device_type": dev.type,
                "attn_implementation": prov["attn_implementation"],
                "max_length": max_length,
                "trl_tokenization_rule": TRL_TOKENIZATION_RULE,
                "engine": fingerprint_engine,
                "shard_rows": shard_rows,
                "data_sha256": data_fingerprint(folder),
            }
            return settings, _fingerprint(settings)

        settings, fingerprint = ctx.on_main(settings_and_fingerprint)
        shards = plan_shards(folder, shard_rows)

        def prepare() -> list[str]:
            work = prepare_work(out, settings, fingerprint, resume=resume, overwrite=overwrite)
            return sorted(finished_shards(work, shards, fingerprint))

        already = set(ctx.on_main(prepare))
        work = out / WORK_DIR
        mine = [s for s in shards if s.number % ctx.world_size == ctx.rank and s.name not in already]
        tables = {split: _read_rows(folder, split) for split in dict.fromkeys(s.split for s in mine)}

        scoring_started = time.perf_counter()
        error: BaseException | None = None
        try:
            _score_shards(
                loaded,
                tables,
                mine,
                work,
                fingerprint,
                ctx,
                max_length,
                token_budget,
                prefix_sharing,
                progress,
            )
        except BaseException as err:  # re-raised on every rank by check_all
            error = err
        ctx.check_all(error)
        scoring_seconds = time.perf_counter() - scoring_started

        def finish() -> dict:
            missing = [s.name for s in shards if s.name not in finished_shards(work, shards, fingerprint)]
            if missing:
                raise OutputError(
                    f"{len(missing)} shard(s) were not scored: {', '.join(missing[:5])}",
                    "rerun the same command to finish them",
                )
            counts = _collect_counts(work, shards)
            fresh = _collect_counts(work, [s for s in shards if s.name not in already])["totals"]
            seconds = time.perf_counter() - start_time
            section = {
                "prefkit_version": __version__,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": command,
                "columns": REF_COLUMNS,
                "model": prov["model"],
                "model_source": prov["source"],
                "model_path": prov["path"],
                "revision": prov["revision"],
                "model_class": prov["model_class"],
                "weights_sha256": prov["weights_sha256"],
                "weight_files": prov["weight_files"],
                "tokenizer_sha256": prov["tokenizer_sha256"],
                "chat_template": prov["chat_template"],
                "chat_template_sha256": prov["chat_template_sha256"],
                "dtype": prov["dtype"],
                "device": dev.type,
                "world_size": ctx.world_size,
                "attn_implementation": prov["attn_implementation"],
                "max_length": max_length,
                "truncation_mode": "keep_start",
                "trl_tokenization_rule": TRL_TOKENIZATION_RULE,
                "trl_version": _trl_version(),
                "engine": engine_settings,
                "splits": counts["splits"],
                "totals": counts["totals"],
                "seconds": round(seconds, 3),
            }
            merge(out, shards, section)
            return _summary(out, section, len(shards), len(already), seconds, scoring_seconds, fresh)

        summary = ctx.on_main(finish)
        return summary
    finally:
        ctx.close()


def _score_shards(
    loaded: Any,
    tables: dict[str, pa.Table],
    mine: list[Shard],
    work: Path,
    fingerprint: str,
    ctx: Any,
    max_length: int,
    token_budget: int | None,
    prefix_sharing: bool,
    progress: bool,
) -> None:
    from prefkit.progress import bar

    total = sum(s.rows for s in mine)
    show = progress and ctx.is_main
    desc = "scoring" if not ctx.active else f"scoring (rank 0 of {ctx.world_size})"
    started = time.perf_counter()
    tokens_done = 0
    rows_done = 0
    with bar(desc=desc, total=total, show=show, unit="pair") as pbar:
        pairs_seen = 0.0

        def on_progress(pairs: float, tokens: int) -> None:
            nonlocal tokens_done, pairs_seen
            tokens_done += tokens
            pairs_seen += pairs  # the engine counts half pairs without prefix sharing
            pbar.update(int(pairs_seen) - pbar.n)
            rate = tokens_done / max(time.perf_counter() - started, 1e-9)
            pbar.set_postfix_str(f"{rate:,.0f} tok/s", refresh=False)

        for shard in mine:
            t0 = time.perf_counter()
            rows = tables[shard.split].slice(shard.start, shard.rows).to_pylist()
            values, counts = score_shard(
                loaded,
                rows,
                max_length=max_length,
                token_budget=token_budget,
                prefix_sharing=prefix_sharing,
                on_progress=on_progress if show else None,
            )
            meta = {
                "fingerprint": fingerprint,
                "split": shard.split,
                "index": shard.index,
                "start": shard.start,
                "stop": shard.stop,
                "seconds": round(time.perf_counter() - t0, 3),
                "rank": ctx.rank,
                **counts,
            }
            write_part(work / shard.name, values, meta)
            rows_done += shard.rows
            if show:  # dropped rows are not scored: bring the bar to the shard's end
                pairs_seen = float(rows_done)
                pbar.update(max(0, rows_done - pbar.n))


def _collect_counts(work: Path, shards: list[Shard]) -> dict:
    splits: dict[str, dict] = {}
    keys = ("rows", "scored", "truncated", "completion_tokens", "tokens")
    for shard in shards:
        meta = _read_part_meta(work / shard.name) or {}
        entry = splits.setdefault(shard.split, {k: 0 for k in keys} | {"dropped": {}})
        for k in keys:
            entry[k] += int(meta.get(k, 0))
        for reason, n in (meta.get("dropped") or {}).items():
            entry["dropped"][reason] = entry["dropped"].get(reason, 0) + n
    totals = {k: sum(s[k] for s in splits.values()) for k in keys}
    totals["dropped"] = dict(sum((Counter(s["dropped"]) for s in splits.values()), Counter()))
    return {"splits": splits, "totals": totals}


def _summary(
    out: Path, section: dict, n_shards: int, resumed: int, seconds: float, scoring_seconds: float, fresh: dict
) -> dict:
    """The summary `--json` prints; rates count only the pairs scored by this run (not resumed ones)."""
    totals = section["totals"]
    return {
        "output": str(out),
        "model": section["model"],
        "revision": section["revision"],
        "dtype": section["dtype"],
        "device": section["device"],
        "world_size": section["world_size"],
        "max_length": section["max_length"],
        "pairs": totals["rows"],
        "scored": totals["scored"],
        "dropped": totals["dropped"],
        "truncated": totals["truncated"],
        "tokens": totals["tokens"],
        "seconds": round(seconds, 3),
        "scoring_seconds": round(scoring_seconds, 3),
        "pairs_per_s": round(fresh["rows"] / scoring_seconds, 2) if fresh["rows"] else None,
        "tokens_per_s": round(fresh["tokens"] / scoring_seconds, 1) if fresh["rows"] else None,
        "shards": {"total": n_shards, "resumed": resumed, "scored": n_shards - resumed},
        "splits": section["splits"],
    }


def _trl_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("trl")
    except Exception:  # optional dependency; informational only
        return None
