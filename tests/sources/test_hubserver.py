"""The local fake Hub (tests/hubserver.py) driven by the real `datasets` and `huggingface_hub` clients."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import datasets
import huggingface_hub
import pytest
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub import DatasetCard, HfApi, HfFileSystem, hf_hub_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from packaging.version import Version

from tests.hubserver import client_errors, validate_card

MSG = datasets.Features(
    {
        "prompt": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "chosen": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "rejected": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "score": datasets.Value("float64"),
    }
)


def pairs(n: int, tag: str = "") -> datasets.Dataset:
    rows = {
        "prompt": [[{"role": "user", "content": f"q{i}{tag}"}] for i in range(n)],
        "chosen": [[{"role": "assistant", "content": f"good {i}"}] for i in range(n)],
        "rejected": [[{"role": "assistant", "content": f"bad {i}"}] for i in range(n)],
        "score": [float(i) for i in range(n)],
    }
    return datasets.Dataset.from_dict(rows, features=MSG)


def api(token=None) -> HfApi:
    import os

    return HfApi(endpoint=os.environ["HF_ENDPOINT"], token=token)


# --- load_dataset ------------------------------------------------------------------------------------------------
def test_load_dataset_with_custom_split_names(hub):
    repo = hub.unique_id("ns/ultra")
    hub.add_datasetdict(repo, {"train_prefs": pairs(3), "test_prefs": pairs(2, "t")})
    ds = datasets.load_dataset(repo)
    assert sorted(ds) == ["test_prefs", "train_prefs"]
    assert ds["train_prefs"].features == MSG
    assert ds["train_prefs"].to_list() == pairs(3).to_list()
    assert ds["test_prefs"]["prompt"][1] == [{"role": "user", "content": "q1t"}]


def test_load_dataset_named_configs_and_data_dir(hub):
    repo = hub.unique_id("ns/multi")
    hub.add_datasetdict(repo, {"train": pairs(2)}, config_name="alpha")
    hub.add_datasetdict(repo, {"train": pairs(3, "b")}, config_name="beta", data_dir="sub/beta")
    assert "sub/beta/train-00000-of-00001.parquet" in hub.list_files(repo)
    assert datasets.get_dataset_config_names(repo) == ["alpha", "beta"]
    assert datasets.load_dataset(repo, "beta", split="train")["prompt"][0][0]["content"] == "q0b"
    assert datasets.load_dataset(repo, "alpha", split="train").num_rows == 2


def test_load_dataset_jsonl_gz_folders_like_hh_rlhf(hub):
    repo = hub.unique_id("ns/hh")

    def rows(n: int, k: str) -> list[dict]:
        return [
            {"chosen": f"\n\nHuman: {k}{i}\n\nAssistant: yes", "rejected": "\n\nHuman: x\n\nAssistant: no"}
            for i in range(n)
        ]

    hub.add_json_files(
        repo,
        {
            "helpful-base/train.jsonl.gz": rows(3, "h"),
            "helpful-base/test.jsonl.gz": rows(1, "h"),
            "harmless-base/train.jsonl.gz": rows(2, "x"),
        },
        readme="# hh-like\n",
    )
    ds = datasets.load_dataset(repo, data_dir="helpful-base")
    assert {k: v.num_rows for k, v in ds.items()} == {"train": 3, "test": 1}
    assert ds["train"][0]["chosen"].startswith("\n\nHuman: h0")
    assert datasets.load_dataset(repo, split="train").num_rows == 5  # both folders, no data_dir


def test_load_dataset_pinned_revision_and_branch(hub):
    repo = hub.unique_id("ns/pinned")
    first = hub.add_datasetdict(repo, {"train": pairs(2)})
    second = hub.add_datasetdict(repo, {"train": pairs(4)})
    assert first != second and len(first) == 40
    assert datasets.load_dataset(repo, split="train").num_rows == 4
    assert datasets.load_dataset(repo, split="train", revision=first).num_rows == 2
    hub.add_datasetdict(repo, {"train": pairs(5)}, branch="v2")
    assert datasets.load_dataset(repo, split="train", revision="v2").num_rows == 5


def test_streaming_and_range_requests(hub):
    repo = hub.unique_id("ns/stream")
    hub.add_datasetdict(repo, {"train": pairs(6)})
    it = datasets.load_dataset(repo, split="train", streaming=True)
    assert [r["score"] for r in it] == [float(i) for i in range(6)]
    path = f"datasets/{repo}/data/train-00000-of-00001.parquet"
    with HfFileSystem().open(path, "rb") as fh:
        fh.seek(-4, 2)
        assert fh.read() == b"PAR1"
    url = f"{hub.url}/datasets/{repo}/resolve/main/data/train-00000-of-00001.parquet"
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=0-3"})) as r:
        assert r.status == 206 and r.read() == b"PAR1" and r.headers["Content-Range"].startswith("bytes 0-3/")


# --- push ----------------------------------------------------------------------------------------------------------
def test_push_to_hub_round_trip_and_repush_replaces_shards(hub):
    repo = hub.unique_id("me/pushed")
    datasets.DatasetDict({"train": pairs(40), "test": pairs(3)}).push_to_hub(repo, num_shards={"train": 3})
    files = api().list_repo_files(repo, repo_type="dataset")
    assert sorted(f for f in files if f.startswith("data/train")) == [
        f"data/train-0000{i}-of-00003.parquet" for i in range(3)
    ]
    back = datasets.load_dataset(repo)
    assert back["train"].features == MSG and back["train"].to_list() == pairs(40).to_list()

    datasets.DatasetDict({"train": pairs(5), "test": pairs(3)}).push_to_hub(repo)
    files = api().list_repo_files(repo, repo_type="dataset")
    assert [f for f in files if f.startswith("data/train")] == ["data/train-00000-of-00001.parquet"]
    assert datasets.load_dataset(repo, split="train").num_rows == 5


def test_upload_folder_branch_pr_and_refs(hub, tmp_path):
    repo = hub.unique_id("prefkit-test/folder")
    a = api()
    a.create_repo(repo, repo_type="dataset", private=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("hello")
    a.create_branch(repo, repo_type="dataset", branch="v2")
    info = a.upload_folder(repo_id=repo, repo_type="dataset", folder_path=tmp_path, revision="v2")
    assert len(info.oid) == 40
    assert "data/x.txt" in a.list_repo_files(repo, repo_type="dataset", revision="v2")
    assert "data/x.txt" not in a.list_repo_files(repo, repo_type="dataset")
    refs = a.list_repo_refs(repo, repo_type="dataset", include_pull_requests=True)
    assert {b.name for b in refs.branches} == {"main", "v2"}

    pr = a.upload_file(
        path_or_fileobj=b"pr!", path_in_repo="pr.txt", repo_id=repo, repo_type="dataset", create_pr=True
    )
    assert pr.pr_url.endswith("/discussions/1") and pr.pr_revision == "refs/pr/1"
    assert "pr.txt" in a.list_repo_files(repo, repo_type="dataset", revision="refs/pr/1")
    assert "pr.txt" not in a.list_repo_files(repo, repo_type="dataset")
    assert a.dataset_info(repo).private is True
    with pytest.raises(HfHubHTTPError, match="Reference already exists") as err:
        a.create_branch(repo, repo_type="dataset", branch="v2")
    assert err.value.response.status_code == 409


def test_commits_get_fresh_shas_and_parent_commit_is_checked(hub):
    from huggingface_hub import CommitOperationAdd

    repo = hub.unique_id("me/shas")
    a = api()
    a.create_repo(repo, repo_type="dataset")
    shas = {
        a.upload_file(path_or_fileobj=b"same", path_in_repo="f.txt", repo_id=repo, repo_type="dataset").oid
        for _ in range(3)
    }
    assert len(shas) == 3
    with pytest.raises(HfHubHTTPError, match="A commit has happened since") as err:
        a.create_commit(
            repo,
            [CommitOperationAdd("g.txt", b"x")],
            commit_message="m",
            repo_type="dataset",
            parent_commit="0" * 40,
        )
    assert err.value.response.status_code == 412


def test_card_yaml_validation(hub):
    good = DatasetCard(
        "---\nlicense: apache-2.0\ntags: [dpo]\ntask_categories: [text-generation]\n---\n# x\n"
    )
    validate_card(good)
    bad = DatasetCard("---\nlicense: not-a-licence\n---\n# x\n")
    with pytest.raises(ValueError, match="license"):
        validate_card(bad)
    repo = hub.unique_id("me/badcard")
    api().create_repo(repo, repo_type="dataset")
    with pytest.raises(ValueError, match="license"):  # huggingface_hub checks a README before committing it
        api().upload_file(
            path_or_fileobj=str(bad).encode(), path_in_repo="README.md", repo_id=repo, repo_type="dataset"
        )
    lines = [
        {"key": "header", "value": {"summary": "card"}},
        {
            "key": "file",
            "value": {
                "path": "README.md",
                "content": base64.b64encode(str(bad).encode()).decode(),
                "encoding": "base64",
            },
        },
    ]
    request = urllib.request.Request(
        f"{hub.url}/api/datasets/{repo}/commit/main",
        headers={"Authorization": f"Bearer {hub.token}"},
        data="".join(json.dumps(x) + "\n" for x in lines).encode(),
    )
    with pytest.raises(urllib.error.HTTPError, match="HTTP Error 400") as err:
        urllib.request.urlopen(request)
    assert err.value.code == 400 and "license" in json.loads(err.value.read())["error"]  # and so does the Hub


# --- errors --------------------------------------------------------------------------------------------------------
def test_missing_repo_and_revision(hub):
    with pytest.raises(RepositoryNotFoundError, match=r"Repository Not Found for url: .*ns/does-not-exist"):
        api().dataset_info("ns/does-not-exist")
    with pytest.raises(DatasetNotFoundError, match="'ns/does-not-exist' doesn't exist on the Hub"):
        datasets.load_dataset("ns/does-not-exist")
    repo = hub.unique_id("ns/rev")
    hub.add_datasetdict(repo, {"train": pairs(1)})
    with pytest.raises(RevisionNotFoundError, match="Invalid rev id: no-such-branch"):
        api().dataset_info(repo, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError, match=f"Invalid rev id: {'f' * 40}"):
        hf_hub_download(repo, "README.md", repo_type="dataset", revision="f" * 40)
    with pytest.raises(DatasetNotFoundError, match="Revision"):
        datasets.load_dataset(repo, revision="no-such-branch")


def test_private_repo(hub):
    repo = hub.unique_id("prefkit-test/secret")
    hub.add_datasetdict(repo, {"train": pairs(2)}, private=True)
    with pytest.raises(RepositoryNotFoundError, match="Repository Not Found") as anon:
        api(token=False).dataset_info(repo)
    assert anon.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError, match="Repository Not Found") as other:
        api(token=hub.read_token).dataset_info(repo)
    assert other.value.response.status_code == 404
    with pytest.raises(DatasetNotFoundError, match="doesn't exist on the Hub or cannot be accessed"):
        datasets.load_dataset(repo, token=False)
    assert datasets.load_dataset(repo, split="train").num_rows == 2  # HF_TOKEN (user "me") can write the org
    hub.grant_access(repo, "reader")
    assert api(token=hub.read_token).dataset_info(repo).private is True


def test_gated_repo(hub):
    repo = hub.unique_id("ns/gated")
    hub.add_datasetdict(repo, {"train": pairs(2)}, gated=True)
    assert api(token=False).dataset_info(repo).gated == "auto"  # metadata stays public
    shard = "data/train-00000-of-00001.parquet"
    with pytest.raises(GatedRepoError, match="Cannot access gated repo") as anon:
        hf_hub_download(repo, shard, repo_type="dataset", token=False)
    assert anon.value.response.status_code == 401
    with pytest.raises(GatedRepoError, match="Cannot access gated repo") as denied:
        hf_hub_download(repo, shard, repo_type="dataset", token=hub.read_token)
    assert denied.value.response.status_code == 403
    with pytest.raises(DatasetNotFoundError, match="gated"):
        datasets.load_dataset(repo, token=hub.read_token)
    hub.grant_access(repo, "reader")
    assert datasets.load_dataset(repo, split="train", token=hub.read_token).num_rows == 2


def test_write_permissions_and_tokens(hub):
    repo = hub.unique_id("ns/not-mine")
    hub.create_dataset_repo(repo, files={"a.txt": "a"})
    with pytest.raises(HfHubHTTPError, match="rights to create a dataset under the namespace") as err:
        api().create_repo(hub.unique_id("someone-else/x"), repo_type="dataset")
    assert err.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError, match="rights to write to dataset") as err:
        api().upload_file(path_or_fileobj=b"x", path_in_repo="b.txt", repo_id=repo, repo_type="dataset")
    assert err.value.response.status_code == 403
    pr = api().upload_file(
        path_or_fileobj=b"x", path_in_repo="b.txt", repo_id=repo, repo_type="dataset", create_pr=True
    )
    assert pr.pr_num == 1
    with pytest.raises(  # before huggingface_hub 1.0: requests' error
        (HfHubHTTPError, *client_errors()), match="Invalid user token"
    ) as err:
        api(token="hf_unknown").whoami()
    assert err.value.response.status_code == 401
    assert api().whoami()["name"] == "me"
    assert {o["name"] for o in api().whoami()["orgs"]} == {"prefkit-test"}


def test_same_name_in_another_repo_type(hub):
    repo = hub.unique_id("me/twin")
    hub.create_dataset_repo(repo, files={"config.json": "{}"}, repo_type="model")
    a = api()
    assert a.repo_exists(repo, repo_type="model") and not a.repo_exists(repo, repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError, match="Repository Not Found"):
        a.dataset_info(repo)
    a.create_repo(repo, repo_type="dataset")  # the Hub keeps model and dataset names apart
    assert a.repo_exists(repo, repo_type="dataset")
    assert a.list_repo_files(repo) == [".gitattributes", "config.json"]


def test_injected_failures(hub):
    repo = hub.unique_id("me/flaky")
    a = api()
    a.create_repo(repo, repo_type="dataset")
    # the requests-based client (huggingface_hub < 1.0) does not retry a 503 on preupload
    if Version(huggingface_hub.__version__).major >= 1:
        hub.fail_next(f"/api/datasets/{repo}/preupload", times=2, status=503)
    a.upload_file(
        path_or_fileobj=b"ok", path_in_repo="a.txt", repo_id=repo, repo_type="dataset"
    )  # client retries
    head = hub.get_repo(repo).refs["main"]
    hub.fail_next(f"/api/datasets/{repo}/commit", times=1, status="drop")
    with pytest.raises(client_errors(), match=r"(?i)disconnected|aborted"):  # the dropped connection
        a.upload_file(path_or_fileobj=b"lost", path_in_repo="b.txt", repo_id=repo, repo_type="dataset")
    assert hub.get_repo(repo).refs["main"] == head  # nothing committed
    hub.fail_next(f"/api/datasets/{repo}/commit", times=1, status=500)
    with pytest.raises(HfHubHTTPError, match="injected failure") as err:
        a.upload_file(path_or_fileobj=b"lost", path_in_repo="b.txt", repo_id=repo, repo_type="dataset")
    assert err.value.response.status_code == 500
    assert ("POST", f"/api/datasets/{repo}/commit/main") in hub.requests
