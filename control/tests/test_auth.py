"""Credentials do only what they were issued for (issue 11: items 5, 6, 7 and 16)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from mediagrid.client import Client, MediagridError
from mediagrid.signing import signed_headers
from mediagrid_dev import DevCluster

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


def client_token(client: Client) -> dict[str, str]:
    return {"Authorization": "Bearer " + client.token(600)}


def _signed_put(
    cluster: DevCluster, client: Client, user: str, file_id: str, body: bytes
) -> tuple[str, dict[str, str]]:
    path = f"/api/v1/files/demo/{user}/{file_id}"
    return _storage(client, user) + path, signed_headers("demo", cluster.app_secret, "PUT", path, None, body)


def test_signed_put_with_another_body_is_refused(cluster: DevCluster, client: Client) -> None:
    """Item 6: the signature did not cover the body, so a captured PUT stored any body;
    now the shim stores only the bytes whose SHA-256 was signed."""
    url, headers = _signed_put(cluster, client, "replay", f"swap-{time.monotonic_ns()}.bin", b"the real one")
    _err(requests.put(url, data=b"an attacker's body", headers=headers, timeout=10), 400, "content_mismatch")
    _err(requests.get(url, headers=client_token(client), timeout=10), 404, "file_not_found")
    # a changed Content-Type is another signed text
    url, headers = _signed_put(cluster, client, "replay", f"type-{time.monotonic_ns()}.bin", b"abc")
    headers["Content-Type"] = "text/html"
    _err(requests.put(url, data=b"abc", headers=headers, timeout=10), 401, "bad_signature")


def test_identical_replay_is_refused_on_every_node(cluster: DevCluster, client: Client) -> None:
    """Item 6: the same signed request sent again within its window is refused, by the node
    that saw it and by every other (the seen signatures are shared in MariaDB)."""
    body = os.urandom(1000)
    url, headers = _signed_put(cluster, client, "replay", f"once-{time.monotonic_ns()}.bin", body)
    assert requests.put(url, data=body, headers=headers, timeout=10).status_code == 201
    for node in client.storages("replay")["storages"]:
        again = node["url"] + urlsplit(url).path
        _err(requests.put(again, data=body, headers=headers, timeout=10), 401, "replayed_signature")
    q = {"app": "demo", "user": "replay"}
    lookup = signed_headers("demo", cluster.app_secret, "GET", "/api/v1/storages", q)
    assert requests.get(f"{cluster.url}/api/v1/storages", params=q, headers=lookup, timeout=10).ok
    _err(
        requests.get(f"{cluster.url}/api/v1/storages", params=q, headers=lookup, timeout=10),
        401,
        "replayed_signature",
    )


def test_cli_upload_signs_the_body(cluster: DevCluster, tmp_path: Path) -> None:
    """Item 6: the CLI's upload (file digest signed, every retry signed afresh) still works."""
    src = tmp_path / "cli.bin"
    src.write_bytes(os.urandom(300_000))
    env = {
        **os.environ,
        "MEDIAGRID_URL": cluster.url,
        "MEDIAGRID_APP": "demo",
        "MEDIAGRID_SECRET": cluster.app_secret,
    }
    run = [sys.executable, "-m", "mediagrid.cli"]
    fid = f"cli-{time.monotonic_ns()}.bin"
    subprocess.run(
        [*run, "upload", str(src), "--user", "replay", "--id", fid], check=True, env=env, timeout=60
    )
    out = tmp_path / "back.bin"
    subprocess.run(
        [*run, "download", fid, "--user", "replay", "-o", str(out)], check=True, env=env, timeout=60
    )
    assert out.read_bytes() == src.read_bytes()


def _admin(cluster: DevCluster, *argv: str) -> str:
    run = [
        sys.executable,
        "-m",
        "mediagrid.admin",
        "--config",
        str(cluster.root / "conf" / "ids.toml"),
        *argv,
    ]
    return subprocess.run(run, check=True, capture_output=True, text=True, timeout=60).stdout.strip()


def test_rotation_keeps_old_clients_working_until_retired(cluster: DevCluster) -> None:
    """Item 7: `mediagrid-admin app rotate` adds a new secret while the old one still
    works, so no client breaks; `app retire` then ends the old one."""
    name = f"rot{time.monotonic_ns() % 10**9}"
    old = cluster.add_app(name)
    new = _admin(cluster, "app", "rotate", name)
    assert new and new != old
    for secret in (old, new):
        assert Client(cluster.url, name, secret).storages("u1")["storages"]
    assert _admin(cluster, "app", "retire", name) == "retired"
    time.sleep(float(cluster.settings.get("APP_CACHE_TTL", 10.0)) + 1)  # the services' secret cache
    assert Client(cluster.url, name, new).storages("u1")["storages"]
    with pytest.raises(MediagridError) as err:
        Client(cluster.url, name, old).storages("u1")
    assert err.value.status == 401 and err.value.code == "bad_signature"
