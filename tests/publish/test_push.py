"""`prefkit push` against the local fake Hub (tests/hubserver.py), with the real `datasets`/`huggingface_hub`."""

from __future__ import annotations

import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import DatasetCard, HfApi

from prefkit import build
from prefkit.cli import main
from prefkit.errors import HubError
from prefkit.output.licences import license_rank, most_restrictive
from prefkit.publish.hub import push
from tests.hubserver import validate_card
from tests.tinymodel import tiny_model_path


def train_shard(built):
    """The set's one train shard (named by its content: ``train-00000-of-00001-<digest>.parquet``)."""
    (path,) = (built / "data").glob("train-00000-of-00001-*.parquet")
    return path


def shard_path(built):
    return f"data/{train_shard(built).name}"


def flat_rows(n: int, tag: str) -> list[dict]:
    return [
        {
            "question": f"{tag} question {i}?",
            "chosen": f"good answer {i} " * (i % 3 + 1),
            "rejected": f"bad {i}",
            "delta_score": float(i + 1),
        }
        for i in range(n)
    ] + [{"question": f"{tag} tie", "chosen": "same", "rejected": "other", "delta_score": 0.0}]


def hub_source(hub, license: str | None, n: int = 6, tag: str = "a") -> str:
    """A source dataset on the fake Hub with ``license`` in its card."""
    repo = hub.unique_id(f"src/{tag}")
    card = f"---\nlicense: {license}\n---\n# source\n" if license else "# source\n"
    hub.create_dataset_repo(repo, files={"README.md": card})
    hub.add_datasetdict(repo, {"train": pa.Table.from_pylist(flat_rows(n, tag))})
    return repo


@pytest.fixture
def built(hub, tmp_path):
    """An output folder built from one Hub source (apache-2.0) with prefkit.build."""
    src = hub_source(hub, "apache-2.0")
    out = tmp_path / "out"
    build(src, out, command=f"prefkit build {src} -o out")
    return out


def api() -> HfApi:
    import os

    return HfApi(endpoint=os.environ["HF_ENDPOINT"])


def card_meta(hub, repo: str, revision: str = "main") -> tuple[dict, str]:
    text = hub.read_file(repo, "README.md", revision).decode()
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def commits(hub, repo: str) -> int:
    return len(hub.get_repo(repo).commits)


# ------------------------------------------------------------------------------------------------ round trip


def test_push_then_load_dataset_gives_identical_rows_and_plain_types(hub, built):
    repo = hub.unique_id("me/pushed")
    result = push(built, repo)
    assert result.commit_sha == hub.get_repo(repo).refs["main"] and result.created_repo
    assert commits(hub, repo) == 2  # the repo's initial commit + exactly one push commit
    assert hub.list_files(repo) == [".gitattributes", "README.md", shard_path(built), "prefkit.json"]
    local = pq.read_table(train_shard(built))
    ds = datasets.load_dataset(repo, split="train")
    assert ds.to_list() == local.to_pylist()
    assert ds.features == datasets.Features.from_arrow_schema(local.schema.remove_metadata())
    assert "large" not in str(ds.features) and "large" not in str(ds.data.schema)
    assert ds.features["chosen"] == datasets.List(
        {"role": datasets.Value("string"), "content": datasets.Value("string")}
    )
    pushed = json.loads(hub.read_file(repo, "prefkit.json"))
    assert pushed.pop("push") == {"files": [shard_path(built)]}  # what a later push may delete
    assert pushed == json.loads((built / "prefkit.json").read_text())


def test_card_metadata_and_story(hub, built):
    repo = hub.unique_id("me/card")
    push(built, repo)
    text = hub.read_file(repo, "README.md").decode()
    validate_card(DatasetCard(text))  # the Hub's metadata check (license ids, task categories, configs)
    meta, body = card_meta(hub, repo)
    manifest = json.loads((built / "prefkit.json").read_text())
    src = manifest["sources"][0]
    assert meta["license"] == "apache-2.0"
    assert {"dpo", "preference", "rlhf"} <= set(meta["tags"])
    assert meta["task_categories"] == ["text-generation"]
    assert meta["source_datasets"] == [src["id"]]
    assert meta["size_categories"] == ["n<1K"]
    assert meta["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": [shard_path(built)]}]}
    ]
    assert meta["dataset_info"]["splits"][0]["num_examples"] == manifest["splits"]["train"]["kept"]
    assert f'load_dataset("{repo}")' in body
    assert "from trl import DPOConfig, DPOTrainer" in body and "PrecomputedRefDPOTrainer" in body
    assert manifest["command"] in body and src["sha"] in body
    assert "| train | 7 | 6 | 1 | 0 |" in body and "`tie`" in body  # counts and the drop reason
    assert "## Statistics" in body and "Reference model" not in body


def test_card_with_reference_logps_uses_precomputed_trainer(hub, built):
    table = pq.read_table(train_shard(built))
    n = table.num_rows
    for name, typ in [
        ("ref_chosen_logps", pa.float32()),
        ("ref_rejected_logps", pa.float32()),
        ("chosen_tokens", pa.int32()),
        ("rejected_tokens", pa.int32()),
    ]:
        table = table.append_column(
            name, pa.array([-float(i) if "logps" in name else i for i in range(n)], typ)
        )
    from prefkit.output import write_manifest, write_parquet

    write_parquet(table, train_shard(built))
    manifest = json.loads((built / "prefkit.json").read_text())
    manifest["reflogps"] = {
        "model": "me/tiny-sft",
        "revision": "abc123",
        "dtype": "float32",
        "max_length": 512,
        "weights_sha256": "f" * 64,
        "command": "prefkit reflogps out --model me/tiny-sft",
        "totals": {"scored": n, "truncated": 0},
    }
    write_manifest(built, manifest)
    repo = hub.unique_id("me/scored")
    push(built, repo)
    meta, body = card_meta(hub, repo)
    names = [f["name"] for f in meta["dataset_info"]["features"]]
    assert names[-4:] == ["ref_chosen_logps", "ref_rejected_logps", "chosen_tokens", "rejected_tokens"]
    assert "from prefkit.trl import PrecomputedRefDPOTrainer" in body and 'model="me/tiny-sft"' in body
    assert "max_length=512" in body and "## Reference model" in body and "f" * 64 in body
    assert "prefkit reflogps out --model me/tiny-sft" in body
    ds = datasets.load_dataset(repo, split="train")
    assert ds.features["ref_chosen_logps"] == datasets.Value("float32")
    assert ds["ref_rejected_logps"] == pytest.approx([-float(i) for i in range(n)])


# ------------------------------------------------------------------------------------------------ re-push, branch, PR


def test_repush_replaces_stale_shards_and_keeps_user_metadata(hub, built, capsys):
    """A push deletes what an earlier prefkit push recorded and this one does not write; files no push recorded
    (a user's hand-made shard, a figure) are kept with a warning, deleted only with delete_unrecorded."""
    repo = hub.unique_id("me/repush")
    earlier = built.parent / "earlier"
    build(json.loads((built / "prefkit.json").read_text())["sources"][0]["id"], earlier, top=3)
    push(earlier, repo, include_rejects=True)
    first = sorted(f for f in hub.list_files(repo) if f.startswith(("data/", "rejects/")))
    meta, body = card_meta(hub, repo)
    meta["language"], meta["pretty_name"], meta["tags"] = ["en"], "My set", [*meta["tags"], "mine"]
    mine = "data/train-00001-of-00002.parquet"  # named like a shard, but no prefkit push wrote it
    hub.add_commit(
        repo,
        {
            mine: b"PAR1 old",
            "plots/figure1.png": b"png",
            "notes.md": "kept",
            "README.md": f"---\n{yaml.safe_dump(meta)}---\n{body}",
        },
    )
    before = commits(hub, repo)
    with pytest.warns(UserWarning, match="no prefkit push recorded"):
        result = push(built, repo, message="second push")
    assert commits(hub, repo) == before + 1
    assert first == [f"data/{train_shard(earlier).name}", "rejects/train.parquet"]
    assert result.deleted == first
    assert result.unrecorded == [mine, "plots/figure1.png"]
    files = hub.list_files(repo)
    assert mine in files and "plots/figure1.png" in files and "notes.md" in files
    assert not set(first) & set(files)
    meta, _ = card_meta(hub, repo)
    assert meta["language"] == ["en"] and meta["pretty_name"] == "My set" and "mine" in meta["tags"]
    assert hub.get_repo(repo).resolve("main").title == "second push"
    assert json.loads(hub.read_file(repo, "prefkit.json"))["push"]["files"] == [shard_path(built)]
    result = push(built, repo, delete_unrecorded=True, dry_run=True)
    assert result.deleted == [mine, "plots/figure1.png"]
    capsys.readouterr()
    main(["push", str(built), repo, "--dry-run"])
    printed = capsys.readouterr().out
    assert f"keep    {mine}" in printed and "delete " not in printed


def test_include_rejects(hub, built):
    repo = hub.unique_id("me/rejects")
    push(built, repo, include_rejects=True)
    assert "rejects/train.parquet" in hub.list_files(repo)
    assert datasets.load_dataset(repo, split="train").num_rows == 6  # the card's configs keep rejects out
    _, body = card_meta(hub, repo)
    assert "rejects/<split>.parquet" in body


def test_branch_and_pull_request(hub, built):
    repo = hub.unique_id("me/branches")
    hub.create_dataset_repo(repo, files={"README.md": "# placeholder\n"})
    result = push(built, repo, revision="v2")
    assert result.revision == "v2" and shard_path(built) not in hub.list_files(repo)
    assert shard_path(built) in hub.list_files(repo, revision="v2")
    assert datasets.load_dataset(repo, split="train", revision="v2").num_rows == 6
    _, body = card_meta(hub, repo, "v2")
    assert 'revision="v2"' in body
    pr = push(built, repo, create_pr=True)
    assert pr.pr_url.endswith("/discussions/1")
    assert shard_path(built) in hub.list_files(repo, revision="refs/pr/1")
    assert shard_path(built) not in hub.list_files(repo)


def test_private(hub, built):
    repo = hub.unique_id("prefkit-test/private")
    result = push(built, repo, private=True)
    assert result.private is True and hub.get_repo(repo).private
    with pytest.raises(datasets.exceptions.DatasetNotFoundError, match="doesn't exist on the Hub"):
        datasets.load_dataset(repo, token=False)
    push(built, repo)  # a re-push leaves it private
    assert hub.get_repo(repo).private
    public = hub.unique_id("me/public")
    push(built, public)
    with pytest.raises(HubError, match="already exists and is public") as err:
        push(built, public, private=True)
    assert "settings" in err.value.hint


# ------------------------------------------------------------------------------------------------ licences


def test_most_restrictive_licence_wins_with_a_warning(hub, tmp_path):
    a, b = hub_source(hub, "apache-2.0", tag="a"), hub_source(hub, "cc-by-nc-4.0", tag="b")
    out = tmp_path / "mix"
    build([a, b], out)
    with pytest.warns(UserWarning, match="different licences") as rec:
        result = push(out, hub.unique_id("me/mixed"), dry_run=True)
    assert result.license == "cc-by-nc-4.0" and any("most restrictive" in str(w.message) for w in rec)
    assert f"| `{b}` |" in result.card and "| cc-by-nc-4.0 |" in result.card
    with pytest.warns(UserWarning, match="less restrictive"):
        assert push(out, hub.unique_id("me/mixed"), dry_run=True, license="mit").license == "mit"


def test_unknown_licence_for_local_source(hub, tmp_path):
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in flat_rows(3, "l")))
    build(src, tmp_path / "out")
    with pytest.warns(UserWarning, match="licence unknown"):
        result = push(tmp_path / "out", hub.unique_id("me/local"))
    assert result.license == "unknown"
    meta, _ = card_meta(hub, result.repo_id)
    assert meta["license"] == "unknown" and "source_datasets" not in meta


def test_licence_ranking():
    assert most_restrictive(["mit", "cc-by-sa-4.0", "apache-2.0"]) == "cc-by-sa-4.0"
    assert most_restrictive(["cc0-1.0", "llama3.1"]) == "llama3.1"
    assert most_restrictive(["cc-by-4.0", None]) == "unknown"
    assert most_restrictive([]) == "unknown"
    assert license_rank("cc-by-nc-nd-4.0") > license_rank("cc-by-nc-4.0") > license_rank("openrail")
    assert license_rank("something-new") == license_rank("other")


# ------------------------------------------------------------------------------------------------ dry run


def test_dry_run_commits_nothing(hub, built, capsys):
    repo = hub.unique_id("me/dry")
    seen = len(hub.requests)
    result = push(built, repo, dry_run=True)
    assert result.dry_run and result.created_repo and result.commit_sha is None
    assert [f["path"] for f in result.files] == [shard_path(built), "prefkit.json", "README.md"]
    assert all(method in ("GET", "HEAD") for method, _ in hub.requests[seen:])
    assert ("dataset", repo) not in hub.repos
    validate_card(DatasetCard(result.card))
    main(["push", str(built), repo, "--dry-run"])
    out = capsys.readouterr().out
    assert "would push to" in out and shard_path(built) in out and "--- README.md ---" in out
    assert "license: apache-2.0" in out


def test_options_and_keywords_are_one_push(hub, built):
    """``PushOptions`` says what the keywords say; keywords given with it win."""
    from prefkit.publish.options import PushOptions

    repo = hub.unique_id("me/options")
    by_keywords = push(built, repo, dry_run=True, license="mit", include_rejects=True)
    by_options = push(built, repo, PushOptions(dry_run=True, license="mit", include_rejects=True))
    assert by_options == by_keywords
    assert push(built, repo, PushOptions(dry_run=True, license="mit"), license="cc-by-4.0").license == "cc-by-4.0"


def test_dry_run_without_token(hub, built, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    result = push(built, hub.unique_id("me/anon"), dry_run=True)
    assert result.files and result.license == "apache-2.0"


# ------------------------------------------------------------------------------------------------ errors


def test_no_token(hub, built, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match="no Hugging Face token") as err:
        push(built, "me/x")
    assert "hf auth login" in err.value.hint and "HF_TOKEN" in err.value.hint
    with pytest.raises(SystemExit, match=r"^1$") as exit_:
        main(["push", str(built), "me/x"])
    assert exit_.value.code == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith("Error: no Hugging Face token") and "Hint: log in with `hf auth login`" in stderr


def test_bad_token(hub, built):
    with pytest.raises(HubError, match="did not accept your token") as err:
        push(built, hub.unique_id("me/bad"), token="hf_not_a_real_token")
    assert "hf auth login" in err.value.hint


def test_no_write_access(hub, built):
    with pytest.raises(HubError, match="cannot create datasets under 'someone-else'"):
        push(built, hub.unique_id("someone-else/set"))
    theirs = hub.unique_id("ns/theirs")
    hub.create_dataset_repo(theirs, files={"README.md": "# theirs\n"})
    head = hub.get_repo(theirs).refs["main"]
    with pytest.raises(HubError, match="no write access") as err:
        push(built, theirs)
    assert "--create-pr" in err.value.hint and hub.get_repo(theirs).refs["main"] == head
    assert push(built, theirs, create_pr=True).pr_url  # a pull request needs only read access


def test_repo_exists_with_another_type(hub, built):
    repo = hub.unique_id("me/model")
    hub.create_dataset_repo(repo, files={"config.json": "{}"}, repo_type="model")
    with pytest.raises(HubError, match="is a model repo"):
        push(built, repo, dry_run=True)
    with pytest.raises(HubError, match="is a model repo") as err:
        push(built, repo)
    assert "hf repos create" in err.value.hint and ("dataset", repo) not in hub.repos
    api().create_repo(repo, repo_type="dataset")  # created on purpose: then pushing is fine
    assert push(built, repo).commit_sha


def test_network_failure_is_retried(hub, built):
    repo = hub.unique_id("me/flaky")
    hub.fail_next(f"/api/datasets/{repo}/commit/", times=1, status="drop")
    hub.fail_next(f"/api/datasets/{repo}/commit/", times=1, status=503)
    result = push(built, repo, backoff=0)
    assert result.commit_sha and commits(hub, repo) == 2
    assert datasets.load_dataset(repo, split="train").num_rows == 6


def test_network_failure_gives_up_cleanly(hub, built):
    repo = hub.unique_id("me/down")
    push(built, repo)
    head = hub.get_repo(repo).refs["main"]
    hub.fail_next(f"/api/datasets/{repo}/commit/", times=3, status=503)
    with pytest.raises(HubError, match=r"after 3 attempt\(s\) \(HTTP 503\)") as err:
        push(built, repo, retries=2, backoff=0)
    assert "all of it or none of it" in err.value.message and "run the same command again" in err.value.hint
    assert hub.get_repo(repo).refs["main"] == head


def test_unreachable_endpoint(hub, built):
    with pytest.raises(HubError, match=r"cannot push to http://127\.0\.0\.1:9") as err:
        push(built, "me/nowhere", endpoint="http://127.0.0.1:9", retries=1, backoff=0)
    assert "HF_ENDPOINT" in err.value.hint


def test_not_an_output_folder(tmp_path):
    from prefkit.errors import OutputError

    with pytest.raises(OutputError, match="not a prefkit output folder"):
        push(tmp_path, "me/x")


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_json_summary(hub, built, capsys):
    repo = hub.unique_id("me/cli")
    main(["push", str(built), repo, "--json", "--message", "from the CLI", "--private"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["repo_id"] == repo and summary["private"] is True and summary["license"] == "apache-2.0"
    assert summary["commit_sha"] == hub.get_repo(repo).refs["main"] and "card" not in summary
    assert hub.get_repo(repo).resolve("main").title == "from the CLI"


def test_plots_are_uploaded_and_embedded(hub, built, tmp_path):
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "margin.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    repo = hub.unique_id("me/plots")
    push(built, repo, plots=plots)
    assert hub.read_file(repo, "plots/margin.png").startswith(b"\x89PNG")
    _, body = card_meta(hub, repo)
    assert "![margin.png](plots/margin.png)" in body
    with pytest.raises(HubError, match="plots folder"):
        push(built, repo, plots=tmp_path / "missing")


def test_card_training_recipe_runs(hub, built, tmp_path, monkeypatch):
    """Score with `prefkit reflogps` using a model on the (fake) Hub, push, then run the card's TRL snippet as
    written (on CPU): with the policy equal to the reference the first DPO loss is ln 2, so the columns are used."""
    import math
    import re

    pytest.importorskip("trl")
    from prefkit.reflogps.job import reflogps

    model_id = hub.unique_id("me/tiny-sft")
    api().create_repo(model_id)
    api().upload_folder(repo_id=model_id, folder_path=tiny_model_path())
    reflogps(built, model_id, max_length=128, device="cpu", dtype="float32")
    repo = hub.unique_id("me/recipe")
    push(built, repo)
    _, body = card_meta(hub, repo)
    snippet = re.search(r"## Train with TRL\n.*?```python\n(.*?)```", body, re.S).group(1)
    assert "PrecomputedRefDPOTrainer" in snippet and f'model="{model_id}"' in snippet
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DISABLED", "true")
    scope: dict = {}
    # the card targets a GPU (TRL's bf16 default); one logged step is enough here
    cpu = 'DPOConfig(bf16=False, use_cpu=True, report_to="none", max_steps=1, logging_steps=1, '
    exec(snippet.replace("DPOConfig(", cpu), scope)
    assert math.isclose(scope["trainer"].state.log_history[0]["loss"], math.log(2), abs_tol=1e-4)


@pytest.mark.parametrize(
    "options",
    [
        {"export": "kto"},
        {"export": "llamafactory"},
        {"export": "openai"},
        {"output_format": "text", "tokenizer": "tiny"},
    ],
    ids=["kto", "llamafactory", "openai", "text"],
)
def test_push_other_output_shapes(hub, tmp_path, options):
    """Sets in other shapes (text, kto, llamafactory) push and load back like message sets."""
    src = hub_source(hub, "mit", tag="shapes")
    if options.get("tokenizer"):
        options = {**options, "tokenizer": str(tiny_model_path())}
    out = build(src, tmp_path / "out", **options).output
    repo = hub.unique_id("me/shapes")
    push(out, repo)
    local = pq.read_table(next((out / "data").glob("train-*.parquet")))
    assert datasets.load_dataset(repo, split="train").to_list() == local.to_pylist()
    # the files the trainer reads besides the data go up too
    extra = {"llamafactory": {"dataset_info.json"}, "openai": {"openai/train.jsonl"}}.get(options.get("export"))
    if extra:
        assert extra <= set(api().list_repo_files(repo, repo_type="dataset"))
