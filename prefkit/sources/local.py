"""Local sources: parquet / jsonl / json / csv files (optionally compressed: ``COMPRESSIONS``) and dataset folders.

Files are read with Arrow directly and lazily (:mod:`prefkit.sources.splits`: parquet decoding only the columns a
build maps, JSON Lines and CSV with Arrow's streaming readers, all in record batches); a JSON array, and a file
whose rows Arrow cannot type as they are, is read whole. Folders may be ``save_to_disk`` output or a Hub-layout
folder (``data/*.parquet`` + README ``configs``), read with ``datasets`` and streamed from its Arrow files.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from prefkit.errors import SourceError
from prefkit.record import ROW_FIELDS
from prefkit.sources.rows import table_from_rows
from prefkit.sources.splits import CsvSplit, JsonLinesSplit, LazySplit, ParquetSplit, arrow_split
from prefkit.store.folder import is_prefkit_folder, read_output

__all__ = ["LOCAL_SUFFIXES", "ParquetSplit", "head", "load_local", "read_file"]

LOCAL_SUFFIXES = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".ndjson": "json"}
#: compressed files read (Arrow decompresses them by extension: gzip, bz2, zstd, lz4, brotli)
COMPRESSIONS = (".gz", ".bz2", ".zst", ".lz4", ".br")
SUPPORTED = "use .parquet, .jsonl, .json or .csv (optionally compressed: .gz, .bz2, .zst, .lz4, .br), or a dataset folder"


def head(table: pa.Table | LazySplit, n: int) -> pa.Table:
    """The first ``n`` rows (a sample for detection) without reading a whole file."""
    return table.head(n) if isinstance(table, LazySplit) else table.slice(0, n)


def read_file(path: Path) -> pa.Table | LazySplit:
    """One local data file as a split (lazily, in batches; see the module docstring). Raises :class:`SourceError`
    naming what is wrong: the line of a malformed JSON row, invalid UTF-8, a duplicated column, a column whose
    types cannot be reconciled (for a streamed file, when the build reaches the block that is wrong)."""
    kind = LOCAL_SUFFIXES.get(path.suffix.lower())
    inner = LOCAL_SUFFIXES.get(Path(path.stem).suffix.lower())
    if kind is None and inner is not None and path.suffix.lower() not in COMPRESSIONS:
        raise SourceError(f"unsupported compression {path.suffix!r} for {str(path)!r}", SUPPORTED)
    kind = kind or inner
    if kind is None:
        raise SourceError(f"unsupported file type {path.suffix!r} for {str(path)!r}", SUPPORTED)
    with _errors(path, kind):
        if kind == "parquet" and path.suffix.lower() == ".parquet":
            return ParquetSplit(path)
        if kind == "parquet":  # compressed: parquet needs random access, so it is decompressed in memory
            return _read_compressed_parquet(path)
        if kind == "csv":
            fix_csv = lambda t: _plain_columns(_text_columns(_unique_names(t, path), path))  # noqa: E731
            return CsvSplit.open(path, _read_csv, fix_csv)
        if _json_array(path):
            return _read_whole_json(path)
        return JsonLinesSplit.open(path, _read_whole_json, lambda t: _streamable_json(t, path))


@contextmanager
def _errors(path: Path, kind: str) -> Iterator[None]:
    """Arrow and OS errors of reading ``path`` as one :class:`SourceError` naming the file."""
    try:
        yield
    except SourceError:
        raise
    except (MemoryError, pa.ArrowMemoryError) as err:
        raise SourceError(
            f"ran out of memory reading {str(path)!r} ({type(err).__name__}); the file itself may be fine",
            "give the process more memory (ulimit -v, the container's limit), or lower PREFKIT_BATCH_ROWS",
        ) from None
    except RecursionError:
        raise SourceError(
            f"cannot read {str(path)!r} as {kind}: a value is nested too deeply (thousands of levels)",
            "flatten the nested values (or store them as JSON text)",
        ) from None
    except (pa.ArrowException, OSError, ValueError, UnicodeDecodeError) as err:
        first = " ".join(str(err).split())[:300] or type(err).__name__
        what = "parquet (is it complete? a truncated download is not)" if kind == "parquet" else kind
        raise SourceError(
            f"cannot read {str(path)!r} as {kind}: {first}", f"check that the file is valid {what}"
        ) from None


def _read_csv(path: Path) -> pa.Table:
    """A whole CSV file (Arrow's reader: types that fit every block)."""

    with _errors(path, "csv"):
        return _plain_columns(_text_columns(_unique_names(pacsv.read_csv(path), path), path))


def _read_whole_json(path: Path) -> pa.Table:
    """A whole JSON or JSON Lines file (:func:`_read_json`)."""
    with _errors(path, "json"):
        return _plain_columns(_unique_names(_read_json(path), path))


def _streamable_json(table: pa.Table, path: Path) -> pa.Table:
    """A block of a JSON Lines file as the whole-file reader would give it; a block whose JSON fields Arrow typed
    as structs cannot be streamed (the file is read row by row, keeping each row's key order)."""
    if holds_json_fields(table.schema):
        raise ValueError("JSON fields typed as structs")
    return _plain_columns(_unique_names(table, path))


def _json_array(path: Path) -> bool:
    """The file holds a JSON array (its first non-blank byte is ``[``)."""
    with _open_maybe_gzip(path)() as fh:
        head = fh.read(1)
        if head == b"\xef" and fh.read(2) == b"\xbb\xbf":  # a UTF-8 byte order mark
            head = fh.read(1)
        while head and head.isspace():
            head = fh.read(1)
    return head == b"["


def _unique_names(table: pa.Table, path: Path) -> pa.Table:
    seen: set[str] = set()
    for name in table.column_names:
        if name in seen:
            raise SourceError(
                f"column {name!r} appears twice in {str(path)!r}", "rename one of the two columns"
            )
        seen.add(name)
    return table


def _text_columns(table: pa.Table, path: Path) -> pa.Table:
    """A CSV column Arrow could only read as bytes holds text that is not UTF-8."""
    for field in table.schema:
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            raise SourceError(
                f"cannot read {str(path)!r}: column {field.name!r} holds text that is not valid UTF-8",
                "re-encode the file as UTF-8",
            )
    return table


def _plain_columns(table: pa.Table) -> pa.Table:
    """Columns that hold only nulls (a header-only CSV, an always-empty JSON key) become strings."""
    for i, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
    return table


def _read_json(path: Path) -> pa.Table:
    """JSON Lines, or a JSON array of objects. Arrow's reader first; rows Arrow cannot type (a column that mixes
    types) or a malformed line go through the row-by-row reader, which names the line."""


    opener = _open_maybe_gzip(path)
    if _json_array(path):
        with opener() as fh:
            try:
                rows = json.loads(fh.read().decode("utf-8-sig"))
            except json.JSONDecodeError as err:
                raise SourceError(
                    f"{str(path)!r} is not valid JSON: {err}", "fix the file at that line"
                ) from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise SourceError(
                f"cannot read {str(path)!r}: a JSON array but not of objects", "write one object per row"
            )
        return table_from_rows(rows, path, [i + 1 for i in range(len(rows))])
    try:
        table = pajson.read_json(path, read_options=pajson.ReadOptions(block_size=1 << 24))
        table.validate(full=True)  # invalid UTF-8 would otherwise surface much later
        if not holds_json_fields(table.schema):
            return table
    except pa.ArrowMemoryError:
        raise  # not a sign of a malformed file (see _errors)
    except pa.ArrowException:
        pass
    return _read_json_lines(path)  # row by row: reconciles kinds, keeps each row's JSON key order


def holds_json_fields(schema: pa.Schema) -> bool:
    """Whether Arrow typed a JSON field (``tools``, ``chat_template_kwargs``, messages' ``tool_calls``) as
    structs, which loses each row's key order (:mod:`prefkit.sources.rows` reads such files row by row)."""

    def not_text(t: pa.DataType) -> bool:
        return not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t))

    for f in schema:
        if f.name in ROW_FIELDS and not_text(f.type):
            return True
        if pa.types.is_list(f.type) and pa.types.is_struct(f.type.value_type):
            item = f.type.value_type
            if item.get_field_index("tool_calls") >= 0 and not_text(item.field("tool_calls").type):
                return True
    return False


def _open_maybe_gzip(path: Path):
    """An opener of the file's bytes, decompressed when its extension is one of ``COMPRESSIONS``."""

    if path.suffix.lower() in COMPRESSIONS:
        return lambda: io.BufferedReader(pa.input_stream(str(path), compression="detect"))
    return lambda: open(path, "rb")


def _read_compressed_parquet(path: Path) -> pa.Table:
    with pa.input_stream(str(path), compression="detect") as stream:
        data = stream.read()
    return _unique_names(pq.read_table(pa.BufferReader(data)), path)


def _read_json_lines(path: Path) -> pa.Table:

    rows, lines = [], []
    with _open_maybe_gzip(path)() as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise SourceError(
                    f"{str(path)!r} line {number} is not valid UTF-8", "re-encode the file as UTF-8"
                ) from None
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as err:
                raise SourceError(
                    f"cannot read {str(path)!r}: line {number} is not valid JSON: {err.msg} (column {err.colno})",
                    "fix that line (a .jsonl file holds one JSON object per line)",
                ) from None
            if not isinstance(row, dict):
                raise SourceError(
                    f"{str(path)!r} line {number} is not a JSON object", "write one object per line"
                )
            rows.append(row)
            lines.append(number)
    if not rows:
        raise SourceError(
            f"cannot read {str(path)!r}: it is empty (no JSON rows)", "point at a file that holds rows"
        )

    return table_from_rows(rows, path, lines)


def is_prefkit_set(folder: Path) -> bool:
    """A folder prefkit wrote (its manifest is there)."""

    return is_prefkit_folder(folder)


def _prefkit_set(folder: Path) -> tuple[dict[str, pa.Table], dict]:
    """A prefkit output folder read as a source: its data splits with every column (extra ones included)."""

    out = read_output(folder)
    splits = {split: ParquetSplit(list(paths)) for split, paths in out.shards.items()}
    return splits, {"prefkit_set": True, "manifest": out.manifest}


def _nested_sets(folder: Path) -> list[Path]:
    """prefkit output folders inside ``folder`` (a build written into a source folder): never read as input."""
    return sorted(
        p.parent for p in folder.rglob("prefkit.json") if p.parent != folder and is_prefkit_set(p.parent)
    )


def _data_files_without(folder: Path, skip: list[Path]) -> dict[str, list[str]] | None:
    """The data files ``datasets`` would read in ``folder``, minus those inside ``skip``."""
    from datasets.data_files import DataFilesDict, get_data_patterns

    patterns = get_data_patterns(str(folder))
    files = DataFilesDict.from_patterns(patterns, base_path=str(folder))
    keep = {}
    for split, paths in files.items():
        mine = [f for f in paths if not any(s in Path(f).resolve().parents for s in skip)]
        if mine:
            keep[split] = mine
    return keep or None


def load_local(path: Path, data_dir: str | None) -> tuple[dict[str, pa.Table], dict]:
    """A local file or folder → (splits, info). ``info`` says what was read: ``prefkit_set`` (a folder prefkit
    wrote: its data, every column) and ``skipped`` (prefkit output folders found inside a source folder)."""
    if path.is_file():
        return {"train": read_file(path)}, {}
    folder = (path / data_dir if data_dir else path).resolve()
    if is_prefkit_set(folder):
        return _prefkit_set(folder)
    if (folder / "dataset_dict.json").exists() or (folder / "state.json").exists():
        import datasets

        loaded = datasets.load_from_disk(str(folder))
        if isinstance(loaded, datasets.Dataset):
            return {"train": arrow_split(loaded)}, {}
        return {name: arrow_split(ds) for name, ds in loaded.items()}, {}
    skip = _nested_sets(folder)
    info = {"skipped": [str(p) for p in skip]} if skip else {}
    splits = _load_folder(path.resolve(), data_dir, skip)
    unread = _unread_files(folder, skip)
    if unread:
        info["unread"] = unread
    return splits, info


#: what a folder holds besides data files: save_to_disk's and the Hub's metadata
_NOT_DATA = {"state.json", "dataset_info.json", "dataset_dict.json", "dataset_infos.json"}


def _unread_files(folder: Path, skip: list[Path]) -> list[str]:
    """Data files in ``folder`` (by suffix, :data:`LOCAL_SUFFIXES` and ``.arrow``) that ``datasets``' folder
    resolution leaves out: it takes only split-named files when there are any (``train.jsonl``, ``test/``) and
    only the most common file type, so the rest of a folder would be dropped without a word. Relative paths,
    sorted; empty when ``datasets`` cannot say which files it reads."""
    import datasets

    try:
        builder = datasets.load_dataset_builder(str(folder))
        read = {Path(str(f)).resolve() for files in builder.config.data_files.values() for f in files}
    except Exception:  # the folder was read above; this only refines a report
        return []
    unread = []
    for file in sorted(folder.rglob("*")):
        rel = file.relative_to(folder)
        if not file.is_file() or file.name in _NOT_DATA or any(part.startswith(".") for part in rel.parts):
            continue
        suffix = (
            Path(file.stem).suffix.lower() if file.suffix.lower() in COMPRESSIONS else file.suffix.lower()
        )
        if suffix not in LOCAL_SUFFIXES and suffix != ".arrow":
            continue
        if file.resolve() in read or any(s in file.resolve().parents for s in skip):
            continue
        unread.append(rel.as_posix())
    return unread


def _load_folder(path: Path, data_dir: str | None, skip: list[Path]) -> dict[str, pa.Table]:
    import datasets

    try:
        if skip:
            files = _data_files_without(path / data_dir if data_dir else path, skip)
            if files is None:
                raise FileNotFoundError("no data files besides prefkit output folders")
            loaded = datasets.load_dataset(str(path), data_files=files)
        else:
            loaded = datasets.load_dataset(str(path), data_dir=data_dir)
    except Exception as err:  # datasets raises many types for a folder it cannot read
        raise _folder_error(path, err) from None
    return {name: arrow_split(ds) for name, ds in loaded.items()}


def _folder_error(path: Path, err: Exception) -> SourceError:
    text = " ".join(str(err).split()) or type(err).__name__
    cause = getattr(err, "__cause__", None)
    detail = " ".join(str(cause).split()) if cause is not None else ""
    if any(w in (text + detail).lower() for w in ("cast", "schema", "column names don't match", "mismatch")):
        return SourceError(
            f"the files in folder {str(path)!r} do not share one schema (columns or types differ): {(detail or text)[:300]}",
            "give the files that differ as separate sources (prefkit build a.parquet b.parquet), or make them match",
        )
    return SourceError(
        f"cannot read folder {str(path)!r} as a dataset: {text[:300]}",
        "point at a data file, a `save_to_disk` folder, or a folder with data files (e.g. data/train-*.parquet)",
    )
