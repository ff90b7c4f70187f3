"""Credentials do only what they were issued for (issue 11: items 5, 6, 7 and 16)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from mediagrid.client import Client

from .test_bad_input import _err, _storage

pytestmark = pytest.mark.integration


@pytest.fixture
def stored(client: Client, tmp_path: Path) -> tuple[str, bytes]:
    data = os.urandom(50_000)
    src = tmp_path / "clip.mp4"
    src.write_bytes(data)
    return client.upload(src, "scope", f"clip-{time.monotonic_ns()}.mp4")["file_id"], data


def test_playback_url_only_reads_its_file(client: Client, stored: tuple[str, bytes]) -> None:
    """Item 5: the query of a playback URL sent with DELETE to a storage node deleted the
    file (200 deleted); now any method but GET/HEAD is refused and the file stays."""
    file_id, data = stored
    url = urlsplit(client.playback_url("scope", file_id, 600))
    on_node = f"{_storage(client, 'scope')}{url.path.replace('/files/', '/api/v1/files/', 1)}?{url.query}"
    for method in ("DELETE", "PUT"):
        _err(requests.request(method, on_node, data=b"x", timeout=10), 403, "out_of_scope")
    to_user = on_node.replace(f"/{file_id}?", "?")  # POST uploads under a generated id
    _err(requests.post(to_user, data=b"x", timeout=10), 403, "out_of_scope")
    gateway = f"{client.url}{url.path}?{url.query}"
    for method in ("DELETE", "PUT", "POST"):
        _err(requests.request(method, gateway, data=b"x", timeout=10), 405, "method_not_allowed")
    assert requests.head(on_node, timeout=10).status_code == 200
    assert requests.get(on_node, timeout=10).content == data
    assert requests.get(gateway, timeout=10).content == data
    # the signature is for that file only
    other = on_node.replace(file_id, "x" + file_id)
    _err(requests.get(other, timeout=10), 401, "bad_signature")


def test_direct_link_only_reads(client: Client, stored: tuple[str, bytes]) -> None:
    """Item 5, nginx side: a direct link with another method is the JSON 405 (was nginx's
    HTML page) and the file stays."""
    file_id, data = stored
    link = client.direct_link("scope", file_id, ttl=60)["url"]
    for method in ("DELETE", "PUT", "POST"):
        _err(requests.request(method, link, data=b"x", timeout=10), 405, "method_not_allowed")
    assert requests.head(link, timeout=10).status_code == 200
    assert requests.get(link, timeout=10).content == data
