"""Options and rendering shared by several commands."""

from __future__ import annotations

import json
import shlex
import sys

import click

from prefkit.filters import DROP_REASONS, INVALID_REASONS


def source_options(f):
    """--split/--revision/--config/--data-dir: where in a source to read."""
    for opt in reversed(
        [
            click.option(
                "--split", "splits", multiple=True, help="Split(s) to read (repeatable). Default: all splits."
            ),
            click.option("--revision", help="Hub branch, tag or commit sha (recorded as the resolved sha)."),
            click.option("--config", help="Hub dataset config (subset) name."),
            click.option(
                "--data-dir",
                help="Folder inside the repo/folder to read, e.g. `helpful-base` for Anthropic/hh-rlhf.",
            ),
        ]
    ):
        f = opt(f)
    return f


def column_options(f):
    """--format and the column overrides."""
    from prefkit.formats import FAMILIES

    for opt in reversed(
        [
            click.option(
                "--format",
                "format_",
                type=click.Choice(list(FAMILIES)),
                help="Force a dataset shape instead of detecting it.",
            ),
            click.option("--prompt-col", help="Column holding the prompt (string or messages)."),
            click.option("--chosen-col", help="Column holding the chosen answer."),
            click.option("--rejected-col", help="Column holding the rejected answer."),
            click.option("--system-col", help="Column holding a system prompt."),
            click.option(
                "--margin-col",
                help="Numeric column to use as the margin (default: delta_score or chosen - rejected score).",
            ),
        ]
    ):
        f = opt(f)
    return f


def command_line() -> str:
    """The command as typed, for the manifest (``prefkit`` + arguments)."""
    return shlex.join(["prefkit", *sys.argv[1:]])


def echo_json(obj: dict) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


#: counts that are not places rows end in: rows added (read + added = kept + dropped + invalid), and flags
EXTRA_COUNTS = {
    "extra_pairs": "pairs beyond one per source row (ranked/rated sets are binarised)",
    "upsampled": "extra copies drawn by a source weight above its size",
    "axes_disagree": "PKU-SafeRLHF rows whose better and safer labels disagree",
}


def render_counts(splits: dict[str, dict], seconds: float | None = None, output: str | None = None) -> None:
    """The human summary: read / kept / dropped / invalid per split, then the reasons (stderr)."""
    err = lambda s="": click.echo(s, err=True)  # noqa: E731
    header = f"{'split':<16} {'read':>9} {'kept':>9} {'dropped':>9} {'invalid':>9}"
    err(header)
    err("-" * len(header))
    for name, c in splits.items():
        err(
            f"{name:<16} {c['read']:>9,} {c['kept']:>9,} {sum(c['dropped'].values()):>9,} {sum(c['invalid'].values()):>9,}"
        )
    reasons: dict[tuple[str, str], int] = {}
    for c in splits.values():
        for stage in ("dropped", "invalid", "added", "flags"):
            for r, n in c.get(stage, {}).items():
                reasons[(stage, r)] = reasons.get((stage, r), 0) + n
    if reasons:
        err()
        for (stage, r), n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            glossary = {"dropped": DROP_REASONS, "invalid": INVALID_REASONS}.get(stage, EXTRA_COUNTS)
            err(f"  {stage:<8} {r:<28} {n:>9,}  {glossary.get(r, '')}")
    tail = []
    if output:
        tail.append(f"wrote {output}")
    if seconds is not None:
        tail.append(f"in {seconds:.1f}s")
    if tail:
        err()
        err(" ".join(tail))


def target_options(f):
    """--tokenizer / --chat-template / --tokenizer-revision / --trust-remote-code: the target model's tokenizer."""
    for opt in reversed(
        [
            click.option(
                "--tokenizer",
                metavar="MODEL_OR_PATH",
                help="The target model's tokenizer: a local folder or a Hub id (only tokenizer files are read).",
            ),
            click.option(
                "--chat-template",
                metavar="NAME|FILE",
                help="Chat template: a built-in name (chatml, llama-3, mistral, zephyr, gemma, phi-3, qwen) or a "
                "Jinja file; replaces the tokenizer's own. Needed when the tokenizer has none.",
            ),
            click.option("--tokenizer-revision", help="Hub branch, tag or commit of --tokenizer."),
            click.option(
                "--trust-remote-code", is_flag=True, help="Allow a tokenizer that needs custom code."
            ),
        ]
    ):
        f = opt(f)
    return f
