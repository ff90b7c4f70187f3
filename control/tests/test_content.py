"""User content on the cluster's origin (issue 11, items 13 and 14): an uploaded page is a
download that cannot run, media still plays inline, and no answer names a host."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests

from mediagrid.client import Client
from mediagrid_dev import DevCluster

from .test_bad_input import _storage

pytestmark = pytest.mark.integration

PAGE = b"<html><script>fetch('/api/v1/groups?token=' + location.search)</script></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def _paths(client: Client, user: str, file_id: str) -> dict[str, str]:
    """Every URL that plays the file: the gateway, a direct link, the storage node."""
    token = client.token(600)
    return {
        "gateway": f"{client.url}/files/demo/{user}/{file_id}?token={token}",
        "direct": client.direct_link(user, file_id, ttl=60)["url"],
        "storage": f"{_storage(client, user)}/api/v1/files/demo/{user}/{file_id}?token={token}",
    }


def _upload(client: Client, tmp_path: Path, name: str, data: bytes) -> tuple[str, str]:
    user = "content"
    src = tmp_path / name
    src.write_bytes(data)
    file_id = f"{time.monotonic_ns()}-{name}"
    client.upload(src, user, file_id)
    return user, file_id


@pytest.mark.parametrize(
    ("name", "data", "ctype"), [("x.html", PAGE, "text/html"), ("x.svg", SVG, "image/svg+xml")]
)
def test_active_content_is_a_sandboxed_download(
    client: Client, tmp_path: Path, name: str, data: bytes, ctype: str
) -> None:
    user, file_id = _upload(client, tmp_path, name, data)
    for where, url in _paths(client, user, file_id).items():
        resp = requests.get(url, timeout=10)
        assert resp.status_code == 200 and resp.content == data, where
        assert resp.headers["Content-Type"].startswith(ctype), where
        assert resp.headers["Content-Disposition"] == "attachment", where
        assert resp.headers["X-Content-Type-Options"] == "nosniff", where
        assert resp.headers["Content-Security-Policy"].startswith("sandbox;"), where
        assert "X-Mediagrid-Node" not in resp.headers, where


def test_media_plays_inline_with_range(client: Client, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    user, file_id = _upload(client, tmp_path, "clip.mp4", data)
    for where, url in _paths(client, user, file_id).items():
        resp = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=10)
        assert resp.status_code == 206 and resp.content == data[10:20], where
        assert resp.headers["Content-Type"] == "video/mp4", where
        assert "Content-Disposition" not in resp.headers, where
        assert resp.headers["X-Content-Type-Options"] == "nosniff", where


def test_no_answer_names_a_host(cluster: DevCluster) -> None:
    for url in (cluster.url, cluster.storage_url(next(iter(cluster.storage_nodes)))):
        resp = requests.get(f"{url}/healthz", timeout=5)
        assert resp.status_code == 200 and "X-Mediagrid-Node" not in resp.headers
        assert resp.text.split() in (["ok"], ["ok", "g1"], ["ok", "g2"])
        api = requests.get(f"{url}/api/v1/health", timeout=5)
        assert "X-Mediagrid-Node" not in api.headers
