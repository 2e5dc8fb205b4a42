"""`prefkit report`: one self-contained HTML page to look at a built set.

Per split: the flow of rows (read → kept / dropped by reason / invalid by reason, per source), the rejects by
reason with their evidence, a sample of the kept rows as conversations (searchable and paged in the page), the
margin, length, length-bias, reward-model and reference log-prob charts, and the manifest's provenance.

Who does what: the page is rendered by Jinja2 with autoescape (every value from the set is escaped), the charts
are matplotlib figures as inline SVG (:mod:`prefkit.output.charts`, the same figures as the card's PNG plots),
and a small inline script pages and searches the rows already in the page. Nothing is loaded from the network.
Data files: ``prefkit/report/templates/report.html.jinja``, ``report.css``, ``report.js``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefkit._callable import callable_package
from prefkit.errors import OptionError, option
from prefkit.output import read_output, refresh_card, require_trl_shape, write_manifest
from prefkit.publish.public import public_manifest
from prefkit.report.build import build_pages, render_page
from prefkit.report.options import ReportOptions
from prefkit.store.manifest_model import Report
from prefkit.store.writer import write_text

#: the page's size limit: rows are sampled down until the page fits (docs/report.md)
MAX_BYTES = 10 * 2**20
REPORT_NAME = "report.html"


@dataclass
class ReportResult:
    """What `prefkit report` wrote: the page, its size in bytes, and per split the kept rows shown / kept."""

    path: Path
    bytes: int
    rows_shown: dict[str, tuple[int, int]]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready object: ``path``, ``bytes``, ``rows_shown`` per split (``shown``, ``kept``)."""
        shown = {name: {"shown": a, "kept": b} for name, (a, b) in self.rows_shown.items()}
        return {"path": str(self.path), "bytes": self.bytes, "rows_shown": shown}

    def summary(self) -> str:
        """The line `prefkit report` prints."""
        shown = ", ".join(f"{name} {a:,} of {b:,} kept rows" for name, (a, b) in self.rows_shown.items())
        return f"wrote {self.path} ({self.bytes / 2**20:.1f} MB; {shown or 'no rows'})"


def report(
    folder: str | Path,
    output: str | Path | None = None,
    options: ReportOptions | None = None,
    **keywords: Any,
) -> ReportResult:
    """`prefkit report` as a function, with its flags as keywords (or ``options``,
    :class:`~prefkit.report.options.ReportOptions`; keywords win): the page of the set at ``folder`` written to
    ``output`` (default ``folder/report.html``); ``rows``, ``examples``, ``eval_set``, ``seed`` as in
    :func:`write_report`; ``tokenizer``/``chat_template`` (with ``tokenizer_revision``, ``trust_remote_code``)
    count lengths in tokens by TRL's rule (:func:`prefkit.chat.target.load_target`). See :func:`write_report` for
    the errors."""

    opts = ReportOptions.create(options, **keywords)
    for path in opts.eval_set:
        if not Path(path).is_file():
            raise OptionError(
                f"{option('eval_set')} {str(path)!r} is not a file",
                "give the local file of an eval set the build decontaminated against (Hub eval sets are not read)",
            )
    return write_report(
        folder,
        output,
        rows=opts.rows,
        examples=opts.examples,
        seed=opts.seed,
        target=opts.load(),
        eval_sets=opts.eval_set,
    )


def write_report(
    folder: str | Path,
    html: str | Path | None = None,
    *,
    rows: int = 1000,
    examples: int = 20,
    seed: int = 0,
    target: Any = None,
    eval_sets: tuple[str, ...] = (),
    max_bytes: int = MAX_BYTES,
) -> ReportResult:
    """Write the report page of the set at ``folder`` to ``html`` (default ``folder/report.html``).

    ``rows``: kept rows shown per split (a uniform random sample with ``seed`` when the split has more);
    ``examples``: rejected rows shown per reason (sampled the same way); ``target``: a tokenizer target
    (:func:`prefkit.chat.target.load_target`) to count lengths in tokens by TRL's rule, else characters;
    ``eval_sets``: local files of the eval sets the build decontaminated against (matched by name; else the
    path the manifest records), to show the contaminating item next to the row. The
    sample is halved until the page is at most ``max_bytes``. Raises :class:`~prefkit.errors.OutputError` for a
    folder that is not a set or a set exported in another trainer's shape, ``DependencyError`` without
    matplotlib.
    """


    out = read_output(folder)
    require_trl_shape(out, "report")
    path = Path(html) if html else out.path / REPORT_NAME
    # the page shows the manifest as `push` publishes it: no machine paths, tokens or local commands
    view = replace(out, manifest=public_manifest(out.manifest))
    pages = build_pages(
        view, rows=rows, examples=examples, seed=seed, target=target, eval_sets=tuple(eval_sets)
    )
    while True:
        text = render_page(view, pages, seed)
        size = len(text.encode("utf-8"))
        if size <= max_bytes or rows <= 10:
            break
        rows //= 2
        for page in pages:
            page.kept = page.kept[::2] if len(page.kept) > rows else page.kept
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)
    result = ReportResult(path, size, {p.name: (len(p.kept), p.kept_total) for p in pages})
    record_report(out, result, seed)
    return result


def record_report(out: Any, result: ReportResult, seed: int) -> None:
    """Record a page written inside the set folder in ``prefkit.json`` (``report``: its path relative to the
    folder, rows shown per split, seed) and rewrite the card, which then links to it (`push` uploads it)."""


    try:
        relative = result.path.resolve().relative_to(out.path.resolve()).as_posix()
    except ValueError:
        return  # a page written elsewhere is not part of the set
    manifest = out.typed_manifest
    manifest.report = Report(
        path=relative,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        rows_shown={name: {"shown": a, "kept": b} for name, (a, b) in result.rows_shown.items()},
        seed=seed,
    )
    write_manifest(out.path, manifest)
    refresh_card(out.path)


callable_package(__name__, "prefkit.report:report")
