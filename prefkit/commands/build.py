"""`prefkit build`: its flags are generated from :class:`prefkit.options.BuildOptions` (read from
:mod:`prefkit.commands.flags`, so that parsing them imports nothing heavy)."""

from __future__ import annotations

import click

from prefkit.commands.common import command_line, echo_json, json_option, token_option
from prefkit.commands.flags import group_options
from prefkit.commands.options import given


class SystemOption(click.Option):
    """``--system MODE [TEXT]``: after ``override`` or ``default`` the next argument is the text."""

    def add_to_parser(self, parser, ctx) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            opt = parser._long_opt.get(name) or parser._short_opt.get(name)
            if opt is None:
                continue
            original = opt.process

            def process(value, state, original=original):
                wants_text = isinstance(value, str) and value.strip().lower() in ("override", "default")
                if wants_text and state.rargs and not state.rargs[0].startswith("-"):
                    value = f"{value} {state.rargs.pop(0)}"
                original(value, state)

            opt.process = process


_SYSTEM = {"system": {"cls": SystemOption, "type": str}}


@click.command("build", context_settings={"max_content_width": 100})
@click.argument("sources", nargs=-1)
@click.option("-o", "--output", type=click.Path(), help="Output folder to write (required unless --dry-run).")
@click.option(
    "--recipe",
    type=click.Path(dir_okay=False),
    help="Read sources and options from a YAML/JSON recipe, or an earlier build's prefkit.json (rebuilds the same "
    "set); flags given here override it, SOURCES replace its sources. Its reflogps:/score:/verify:/generate: "
    "sections are those commands' (their --recipe), not read here.",
)
@group_options("sources")
@group_options("formats", overrides=_SYSTEM)
@group_options("filters")
@group_options("select")
@group_options("chat")
@group_options("output")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the output folder if it exists (only a folder prefkit wrote); files in it that prefkit did "
    "not write are kept (or the build is refused, naming them, when the new set writes the same path).",
)
@click.option("--dry-run", is_flag=True, help="Load, normalise and count, but write nothing.")
@token_option
@json_option
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary table.")
@click.pass_context
def command(ctx, sources, as_json, quiet, **flags):
    """Load preference data, normalise it to prompt/chosen/rejected messages, validate, filter, and write a clean set.

    SOURCES is a Hub dataset id (`namespace/name`) or a local file (.parquet, .jsonl, .json, .csv) or folder,
    optionally with a mixing weight `SOURCE:WEIGHT`: a fraction (0.5), a row count (2000) or an upsampling
    factor (2.0), drawn with --seed from the rows each source keeps.
    The shape is detected from the columns (`prefkit detect SOURCE` shows how); every row is kept, dropped with
    a reason or marked invalid with a reason, and the counts are in OUT/prefkit.json.

    \b
    Examples:
      prefkit build mlabonne/chatml-OpenHermes2.5-dpo-binarized-alpha --top 2000 -o hermes2k
      prefkit build HuggingFaceH4/ultrafeedback_binarized --split train_prefs --min-margin 1 -o uf
      prefkit build ./my_pairs.jsonl -o mine
      prefkit build Anthropic/hh-rlhf --data-dir helpful-base -o hh --json
      prefkit build data.parquet --prompt-col question --chosen-col good --rejected-col bad -o out
      prefkit build berkeley-nest/Nectar --pairs best-vs-worst -o nectar
      prefkit build argilla/dpo-mix-7k:0.5 Intel/orca_dpo_pairs:2000 ./ours.jsonl:1.0 --dedup --test-size 0.05 -o mix
      prefkit build --recipe mix.yaml -o mix                   # the same options as a file
      prefkit build --recipe mix/prefkit.json -o mix-again      # rebuild a set from its manifest
      prefkit build argilla/dpo-mix-7k --tokenizer ./my-sft-model --max-length 2048 -o mix
      prefkit build Intel/orca_dpo_pairs --chat-template chatml --output-format text -o orca-chatml
    """
    from prefkit.pipeline import build
    from prefkit.progress import enabled

    run = {name: flags.pop(name) for name in ("output", "recipe", "overwrite", "dry_run", "token")}
    if not run["output"] and not run["dry_run"]:
        raise click.UsageError("missing -o/--output (or pass --dry-run to only count)")
    if not sources and not run["recipe"]:
        raise click.UsageError("missing SOURCES (or pass --recipe FILE)")
    for warning in _section_warnings(run["recipe"]):
        click.echo(f"Warning: {warning}", err=True)
    result = build(
        list(sources) or None,
        progress=enabled(quiet),
        command=command_line(),
        **run,
        **given(ctx, flags),
    )
    text = result.manifest.get("tokenizer", {}).get("output_format") == "text"
    if text and not quiet and _text_starts_with_bos(result):
        click.echo(
            "Note: text output is for trainers that take strings. TRL >= 0.29 re-tokenizes text with the "
            "tokenizer's BOS and appends EOS (double BOS); give TRL the default messages output.",
            err=True,
        )
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)
    if as_json:
        echo_json(result.to_dict())
    if not quiet:
        click.echo(result.summary(), err=True)


def _section_warnings(recipe: str | None) -> list[str]:
    """What the other commands will refuse in the recipe's sections (``reflogps:`` …): build does not read them,
    but says so now rather than when that command runs after the build."""
    from prefkit.commands.flags import command_model
    from prefkit.errors import OptionError
    from prefkit.optionspec import RECIPE_SECTIONS, read_recipe

    if not recipe:
        return []
    try:
        data = read_recipe(recipe)
    except OptionError:
        return []  # the build reports it
    out = []
    for section in [s for s in RECIPE_SECTIONS if s in data]:
        try:
            command_model(section).from_recipe(data, f"recipe {recipe!r}")
        except OptionError as err:
            message, hint = err.text("python")
            out.append(f"{message} (`prefkit {section} --recipe` will refuse it: {hint})")
    return out


def _text_starts_with_bos(result) -> bool:
    """Whether the set's text rows start with the tokenizer's BOS token (then TRL, which adds its own, doubles it);
    a template that writes no BOS gets no note."""
    import pyarrow.parquet as pq

    bos = (result.manifest.get("tokenizer") or {}).get("bos_token")
    if not bos or result.output is None:
        return False
    for path in sorted((result.output / "data").glob("*.parquet")):
        prompts = pq.ParquetFile(path).read_row_group(0, columns=["prompt"]).column("prompt")
        if len(prompts):
            first = prompts[0].as_py()
            return isinstance(first, str) and first.startswith(bos)
    return False
