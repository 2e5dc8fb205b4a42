"""`prefkit report`: the page's counts are the manifest's, user text is escaped, rows are sampled to fit, the
evidence of each reject is there; in headless Chromium (tests/browser.py) the page renders without console
errors, paging and search work and the screenshot is not blank. The card's plots: shared bins, colours in the
legend, integer counts, the prompt+answer series and the max_length line."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape

from tests.browser import Browser, find_chromium
from tests.reflogps_data import run_cli
from tests.report_data import EVAL_ITEM, HOSTILE, THINK, TOOL_AND_REASONING_ROWS, build_mix

CHROMIUM = find_chromium()
needs_browser = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium: install Debian's `chromium` package (apt-get install -y chromium) or set PREFKIT_CHROMIUM",
)


@pytest.fixture(scope="module")
def mix(tmp_path_factory) -> Path:
    """The mix of tests/report_data.py: 99 rows read, near-duplicates, a contaminated prompt, residue."""
    root = tmp_path_factory.mktemp("mix")
    build_mix(root / "src", root / "set")
    return root


def page_counts(text: str) -> dict[str, int]:
    """``data-count`` cells of the page's flow table: {"read": n, "kept": n, "dropped:reason": n, ...}."""
    return {k: int(v.replace(",", "")) for k, v in re.findall(r'data-count="([^"]+)">([\d,]+)<', text)}


def manifest_counts(manifest: dict, split: str = "train") -> dict[str, int]:
    c = manifest["splits"][split]
    out = {"read": c["read"], "kept": c["kept"]}
    for stage in ("dropped", "invalid", "added"):
        out.update({f"{stage}:{k}": v for k, v in (c.get(stage) or {}).items()})
    return out


def test_page_has_the_manifests_counts_escaped_text_and_the_evidence(mix):
    from prefkit.report import write_report

    result = write_report(mix / "set", mix / "page.html", eval_sets=(str(mix / "src" / "my_eval.jsonl"),))
    text = result.path.read_text()
    manifest = json.loads((mix / "set" / "prefkit.json").read_text())
    assert page_counts(text) == manifest_counts(manifest)
    assert result.rows_shown == {"train": (87, 87)}
    # user text is escaped: the hostile row is on the page as text, never as markup
    assert HOSTILE not in text and str(escape(HOSTILE)) in text
    # self-contained: nothing is fetched
    assert not re.search(r'(src|href)="(https?:)?//', text) and "<script src" not in text
    # evidence: the residue marker, the near-duplicate's kept row, the eval item
    assert '<mark class="hit">&lt;|im_start|&gt;assistant' in text
    assert (
        text.count("near-duplicate of the kept row")
        == manifest["splits"]["train"]["dropped"]["near_duplicate"]
    )
    assert '<mark class="del">ZEBRA</mark>' in text
    assert str(escape(EVAL_ITEM.split(",")[0])) in text
    # provenance: the command, both sources and the recipe
    assert manifest["command"] is None or str(escape(manifest["command"])) in text
    assert "flat.jsonl" in text and "prefkit_recipe" in text


def test_rows_are_sampled_to_the_size_limit_and_the_sampling_is_stated(mix, tmp_path):
    from prefkit.report import write_report

    small = write_report(mix / "set", tmp_path / "a.html", rows=30, seed=1)
    assert small.rows_shown == {"train": (30, 87)}
    text = small.path.read_text()
    assert "30 of 87 kept rows, a uniform random sample" in text and "seed 1" in text
    assert "20 per page; search looks through these 30." in text
    assert text.count('class="row kept-row"') == 30
    again = write_report(mix / "set", tmp_path / "b.html", rows=30, seed=1)
    ids = re.findall(r'kept-row" data-id="([^"]+)"', text)
    assert ids == re.findall(r'kept-row" data-id="([^"]+)"', again.path.read_text())
    capped = write_report(mix / "set", tmp_path / "c.html", max_bytes=small.bytes)
    assert capped.bytes <= small.bytes and capped.rows_shown["train"][0] < 87


def test_cli_writes_report_html_in_the_set_and_explains_a_wrong_folder(mix, tmp_path, capsys):
    folder = tmp_path / "set"
    shutil.copytree(mix / "set", folder)
    code, out, _ = run_cli(["report", str(folder), "--rows", "5"], capsys)
    assert code == 0 and (folder / "report.html").is_file() and "5 of 87 kept rows" in out
    code, _, err = run_cli(["report", str(tmp_path / "nope")], capsys)
    assert code == 1 and "Error:" in err and "Hint:" in err


def test_kept_rows_show_system_tool_calls_tool_results_and_folded_reasoning(tmp_path):
    from prefkit import build
    from prefkit.report import write_report

    source = tmp_path / "tools.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in TOOL_AND_REASONING_ROWS))
    build(str(source), tmp_path / "set")
    text = write_report(tmp_path / "set").path.read_text()
    assert '<div class="msg system"><span class="role">system</span>You set timers.</div>' in text
    calls = re.search(r'<pre class="tool-calls">tool calls: (.*?)</pre>', text, re.S)
    assert calls is not None
    assert json.loads(html.unescape(calls.group(1)))[0]["function"]["arguments"] == {"duration": 600}
    assert '<div class="msg tool"><span class="role">tool · start_timer</span>600</div>' in text
    assert (
        f'<details class="reasoning"><summary>reasoning ({len(THINK)} characters)</summary>{THINK}</details>'
        in text
    )
    assert "&#34;description&#34;: &#34;Start a timer.&#34;" in text  # the row's tools, as JSON


def test_card_length_plot_shares_bins_names_colours_counts_rows_and_draws_max_length():
    from matplotlib.colors import to_hex

    from prefkit.output import charts

    rng = np.random.default_rng(0)
    lengths = {k: rng.integers(5, 300, 200) for k in ("prompt", "chosen", "rejected")}
    lengths["prompt+chosen"] = lengths["prompt"] + lengths["chosen"]
    lengths["prompt+rejected"] = lengths["prompt"] + lengths["rejected"]
    fig = charts.lengths_figure(lengths, "tokens", "t", max_length=400)
    answers, totals = fig.axes
    legend = [t.get_text() for t in answers.get_legend().get_texts()]
    assert legend == ["prompt", "chosen", "rejected"]
    assert [t.get_text() for t in totals.get_legend().get_texts()][-1] == "max_length = 400"
    # one set of bins for every series of a panel: each outline steps on the same edges
    steps = [np.unique(p.get_xy()[:, 0]) for p in answers.patches]
    edges = np.unique(np.concatenate(steps))
    assert all(np.isin(s, edges).all() for s in steps) and len(steps) == 3
    assert len(edges) <= charts.BINS + 2
    colours = {to_hex(p.get_edgecolor()) for p in answers.patches}
    assert len(colours) == 3  # distinct, and the legend's
    assert all(float(t).is_integer() for t in answers.get_yticks())
    assert any(line.get_xdata()[0] == 400 for line in totals.get_lines())


@needs_browser
def test_page_in_headless_chromium_counts_paging_search_and_screenshot(mix, tmp_path):
    from PIL import Image

    from prefkit.report import write_report

    page = write_report(mix / "set", tmp_path / "page.html", rows=50, seed=0).path
    manifest = json.loads((mix / "set" / "prefkit.json").read_text())
    with Browser(CHROMIUM) as browser:
        browser.open(page)
        assert browser.errors() == []
        shown = browser.evaluate(
            "Object.fromEntries([...document.querySelectorAll('[data-count]')]"
            ".map(e => [e.dataset.count, Number(e.textContent.replace(/,/g, ''))]))"
        )
        assert shown == manifest_counts(manifest)
        assert browser.evaluate("window.__pwned === undefined")  # the hostile row did not run
        visible = "[...document.querySelectorAll('.kept-row')].filter(r => r.offsetParent !== null)"
        info = "document.querySelector('.tools .info')"
        assert browser.evaluate(f"{visible}.length") == 20
        assert browser.evaluate(f"{info}.dataset.page") == "1"
        first = browser.evaluate(f"{visible}[0].dataset.id")
        browser.evaluate("document.querySelector('.tools button.next').click()")
        assert browser.evaluate(f"{info}.dataset.page") == "2"
        assert browser.evaluate(f"{visible}.length") == 20
        assert browser.evaluate(f"{visible}[0].dataset.id") != first
        browser.evaluate("document.querySelector('.tools button.next').click()")
        assert browser.evaluate(f"{visible}.length") == 10  # 50 rows: 20 + 20 + 10
        assert browser.evaluate("document.querySelector('.tools button.next').disabled")
        # search: a word of one row finds that row; nonsense finds none
        word = browser.evaluate(
            "document.querySelector('.kept-row[data-id=\"' + "
            f"{json.dumps(first)}"
            + " + '\"] .answer.chosen .msg').textContent.trim().split(/\\s+/).slice(-3).join(' ')"
        )
        search = (
            "(q => { const i = document.querySelector('.tools input'); i.value = q; "
            f"i.dispatchEvent(new Event('input')); return {info}.dataset.matching; }})"
        )
        matching = int(browser.evaluate(f"{search}({json.dumps(word)})"))
        assert 1 <= matching < 50
        assert first in browser.evaluate(f"{visible}.map(r => r.dataset.id)")
        assert browser.evaluate(f"{search}('no such text anywhere 1f9a')") == "0"
        assert browser.evaluate(f"{visible}.length") == 0
        assert browser.errors() == []
        shot = browser.screenshot(tmp_path / "page.png")
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[:2] == (900, 1280)
    assert image.std() > 20 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # not blank


@pytest.mark.slow
@needs_browser
def test_scored_set_with_reference_logps_shows_the_audit_and_the_reference_charts(mix, tmp_path):
    import prefkit
    from prefkit.report import write_report
    from tests.tinymodel import tiny_model_path

    folder = tmp_path / "set"
    shutil.copytree(mix / "set", folder)
    prefkit.score(folder, str(tiny_model_path(reward=True)), max_length=512, device="cpu")
    prefkit.reflogps(folder, str(tiny_model_path()), max_length=512, device="cpu")
    page = write_report(folder).path
    manifest = json.loads((folder / "prefkit.json").read_text())
    with Browser(CHROMIUM) as browser:
        browser.open(page)
        assert browser.errors() == []
        charts = browser.evaluate("[...document.querySelectorAll('[data-chart]')].map(e => e.dataset.chart)")
        assert {"margin", "lengths", "length_bias", "rm", "ref", "ref_margin"} <= set(charts)
        text = browser.evaluate("document.body.innerText")
    audit = manifest["stats"]["splits"]["train"]["rm_audit"] if "rm_audit" in json.dumps(manifest) else None
    assert "Reward model: agrees with the labels" in text
    assert "Reference log-probs (prefkit reflogps)" in text
    if audit:
        assert f"{audit['disagree']:,} disagree" in text


def test_push_publishes_the_page_next_to_the_card_which_links_to_it(hub, mix, tmp_path):
    from huggingface_hub import DatasetCard

    from prefkit.publish.hub import push
    from prefkit.report import write_report

    folder = tmp_path / "set"
    shutil.copytree(mix / "set", folder)
    write_report(folder, tmp_path / "elsewhere.html")  # outside the set: not part of it
    assert "report" not in json.loads((folder / "prefkit.json").read_text())
    page = write_report(folder, rows=10).path
    assert json.loads((folder / "prefkit.json").read_text())["report"]["path"] == "report.html"
    assert "[report.html](report.html)" in (folder / "README.md").read_text()
    repo = hub.unique_id("me/with-report")
    result = push(folder, repo, license="mit")
    assert "report.html" in [f["path"] for f in result.files]
    assert hub.read_file(repo, "report.html") == page.read_bytes()
    card = DatasetCard(hub.read_file(repo, "README.md").decode())
    assert "[report.html](report.html)" in card.text
    # the page shows the manifest as published: no absolute paths of this machine
    assert str(tmp_path) not in page.read_text()
