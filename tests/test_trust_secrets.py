"""Secrets in odd shapes: a token with whitespace or control characters is refused before any request with one
Error/Hint line, every form of every secret (raw, repr, escaped, its pieces; an explicit --token too) is masked,
also in the --debug traceback, and a request that cannot be sent is never retried."""

from __future__ import annotations

import json

import pytest

from prefkit.errors import OptionError
from tests.reflogps_data import run_cli

ROWS = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(3)]


@pytest.fixture
def repo(hub) -> str:
    repo_id = hub.unique_id("me/secret-shapes")
    hub.create_dataset_repo(repo_id, {"data/train.jsonl": "".join(json.dumps(r) + "\n" for r in ROWS)})
    return repo_id


def pieces_absent(secret: str, text: str) -> bool:
    from prefkit.secrets import forms

    return not any(form in text for form in forms(secret))


# a Kubernetes secret file's newline at the end, one inside an hf_ token, a pasted space, a tab, an escape, non-ASCII
BAD_TOKENS = [
    ("hf_SecretKube123456\n", "a line break at its end"),
    ("hf_SECRETabc123\nXYZtail99", "a line break at character 16"),
    ("plain-secret value", "a space at character 13"),
    ("tab\tseparated-secret", "a tab"),
    ("esc\x1bsecret-value", "a control character"),
    ("secret-tokén-value", "a non-ASCII character"),
]


@pytest.mark.parametrize("token,kind", BAD_TOKENS)
@pytest.mark.parametrize("where", ["env", "option", "debug"])
def test_a_token_with_whitespace_is_refused_before_any_request(
    hub, repo, capsys, monkeypatch, tmp_path, token, kind, where
):
    if where == "option":
        monkeypatch.delenv("HF_TOKEN")
        args = ["build", repo, "-o", str(tmp_path / "o"), "--token", token]
    else:
        monkeypatch.setenv("HF_TOKEN", token)
        args = ["build", repo, "-o", str(tmp_path / "o")]
    if where == "debug":
        args = ["--debug", *args]
    before = len(hub.requests)
    code, out, err = run_cli(args, capsys)
    assert code == 1
    assert not [r for r in hub.requests[before:] if repo in r[1]]  # no request was sent
    assert kind in err and ("HF_TOKEN" if where != "option" else "--token") in err
    assert pieces_absent(token, out + err)
    if where != "debug":
        lines = err.strip().splitlines()
        assert [line.split(":")[0] for line in lines] == ["Error", "Hint"], err
        assert "retry" not in err


def test_push_refuses_a_token_with_a_newline(hub, capsys, tmp_path, monkeypatch):
    from prefkit import build

    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    build(str(src), tmp_path / "set")
    monkeypatch.setenv("HF_TOKEN", "hf_PushToken987654\n")
    code, _, err = run_cli(["push", str(tmp_path / "set"), hub.unique_id("me/p")], capsys)
    assert code == 1 and "line break at its end" in err and pieces_absent("hf_PushToken987654\n", err)
    code, _, err = run_cli(
        ["push", str(tmp_path / "set"), hub.unique_id("me/p"), "--token", "a b-secret"], capsys
    )
    assert code == 1 and "from --token holds a space" in err


def test_the_python_api_refuses_such_a_token_too(repo, tmp_path):
    from prefkit import build

    with pytest.raises(OptionError, match="holds a line break at its end") as err:
        build(repo, tmp_path / "o", token="hf_ApiToken1234\n")
    assert "tr -d" in (err.value.hint or "")


def test_every_form_of_every_secret_is_masked(monkeypatch):
    from prefkit.secrets import redact, redact_argv, remember

    kube = "hf_SECRETabc123\nXYZtail99"
    monkeypatch.setenv("HF_TOKEN", kube)
    for shown in (
        kube,
        repr(kube),
        json.dumps(kube),
        repr(kube.encode()),
        f"Illegal header value b'Bearer {kube}'".replace("\n", "\\n"),
        "XYZtail99 alone",
    ):
        assert "XYZtail99" not in redact(shown) and "SECRETabc" not in redact(shown), shown
    # an explicit --token value (not token-like, not in the environment) is masked once seen
    plain = "my-plain-secret-77"
    assert redact_argv(["build", "--token", plain]) == ["build", "--token", "***"]
    assert plain not in redact(f"failed with {plain!r}")
    remember("kept-apart\tsecret")
    assert redact("a 'kept-apart\\tsecret' then kept-apart and a word") == "a '***' then *** and a word"
    # an hf_ token nobody told us about, broken by an escaped newline, is masked whole
    assert redact("header b'Bearer hf_UnknownAbc123\\nRestOfIt'") == "header b'Bearer ***'"
    assert redact("ordinary hf_hub_download words stay") == "ordinary hf_hub_download words stay"


def test_a_request_that_cannot_be_sent_is_never_retried():
    httpx2 = pytest.importorskip("httpx2", reason="huggingface_hub >= 2 sends with httpx2 (the floor: requests)")

    from prefkit.hub_client import transient, with_retries

    calls = []

    def send():
        calls.append(1)
        raise httpx2.LocalProtocolError("Illegal header value b'Bearer x\\n'")

    with pytest.raises(RuntimeError, match="gave up"):
        with_retries(send, lambda err, n: RuntimeError(f"gave up after {n}"), retries=4, backoff=0)
    assert calls == [1]
    assert not transient(httpx2.UnsupportedProtocol("ftp://"))
    assert transient(httpx2.RemoteProtocolError("Server disconnected without sending a response."))
    assert transient(httpx2.ReadTimeout("timed out"))
