"""Direct links: minted by the tracker for a signed app, checked and served by nginx alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from mediagrid import links
from mediagrid.client import Client, MediagridError
from mediagrid_dev import DevCluster

from .test_bad_input import _err

pytestmark = pytest.mark.integration


@pytest.fixture
def stored(client: Client, tmp_path: Path) -> tuple[str, bytes]:
    data = os.urandom(200_000)
    src = tmp_path / "clip.mp4"
    src.write_bytes(data)
    return client.upload(src, "links", f"clip-{time.monotonic_ns()}.mp4")["file_id"], data


def test_direct_link_serves_the_bytes_with_range(client: Client, stored: tuple[str, bytes]) -> None:
    file_id, data = stored
    link = client.direct_link("links", file_id, ttl=60)
    assert link["file_id"] == file_id and link["size"] == len(data)
    assert abs(link["expires"] - (time.time() + 60)) < 5
    assert urlsplit(link["url"]).path.startswith(f"/d/{link['group']}/")
    resp = requests.get(link["url"], timeout=5)
    assert resp.status_code == 200 and resp.content == data
    assert resp.headers["Content-Type"] == "video/mp4"
    part = requests.get(link["url"], headers={"Range": "bytes=100-199"}, timeout=5)
    assert part.status_code == 206 and part.content == data[100:200]


def test_tampered_link_is_403_and_expired_is_410(
    cluster: DevCluster, client: Client, stored: tuple[str, bytes]
) -> None:
    file_id, _ = stored
    url = client.direct_link("links", file_id, ttl=60)["url"]
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    base = f"{parts.scheme}://{parts.netloc}"
    # a later expiry, a token for another path, a missing token: all forged
    _err(
        requests.get(f"{base}{parts.path}?e={int(query['e']) + 1}&t={query['t']}", timeout=5),
        403,
        "forbidden",
    )
    other = parts.path[:-5] + ("1" if parts.path[-5] == "0" else "0") + ".mp4"
    _err(requests.get(f"{base}{other}?e={query['e']}&t={query['t']}", timeout=5), 403, "forbidden")
    _err(requests.get(f"{base}{parts.path}", timeout=5), 403, "forbidden")
    # a genuine token whose time has passed: minted with the cluster's key an hour ago
    old = links.mint(
        cluster.link_key, "/d", parts.path.split("/")[2], parts.path.split("/", 3)[3], 60, time.time() - 3600
    )
    _err(requests.get(base + old["path"], timeout=5), 410, "link_expired")


def test_link_needs_the_owner_and_dies_with_the_file(
    client: Client, other_client: Client, stored: tuple[str, bytes]
) -> None:
    file_id, _ = stored
    with pytest.raises(MediagridError) as err:
        other_client.direct_link("links", file_id)  # the other tenant has no such file
    assert err.value.status == 404 and err.value.code == "file_not_found"
    with pytest.raises(MediagridError) as err:
        client.direct_link("links", file_id, ttl=0)
    assert err.value.status == 400 and err.value.code == "invalid_ttl"
    url = client.direct_link("links", file_id, ttl=60)["url"]
    client.delete("links", file_id)
    _err(requests.get(url, timeout=5), 404, "not_found")
    with pytest.raises(MediagridError) as err:
        client.direct_link("links", file_id)
    assert err.value.status == 404


def test_unsigned_mint_is_refused(cluster: DevCluster, stored: tuple[str, bytes]) -> None:
    file_id, _ = stored
    _err(
        requests.get(f"{cluster.url}/api/v1/links/demo/links/{file_id}", timeout=5),
        401,
        "missing_credentials",
    )


def test_cli_prints_a_direct_link(cluster: DevCluster, stored: tuple[str, bytes]) -> None:
    file_id, data = stored
    argv = [sys.executable, "-m", "mediagrid.cli", "--url", cluster.url, "--app", "demo"]
    argv += ["--secret-file", "-", "url", "--user", "links", "--direct", file_id]
    url = subprocess.run(
        argv, input=cluster.app_secret, check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()
    assert "/d/" in url and requests.get(url, timeout=5).content == data


def test_tokens_in_urls_stay_out_of_the_access_log(cluster: DevCluster, client: Client) -> None:
    """?token= carries an app-wide credential: nginx logs the URI with it cut out."""
    token = client.token(600)
    marker = f"logcheck-{time.monotonic_ns()}"
    for path in (f"/files/{cluster.app}/links/{marker}", f"/api/v1/files/{cluster.app}/links/{marker}"):
        assert requests.get(f"{cluster.url}{path}?token={token}&x=1", timeout=5).status_code in (404, 405)
    log = cluster.root / "logs" / "nginx-access.log"
    deadline = time.monotonic() + 5
    while log.read_text().count(f"{marker}?token=[redacted] ") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # nginx writes the line once the answer is sent
    text = log.read_text()
    assert text.count(f"{marker}?token=[redacted] ") == 2
    assert token.rsplit(".", 1)[-1] not in text
