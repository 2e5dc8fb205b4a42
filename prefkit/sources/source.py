"""A loaded source (:class:`Source`): its splits and where exactly they came from. Made by the Hub reader
(:mod:`prefkit.sources.hub`) and the local one (:mod:`prefkit.sources.local`), returned by
:func:`prefkit.sources.load_source`."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from prefkit.secrets import public_path
from prefkit.sources.splits import LazySplit, known_rows


@dataclass
class Source:
    """A loaded source: its splits (Arrow tables or lazy readers), and where exactly they came from."""

    spec: str
    kind: str  # "hub" | "local"
    splits: dict[str, pa.Table | LazySplit]
    revision: str | None = None  # what the user asked for
    sha: str | None = None  # the commit it resolved to
    config: str | None = None
    data_dir: str | None = None
    info: dict = field(default_factory=dict)
    manifest: dict | None = None  # a prefkit output folder read as a source: its manifest

    @property
    def warnings(self) -> list[str]:
        """What the user should know about how the source was read."""
        out = []
        skipped = self.info.get("skipped") or []
        if skipped:
            out.append(
                f"{self.spec}: skipped prefkit output folder(s) inside the source: {', '.join(skipped)}"
            )
        unread = self.info.get("unread") or []
        if unread:
            shown = ", ".join(unread[:5]) + (f" and {len(unread) - 5} more" if len(unread) > 5 else "")
            out.append(
                f"{self.spec}: {len(unread)} data file(s) in the folder were not read ({shown}): `datasets` reads "
                "only split-named files (train*, test*, …) when a folder has any, and one file type; give the "
                "others as sources of their own (prefkit build FOLDER/a.jsonl FOLDER/b.parquet ...)"
            )
        return out

    @property
    def label(self) -> str:
        """What the ``source`` column says: ``repo_id[:config]@sha``, or a local path the way a reader elsewhere
        can use it (:func:`public_path`: relative paths as typed, others by their base name)."""
        if self.kind == "local":
            return public_path(self.spec)
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
            "splits": {name: known_rows(t) for name, t in self.splits.items()},
            **self.info,
        }
