"""Out-of-core builds: a build that reads its sources in many small batches (``PREFKIT_BATCH_ROWS``) writes the same
set as a build that reads every split in one batch: the same rows, ids and order, counts, rejects and statistics,
for every shape and every option that looks across the rows of a split."""

from __future__ import annotations

import json
import random

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefkit import build
from prefkit.spill import BATCH_ROWS_ENV, SpillWriter, batch_rows, gather
from tests import catalog as C
from tests.builders import conversational_rows, write_rows
from tests.tinymodel import random_text, tiny_model_path

ONE_BATCH = "1000000"
SMALL = "3"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_parquet(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def data_rows(out):
    files = sorted((out / "data").glob("*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in files]).to_pylist() if files else []


def same_manifest(a: dict, b: dict) -> None:
    def strip(m):
        m = {k: v for k, v in m.items() if k not in ("created", "command")}
        return m

    assert strip(a) == strip(b)


def assert_same_set(a, b) -> None:
    """Two output folders hold the same set: rows (ids, order, content), rejects, manifest (counts, statistics,
    quality and export sections), and byte for byte the same data and rejects files (row groups of a fixed size
    whatever the batches), so the same shard names (content digests)."""
    rows = data_rows(a)
    assert rows == data_rows(b)
    for folder in ("data", "rejects"):
        files = [sorted((x / folder).glob("*.parquet")) for x in (a, b)]
        assert [f.name for f in files[0]] == [f.name for f in files[1]]
        assert all(fa.read_bytes() == fb.read_bytes() for fa, fb in zip(*files, strict=True))
    names = sorted(p.name for p in (a / "rejects").glob("*.parquet"))
    for name in names:
        ra, rb = pq.read_table(a / "rejects" / name), pq.read_table(b / "rejects" / name)
        assert ra.schema.remove_metadata() == rb.schema.remove_metadata()
        assert ra.to_pylist() == rb.to_pylist()
    same_manifest(*(json.loads((x / "prefkit.json").read_text()) for x in (a, b)))
    if (a / "dataset_info.json").exists():  # an entry per data file, named after the folder
        info = [json.loads((x / "dataset_info.json").read_text()) for x in (a, b)]
        assert [k.split("_", 1)[1] for k in info[0]] == [k.split("_", 1)[1] for k in info[1]]


def build_both(tmp_path, monkeypatch, sources, **options):
    """The set built in one batch per split and in batches of 3 rows; asserts they are the same (and that the
    second build did read in many batches)."""
    import prefkit.stream.read

    batches = []
    classify = prefkit.stream.read.classify_batch
    monkeypatch.setattr(
        prefkit.stream.read,
        "classify_batch",
        lambda raw, *a, **k: batches.append(raw.num_rows) or classify(raw, *a, **k),
    )
    outs, counts = [], []
    for rows in (ONE_BATCH, SMALL):
        monkeypatch.setenv(BATCH_ROWS_ENV, rows)
        out = tmp_path / f"out-{rows}"
        batches.clear()
        build(sources, out, **options)
        outs.append(out)
        counts.append(len(batches))
    assert counts[1] > 2 * counts[0] and max(batches) <= int(SMALL)
    assert_same_set(*outs)
    return outs


# ------------------------------------------------------------------------------------------------- sources
def flat_source(tmp_path, n=40):
    return write_rows(tmp_path / "flat.jsonl", n)


def uf_source(tmp_path, n=45):
    rows = C.rows(C.h4_uf, n)
    for i, row in enumerate(rows):
        row["score_chosen"] = float(5 + i % 5)
        if i % 7 == 3:  # a duplicate of an earlier pair (dedup), same prompt (one pair per prompt)
            rows[i] = {**rows[i - 2], "prompt_id": rows[i]["prompt_id"]}
        if i % 9 == 4:  # another pair for an earlier prompt
            rows[i]["chosen"] = [*rows[i - 1]["chosen"][:1], C.msgs(("assistant", f"other {i}"))[0]]
            rows[i]["rejected"] = rows[i - 1]["rejected"]
    return write_parquet(tmp_path / "uf.parquet", rows)


def explicit_source(tmp_path, n=30):
    rows = conversational_rows(n)
    for i, row in enumerate(rows):
        row["score_chosen"], row["score_rejected"] = float(i % 6), float(i % 4)
    return write_parquet(tmp_path / "hh.parquet", rows)


def nectar_source(tmp_path, n=20):
    rows = [C.nectar(i, ranks=(1.0, 2.0, 2.0, 3.0, 4.0) if i % 3 else (1.0, 1.0)) for i in range(n)]
    return write_jsonl(tmp_path / "nectar.jsonl", rows)


def rated_source(tmp_path, n=20):
    return write_jsonl(tmp_path / "uf_raw.jsonl", C.rows(C.ultrafeedback_raw, n))


def shp_source(tmp_path, n=36):
    rows = []
    for i in range(n):
        post = f"post{i // 5 if i < 20 else i % 4}"  # posts spread over many batches
        rows.append(C.shp(i, post=post, a_wins=i % 2 == 0, score_a=10 + i % 7, score_b=3 + i % 3))
    return write_jsonl(tmp_path / "shp.jsonl", rows)


# ------------------------------------------------------------------------------------------------- the cases
@pytest.mark.parametrize(
    "options",
    [{}, {"top": 7}, {"max_rows": 9}, {"max_rows": 9, "seed": 3}, {"min_margin": 2, "full_rejects": True}],
    ids=["plain", "top", "max-rows", "max-rows-sample", "min-margin-full-rejects"],
)
def test_flat_rows(tmp_path, monkeypatch, options):
    build_both(tmp_path, monkeypatch, str(flat_source(tmp_path)), **options)


@pytest.mark.parametrize(
    "options",
    [
        {"top": 10},
        {"dedup": True},
        {"one_pair_per_prompt": True},
        {"dedup": True, "top": 20, "test_size": 0.2, "seed": 1},
        {"test_rows": 6},
    ],
    ids=["top", "dedup", "one-pair-per-prompt", "dedup-top-test-split", "test-rows"],
)
def test_implicit_messages(tmp_path, monkeypatch, options):
    build_both(tmp_path, monkeypatch, str(uf_source(tmp_path)), **options)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"pairs": "best-vs-random", "seed": 5},
        {"pairs": "all-pairs", "max_pairs_per_prompt": 3, "top": 12},
        {"pairs": "best-vs-next", "min_gap": 1.5, "dedup": True},
    ],
    ids=["worst", "random", "all-pairs-top", "next-gap-dedup"],
)
def test_ranked_and_rated_binarised(tmp_path, monkeypatch, options):
    build_both(tmp_path, monkeypatch, str(nectar_source(tmp_path)), **options)
    rated = {k: v for k, v in options.items() if k not in ("top",)}
    build_both(tmp_path / "rated", monkeypatch, str(rated_source(tmp_path)), **rated)


def test_shp_pairs_per_post_across_batches(tmp_path, monkeypatch):
    a, _ = build_both(
        tmp_path,
        monkeypatch,
        str(shp_source(tmp_path)),
        max_pairs_per_post=2,
        shp_min_ratio=1.5,
        test_size=0.25,
    )
    dropped = json.loads((a / "prefkit.json").read_text())["totals"]["dropped"]
    assert dropped["over_max_pairs_per_post"] > 0


def test_mix_of_two_sources_with_weights(tmp_path, monkeypatch):
    uf, hh = uf_source(tmp_path), explicit_source(tmp_path)
    build_both(tmp_path, monkeypatch, [f"{uf}:0.6", f"{hh}:2.0"], dedup=True, seed=4)
    build_both(tmp_path / "rows", monkeypatch, [f"{uf}:12", f"{hh}:40"], seed=2, test_size=0.2)


def near_dup_rows(n=30, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row = {
            "prompt": random_text(rng, 30),
            "chosen": random_text(rng, 25),
            "rejected": random_text(rng, 20),
            "delta_score": float(1 + i % 5),
        }
        rows.append(row)
        if i % 4 == 0:  # a near-duplicate a few rows (batches) later
            rows.append({**row, "prompt": row["prompt"].upper() + " !", "delta_score": float(i % 3)})
    rows[5]["prompt"] = "Compose a haiku about autumn leaves."
    rows[11]["chosen"] = "Compose a haiku about autumn leaves."
    return rows


@pytest.mark.parametrize(
    "options",
    [
        {"near_dedup": "pair"},
        {"near_dedup": "prompt", "top": 25},
        {"decontaminate_answers": True, "length_balance": True},
        {"near_dedup": "pair", "length_balance": True, "test_size": 0.3},
    ],
    ids=["near-dedup", "near-dedup-prompt-top", "decontaminate-length-balance", "all-split"],
)
def test_quality_pass(tmp_path, monkeypatch, options):
    src = write_jsonl(tmp_path / "pairs.jsonl", near_dup_rows())
    evalset = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": "Compose a haiku about autumn leaves."}])
    a, _ = build_both(tmp_path, monkeypatch, str(src), decontaminate=[str(evalset)], **options)
    manifest = json.loads((a / "prefkit.json").read_text())
    if options.get("near_dedup") == "pair":
        assert manifest["near_dedup"]["rows_removed"] > 0


def test_tokenizer_max_length_and_text_output(tmp_path, monkeypatch):
    model = str(tiny_model_path())
    src = str(write_rows(tmp_path / "d.jsonl", 24))
    build_both(tmp_path / "len", monkeypatch, src, keep_ties=True, tokenizer=model, max_length=60, top=10)
    build_both(
        tmp_path / "text", monkeypatch, src, tokenizer=model, output_format="text", length_balance=True
    )


@pytest.mark.parametrize("export", ["kto", "llamafactory", "openrlhf"])
def test_exports(tmp_path, monkeypatch, export):
    rows = [C.nectar(i) for i in range(12)]
    src = write_jsonl(tmp_path / "nectar.jsonl", rows)
    a, _ = build_both(tmp_path, monkeypatch, str(src), export=export, pairs="all-pairs", test_size=0.3)
    if export == "kto":
        stats = json.loads((a / "prefkit.json").read_text())["export"]["splits"]["train"]
        assert stats["conflicting_completions"] > 0


def test_streamed_text_files_and_folders(tmp_path, monkeypatch):
    """CSV and JSON Lines read block by block; a JSON Lines file whose later rows change a column's type is read
    whole, as before; a datasets folder and a prefkit set are read from their files in batches."""
    from prefkit.sources import splits

    monkeypatch.setattr(splits.JsonLinesSplit, "block_size", 256)
    monkeypatch.setattr(splits.CsvSplit, "block_size", 256)
    rows = [json.loads(line) for line in write_rows(tmp_path / "r.jsonl", 40).read_text().splitlines()]
    pl.DataFrame(rows).drop("system").write_csv(tmp_path / "r.csv")
    build_both(tmp_path / "csv", monkeypatch, str(tmp_path / "r.csv"))
    build_both(tmp_path / "jsonl", monkeypatch, str(tmp_path / "r.jsonl"))
    changed = [{**r, "note": 1 if i < 30 else "text"} for i, r in enumerate(rows)]  # found while classifying
    build_both(tmp_path / "changed", monkeypatch, str(write_jsonl(tmp_path / "changed.jsonl", changed)))
    mixed = [{**r, "score_chosen": "7/10" if i < 30 else 7} for i, r in enumerate(rows)]  # found preparing
    build_both(tmp_path / "mixed", monkeypatch, str(write_jsonl(tmp_path / "mixed.jsonl", mixed)))
    fractions = [{**r, "score_chosen": f"{i % 9}/10", "score_rejected": "2/10"} for i, r in enumerate(rows)]
    build_both(tmp_path / "frac", monkeypatch, str(write_jsonl(tmp_path / "frac.jsonl", fractions)))
    scales = [{**r, "score_chosen": "7/10" if i < 35 else "4/5"} for i, r in enumerate(rows)]
    a, _ = build_both(tmp_path / "scales", monkeypatch, str(write_jsonl(tmp_path / "scales.jsonl", scales)))
    assert json.loads((a / "prefkit.json").read_text())["totals"]["flags"]["unparsed_score"] == 40

    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    build_both(tmp_path / "saved-out", monkeypatch, str(tmp_path / "saved"), top=5)
    monkeypatch.setenv(BATCH_ROWS_ENV, SMALL)
    build(str(tmp_path / "r.jsonl"), tmp_path / "set")  # a prefkit set as a source
    build_both(tmp_path / "again", monkeypatch, str(tmp_path / "set"), dedup=True)


def test_in_memory_result_is_the_same(tmp_path, monkeypatch):
    src = str(uf_source(tmp_path))
    results = []
    for rows in (ONE_BATCH, SMALL):
        monkeypatch.setenv(BATCH_ROWS_ENV, rows)
        results.append(build(src, top=12, dedup=True))
    a, b = results
    assert a.splits["train"].equals(b.splits["train"])
    assert a.rejects["train"].to_pylist() == b.rejects["train"].to_pylist()
    assert a.manifest["splits"] == b.manifest["splits"] and a.manifest["stats"] == b.manifest["stats"]


# ------------------------------------------------------------------------------------------------- the parts
def test_batch_rows_setting(monkeypatch):
    monkeypatch.delenv(BATCH_ROWS_ENV, raising=False)
    assert batch_rows() > 1000 and batch_rows(10_000_000) >= 256 and batch_rows(1.0) <= 100_000
    monkeypatch.setenv(BATCH_ROWS_ENV, "7")
    assert batch_rows() == 7 == batch_rows(123.0)
    monkeypatch.setenv(BATCH_ROWS_ENV, "zero")
    with pytest.raises(Exception, match=BATCH_ROWS_ENV):
        batch_rows()


@pytest.mark.parametrize("order", ["sorted", "repeats", "small", "buckets"])
def test_gather_in_any_order(tmp_path, order):
    writer = SpillWriter(tmp_path / "spill")
    for start in range(0, 100, 7):
        rows = np.arange(start, min(start + 7, 100)) * 2  # every other value: keys need not be dense
        writer.write(pl.DataFrame({"_row": rows, "text": [f"t{r}" for r in rows]}))
    spill = writer.close()
    rng = np.random.default_rng(0)
    plan = {
        "sorted": np.arange(0, 200, 6),
        "repeats": np.sort(rng.choice(np.arange(0, 200, 2), 60)),
        "small": rng.permutation(np.arange(0, 200, 2))[:9],
        "buckets": rng.permutation(np.arange(0, 200, 2)),
    }[order]
    frames = list(gather(spill, plan, rows=10, work=tmp_path / "work"))
    got = pl.concat(frames)
    assert got["_row"].to_list() == plan.tolist()
    assert got["text"].to_list() == [f"t{r}" for r in plan]
    assert all(f.height <= 20 for f in frames)
    assert not list((tmp_path / "work").glob("*")) if (tmp_path / "work").exists() else True


def test_shards_of_at_most_max_bytes(tmp_path):
    import datasets

    from prefkit.output import ShardWriter

    table = pa.table({"text": [random_text(random.Random(i), 50) for i in range(300)]})
    writer = ShardWriter(tmp_path / "data", "train", max_bytes=table.nbytes // 4)
    for start in range(0, 300, 40):
        writer.write(table.slice(start, 40))
    paths = writer.close()
    assert len(paths) >= 4
    assert [p.name.split("-")[1:4] for p in paths] == [
        [f"{i:05d}", "of", f"{len(paths):05d}"] for i in range(len(paths))
    ]
    assert all(pq.ParquetFile(p).read().nbytes <= table.nbytes // 4 * 1.1 for p in paths)
    read = pa.concat_tables([pq.read_table(p) for p in paths])
    assert read.column("text").to_pylist() == table.column("text").to_pylist()
    loaded = datasets.load_dataset("parquet", data_files=[str(p) for p in paths], split="train")
    assert loaded.num_rows == 300


def test_shards_do_not_depend_on_the_batches_written(tmp_path, monkeypatch):
    """Shard boundaries and row groups are decided on fixed chunks of rows: the same rows written in batches of
    1, 7, 40 or all at once give byte-identical shards (so the same content-digest names)."""
    import prefkit.store.writer as writer_module
    from prefkit.output import ShardWriter

    monkeypatch.setattr(writer_module, "ROW_GROUP_ROWS", 25)
    table = pa.table({"text": [random_text(random.Random(i), 5 + i % 60) for i in range(300)]})
    written = []
    for size in (1, 7, 40, 300):
        writer = ShardWriter(tmp_path / f"data-{size}", "train", max_bytes=table.nbytes // 4)
        for start in range(0, 300, size):
            writer.write(table.slice(start, size))
        written.append(writer.close())
    first = written[0]
    assert len(first) >= 4
    groups = [pq.ParquetFile(p).metadata for p in first]
    assert groups[0].row_group(0).num_rows == 25
    assert all(m.row_group(g).num_rows <= 25 for m in groups for g in range(m.num_row_groups))
    for paths in written[1:]:
        assert [p.name for p in paths] == [p.name for p in first]
        assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in first]
