"""Open a source: a Hub dataset id or a local file/folder, as Arrow tables per split.

Hub ids go through the real ``datasets``/``huggingface_hub`` clients (so ``HF_ENDPOINT``, tokens and caches work
as users expect); the revision is resolved to a commit sha first and the load is pinned to it. Local parquet /
jsonl / json / csv files are read with Arrow directly; local folders may be ``save_to_disk`` output or a
Hub-layout folder (``data/*.parquet`` + README ``configs``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from prefkit.errors import SourceError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
LOCAL_SUFFIXES = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".ndjson": "json"}
LOGIN_HINT = "log in with `hf auth login` or set HF_TOKEN"


class ParquetSplit:
    """A local parquet file, decoded lazily: a build reads only the columns it maps.

    Behaves like the ``pa.Table`` it stands for (any other attribute reads the whole file once).
    """

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self._file = pq.ParquetFile(path)
        self.schema: pa.Schema = self._file.schema_arrow
        self.num_rows: int = self._file.metadata.num_rows
        self.column_names: list[str] = self.schema.names
        self._table: pa.Table | None = None

    def select(self, columns: list[str]) -> pa.Table:
        if self._table is not None:
            return self._table.select(columns)
        try:
            # polars' reader decodes nested string columns 1.5-2.5x faster than pyarrow's; cast back to the
            # file's exact Arrow types, so callers see the same table either way
            import polars as pl

            target = pa.schema([self.schema.field(c) for c in columns])
            read = pl.read_parquet(self.path, columns=columns).to_arrow(compat_level=pl.CompatLevel.oldest())
            return read.cast(target)
        except Exception:  # any type polars cannot round-trip: pyarrow reads it as it is
            return self._file.read(
                columns=columns
            )  # not pq.read_table: that imports pyarrow.dataset (+ pandas)

    def head(self, n: int) -> pa.Table:
        batch = next(self._file.iter_batches(batch_size=n), None)
        return pa.Table.from_batches([batch]) if batch is not None else self.schema.empty_table()

    def __getattr__(self, name: str):
        if self._table is None:
            self._table = self._file.read()
        return getattr(self._table, name)


def head(table: pa.Table | ParquetSplit, n: int) -> pa.Table:
    """The first ``n`` rows (a sample for detection) without reading a whole parquet file."""
    return table.head(n) if isinstance(table, ParquetSplit) else table.slice(0, n)


@dataclass
class Source:
    """A loaded source: its splits as Arrow tables, and where exactly they came from."""

    spec: str
    kind: str  # "hub" | "local"
    splits: dict[str, pa.Table | ParquetSplit]
    revision: str | None = None  # what the user asked for
    sha: str | None = None  # the commit it resolved to
    config: str | None = None
    data_dir: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        """What the ``source`` column says: ``repo_id[:config]@sha`` or the local path."""
        if self.kind == "local":
            return self.spec
        name = (
            self.spec
            + (f":{self.config}" if self.config else "")
            + (f"/{self.data_dir}" if self.data_dir else "")
        )
        return f"{name}@{self.sha}" if self.sha else name

    def describe(self) -> dict:
        return {
            "source": self.label,
            "id": self.spec,
            "kind": self.kind,
            "revision": self.revision,
            "sha": self.sha,
            "config": self.config,
            "data_dir": self.data_dir,
            "splits": {name: t.num_rows for name, t in self.splits.items()},
            **self.info,
        }


def load_source(
    source: str | Path,
    *,
    split: str | list[str] | None = None,
    revision: str | None = None,
    config: str | None = None,
    data_dir: str | None = None,
    token: str | bool | None = None,
) -> Source:
    """Open ``source`` (Hub id or local path) and return all its splits, or those named in ``split``."""
    splits = [split] if isinstance(split, str) else split
    path = Path(source)
    if path.exists():
        loaded = _load_local(path, data_dir=data_dir)
        return Source(str(source), "local", _select_splits(loaded, splits, str(source)), data_dir=data_dir)
    text = str(source)
    if not HUB_ID.match(text) or text.startswith((".", "/", "~")) or Path(text).suffix in LOCAL_SUFFIXES:
        raise SourceError(
            f"{text!r} is neither an existing file or folder nor a Hub dataset id",
            "check the path, or pass a Hub id like `namespace/name`",
        )
    return _load_hub(text, splits=splits, revision=revision, config=config, data_dir=data_dir, token=token)


def _select_splits(tables: dict[str, pa.Table], wanted: list[str] | None, name: str) -> dict[str, pa.Table]:
    if not wanted:
        return tables
    missing = [s for s in wanted if s not in tables]
    if missing:
        raise SourceError(
            f"split {missing[0]!r} not found in {name}; available splits: {', '.join(tables)}",
            f"pass one of them with --split (e.g. --split {next(iter(tables))})",
        )
    return {s: tables[s] for s in wanted}


def _read_file(path: Path) -> pa.Table | ParquetSplit:
    kind = LOCAL_SUFFIXES.get(path.suffix.lower()) or LOCAL_SUFFIXES.get(Path(path.stem).suffix.lower())
    try:
        if kind == "parquet" and path.suffix.lower() == ".parquet":
            return ParquetSplit(path)
        if kind == "csv":
            import pyarrow.csv as pacsv

            return pacsv.read_csv(path)
        if kind == "json":
            return _read_json(path)
    except (pa.ArrowInvalid, OSError, ValueError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SourceError(
            f"cannot read {str(path)!r} as {kind}: {first}",
            f"check that the file is valid {kind} (one JSON object per line for .jsonl)",
        ) from None
    raise SourceError(
        f"unsupported file type {path.suffix!r} for {str(path)!r}",
        "use .parquet, .jsonl, .json or .csv (optionally .gz), or a dataset folder",
    )


def _read_json(path: Path) -> pa.Table:
    """JSON Lines, or a JSON array of objects (Arrow's reader only does the former)."""
    import json

    import pyarrow.json as pajson

    opener = _open_maybe_gzip(path)
    with opener() as fh:
        head = fh.read(1)
        while head and head.isspace():
            head = fh.read(1)
    if head == b"[":
        with opener() as fh:
            rows = json.load(fh)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError("expected a JSON array of objects")
        return pa.Table.from_pylist(rows)
    return pajson.read_json(path, read_options=pajson.ReadOptions(block_size=1 << 24))


def _open_maybe_gzip(path: Path):
    import gzip

    if path.suffix == ".gz":
        return lambda: gzip.open(path, "rb")
    return lambda: open(path, "rb")


def _load_local(path: Path, data_dir: str | None) -> dict[str, pa.Table]:
    if path.is_file():
        return {"train": _read_file(path)}
    folder = path / data_dir if data_dir else path
    if (folder / "dataset_dict.json").exists() or (folder / "state.json").exists():
        import datasets

        loaded = datasets.load_from_disk(str(folder))
        if isinstance(loaded, datasets.Dataset):
            return {"train": loaded.data.table}
        return {name: ds.data.table for name, ds in loaded.items()}
    try:
        import datasets

        loaded = datasets.load_dataset(str(path), data_dir=data_dir)
    except (FileNotFoundError, ValueError) as err:
        raise SourceError(
            f"cannot read folder {str(path)!r} as a dataset: {str(err).splitlines()[0] if str(err) else err}",
            "point at a data file, a `save_to_disk` folder, or a folder with data files (e.g. data/train-*.parquet)",
        ) from None
    return {name: ds.data.table for name, ds in loaded.items()}


def _load_hub(
    repo_id: str,
    *,
    splits: list[str] | None,
    revision: str | None,
    config: str | None,
    data_dir: str | None,
    token: str | bool | None,
) -> Source:
    import datasets
    from huggingface_hub import HfApi, constants
    from huggingface_hub import errors as hf_errors

    api = HfApi(endpoint=constants.ENDPOINT, token=token)
    try:
        sha = api.dataset_info(repo_id, revision=revision).sha
    except hf_errors.GatedRepoError:
        raise _gated(repo_id) from None
    except hf_errors.RepositoryNotFoundError:
        raise SourceError(
            f"dataset {repo_id!r} was not found on the Hub (or it is private)",
            f"check the id; for a private dataset {LOGIN_HINT}; for a local file check the path",
        ) from None
    except hf_errors.RevisionNotFoundError:
        raise SourceError(
            f"revision {revision!r} not found in dataset {repo_id!r}",
            "pass an existing branch, tag or commit sha to --revision",
        ) from None
    except hf_errors.HfHubHTTPError as err:
        raise _http_error(repo_id, err) from None
    except OSError as err:  # connection refused, DNS, timeouts
        raise SourceError(
            f"cannot reach the Hub for {repo_id!r}: {err}",
            "check your network (or HF_ENDPOINT); set HF_HUB_OFFLINE=1 to use the local cache only",
        ) from None
    kwargs = dict(name=config, data_dir=data_dir, revision=sha, token=token)
    try:
        if splits:
            loaded = {s: datasets.load_dataset(repo_id, split=s, **kwargs) for s in splits}
        else:
            loaded = dict(datasets.load_dataset(repo_id, **kwargs))
    except ValueError as err:
        message = str(err)
        if "split" in message.lower() and splits:
            available = _split_names(repo_id, kwargs)
            raise SourceError(
                f"split {next(s for s in splits if s not in available) if available else splits[0]!r} not found in "
                f"{repo_id!r}; available splits: {', '.join(available) or 'unknown'}",
                f"pass one of them with --split (e.g. --split {available[0] if available else 'train'})",
            ) from None
        if "config" in message.lower() or "builderconfig" in message.lower():
            raise SourceError(
                f"{repo_id!r}: {message.splitlines()[0]}", "pass one of the available configs with --config"
            ) from None
        raise SourceError(
            f"cannot load {repo_id!r}: {message.splitlines()[0]}", "check --config/--data-dir/--split"
        ) from None
    except FileNotFoundError as err:
        if "gated" in str(err):
            raise _gated(repo_id) from None
        raise SourceError(
            f"cannot load {repo_id!r}: {str(err).splitlines()[0]}",
            "check --data-dir / --config: they must name a folder or config of the dataset",
        ) from None
    except hf_errors.HfHubHTTPError as err:
        raise _http_error(repo_id, err) from None
    tables = {name: ds.data.table for name, ds in loaded.items()}
    return Source(repo_id, "hub", tables, revision=revision, sha=sha, config=config, data_dir=data_dir)


def _split_names(repo_id: str, kwargs: dict) -> list[str]:
    import datasets

    try:
        return list(
            datasets.get_dataset_split_names(
                repo_id,
                config_name=kwargs["name"],
                data_dir=kwargs["data_dir"],
                revision=kwargs["revision"],
                token=kwargs["token"],
            )
        )
    except Exception:  # best effort: the error message still names the missing split
        return []


def _gated(repo_id: str) -> SourceError:
    return SourceError(
        f"dataset {repo_id!r} is gated and this account has no access to it",
        f"request access on the dataset's Hub page, then {LOGIN_HINT}",
    )


def _http_error(repo_id: str, err: Exception) -> SourceError:
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status in (401, 403):
        return SourceError(
            f"no access to dataset {repo_id!r} (HTTP {status})",
            f"{LOGIN_HINT}, with a token that can read this dataset",
        )
    return SourceError(
        f"the Hub answered HTTP {status} for {repo_id!r}", "try again later, or check HF_ENDPOINT"
    )
