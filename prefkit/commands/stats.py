"""`prefkit stats`."""

from __future__ import annotations

import click

from prefkit.commands.common import echo_json, target_options


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{x:,}"


def _dist_rows(title: str, dists: dict) -> list[str]:
    head = f"  {title:<18} {'mean':>8} {'p5':>8} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"
    lines = [head]
    for col, d in dists.items():
        if d is None:
            lines.append(f"  {col:<18} {'-':>8}")
            continue
        lines.append(
            f"  {col:<18} " + " ".join(f"{_fmt(d[k]):>8}" for k in ("mean", "p5", "p50", "p95", "p99", "max"))
        )
    return lines


def render(stats: dict) -> str:
    """The human table (one block per split)."""
    lines = []
    for name, s in stats["splits"].items():
        c = s.get("build_counts") or {}
        counts = (
            f" (build: read {_fmt(c.get('read'))}, dropped {_fmt(sum(c.get('dropped', {}).values()))}, "
            f"invalid {_fmt(sum(c.get('invalid', {}).values()))})"
            if c
            else ""
        )
        lines.append(f"split {name}: {_fmt(s['rows'])} rows, {s['format']}{counts}")
        if s.get("margin"):
            lines += _dist_rows("margin", {"margin": s["margin"]})
        lines += _dist_rows("characters", s["chars"])
        if s.get("tokens"):
            lines += _dist_rows("tokens (TRL rule)", s["tokens"])
        bias = s["length_bias"]
        text = f"  length bias: chosen longer in {_pct(bias['chosen_longer_chars'])} of rows (characters)"
        if "chosen_longer_tokens" in bias:
            text += f", {_pct(bias['chosen_longer_tokens'])} (tokens)"
        unit = "tokens" if "chosen_longer_tokens" in bias else "chars"
        ratio, corr = bias.get(f"median_ratio_{unit}"), bias.get(f"margin_length_spearman_{unit}")
        text += f"; median length ratio {'-' if ratio is None else f'{ratio:.2f}'}"
        text += f"; margin~length rank correlation {'-' if corr is None else f'{corr:+.2f}'}"
        lines.append(text)

        rm = s.get("rm_audit")
        if rm:
            ids = ", ".join(map(str, rm["disagree_ids"][:5])) + (" …" if rm["disagree"] > 5 else "")
            corr = "-" if rm["spearman"] is None else f"{rm['spearman']:+.2f}"
            lines.append(
                f"  reward model: agrees with the labels on {_pct(rm['agree_fraction'])} of {_fmt(rm['scored'])} "
                f"scored pairs; {_fmt(rm['disagree'])} disagree ({ids or 'none'}); rank correlation with the "
                f"source margin {corr}"
            )
        residue = s.get("template_residue_rows")
        lines.append(f"  template residue: {'-' if residue is None else _fmt(residue)} rows")
        if "system_share" in s:
            lines.append(
                f"  system prompt: {_pct(s['system_share'])} of rows, multi-turn: {_pct(s['multi_turn_share'])}"
            )
        lines.append("")
    return "\n".join(lines).rstrip()


def _pct(x) -> str:
    return "-" if x is None else f"{x:.1%}"


@click.command("stats", context_settings={"max_content_width": 100})
@click.argument("folder", type=click.Path())
@click.option("--split", "splits", multiple=True, help="Split(s) to describe (repeatable). Default: all.")
@target_options
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False),
    help="Write PNG histograms (margin, lengths) into this folder. Inside the set folder (e.g. OUT/plots) they "
    "are recorded in prefkit.json and embedded in the dataset card.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars (also none of the libraries').")
def command(
    folder, splits, tokenizer, chat_template, tokenizer_revision, trust_remote_code, plot_dir, as_json, quiet
):
    """Counts, margin distribution, lengths per column (tokens with --tokenizer), length bias and template
    residue of a set built by `prefkit build`.

    Token lengths are counted the way TRL's DPOTrainer counts them (prompt = its prompt ids, chosen/rejected =
    completion ids, prompt+answer = what max_length truncates). Without --tokenizer lengths are in characters;
    the set's own tokenizer (from `build --tokenizer`) is not loaded unless you pass it. Token statistics are
    recorded in the set (prefkit.json and its card), like --plot's.

    \b
    Examples:
      prefkit stats mix
      prefkit stats mix --tokenizer ./my-sft-model
      prefkit stats mix --tokenizer ./my-sft-model --plot mix/plots --json
    """
    from prefkit.output.stats import compute_stats, plot, public, record_stats
    from prefkit.progress import enabled

    target = None
    if tokenizer or chat_template:
        from prefkit.chat.target import load_target

        target = load_target(
            tokenizer, chat_template, revision=tokenizer_revision, trust_remote_code=trust_remote_code
        )
    stats = compute_stats(folder, target, list(splits) or None, progress=enabled(quiet))
    if plot_dir:
        paths = plot(stats, plot_dir)
        record_stats(folder, stats, paths)
        click.echo(f"wrote {len(paths)} plot(s) to {plot_dir}", err=True)
    elif (
        target is not None
    ):  # token statistics: recorded, so the local card shows them as the pushed one does
        record_stats(folder, stats, [])
    if as_json:
        echo_json(public(stats))
    else:
        click.echo(render(stats))
