"""Test session setup: every test talks to a local fake Hub, never to huggingface.co.

The environment is set here, at import, before anything imports ``huggingface_hub`` or ``datasets`` (both read
``HF_ENDPOINT`` at import time). Each pytest process (each xdist worker too) gets its own server and caches.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from tests.hubserver import HubServer

_HUB = HubServer().start()
_HF_HOME = tempfile.mkdtemp(prefix="prefkit-hf-home-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)

os.environ.update(
    {
        "HF_ENDPOINT": _HUB.url,
        "HF_HOME": _HF_HOME,
        "HF_HUB_CACHE": os.path.join(_HF_HOME, "hub"),
        "HF_DATASETS_CACHE": os.path.join(_HF_HOME, "datasets"),
        "HF_TOKEN": _HUB.token,  # user "me": may write namespaces "me" and "prefkit-test"
        "HF_HUB_DISABLE_XET": "1",  # else uploads ask for /xet-write-token
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "TQDM_DISABLE": "1",
        "PREFKIT_HUB_BACKOFF": "0.05",  # retries of transient Hub failures wait this long (2 s by default)
    }
)
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN_PATH", "HUGGING_FACE_HUB_TOKEN"):
    os.environ.pop(_var, None)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def hub() -> HubServer:
    """The local fake Hub: ``hub.url``, ``hub.token`` (write: "me", "prefkit-test"), ``hub.read_token``, and
    helpers to lay out repos (``create_dataset_repo``, ``add_commit``, ``add_datasetdict``, ``add_json_files``,
    ``fail_next``). Repos live for the whole session: name them per test, e.g. ``hub.unique_id("me/push")``."""
    return _HUB
