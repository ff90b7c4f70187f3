"""Bad input gets a clear JSON error with a stable code, and nothing is half-written."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import requests

from mediagrid.client import Client
from mediagrid.db import one
from mediagrid.signing import signed_headers
from mediagrid_dev import DevCluster

pytestmark = pytest.mark.integration


def _err(resp: requests.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def _storage(client: Client, user: str) -> str:
    return client.storages(user)["storages"][0]["url"]


def _leftovers(cluster: DevCluster) -> list[Path]:
    """Files in any group directory (temporaries included)."""
    return [p for g in ("g1", "g2") for p in cluster.group_dir(g).rglob("*") if p.is_file()]


def _rows(cluster: DevCluster) -> int:
    conn = cluster.db()
    try:
        with conn.cursor() as cur:
            # recorded files, and uploads still recorded as in flight (none once answered)
            cur.execute("SELECT (SELECT COUNT(*) FROM files) + (SELECT COUNT(*) FROM uploads) AS n")
            return one(cur)["n"]
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("file_id", "status", "code"),
    [
        ("..", 404, "not_found"),  # dot segments are resolved before routing
        ("...", 400, "invalid_file_id"),
        ("a..b", 400, "invalid_file_id"),
        ("nul%00byte", 400, "bad_request"),  # nginx refuses NUL in a URI itself
        ("x" * 201, 400, "invalid_file_id"),
        ("sp%20ace", 400, "invalid_file_id"),
        ("a%2Fb", 404, "not_found"),  # a slash never reaches the id: no such route
    ],
)
def test_bad_file_ids(cluster: DevCluster, client: Client, file_id: str, status: int, code: str) -> None:
    before = _leftovers(cluster)
    base = _storage(client, "ivan")
    raw_path = f"/api/v1/files/demo/ivan/{file_id}"
    signed_path = unquote(raw_path)
    resp = requests.put(
        base + raw_path,
        data=b"payload",
        headers=signed_headers("demo", cluster.app_secret, "PUT", signed_path),
        timeout=5,
    )
    _err(resp, status, code)
    gw = requests.get(
        cluster.url + f"/files/demo/ivan/{file_id}",
        headers={"Authorization": "Bearer " + client.token()},
        timeout=5,
    )
    assert gw.status_code in (400, 404) and "error" in gw.json()
    assert _leftovers(cluster) == before


def test_empty_file_id_and_bad_user(cluster: DevCluster, client: Client) -> None:
    base = _storage(client, "ivan")
    resp = requests.put(base + "/api/v1/files/demo/ivan/", data=b"x", timeout=5)
    assert resp.status_code in (404, 405) and "error" in resp.json()
    q = {"app": "demo", "user": "bad/user"}
    resp = requests.get(
        cluster.url + "/api/v1/storages",
        params=q,
        timeout=5,
        headers=signed_headers("demo", cluster.app_secret, "GET", "/api/v1/storages", q),
    )
    _err(resp, 400, "invalid_user")


def test_unknown_app_bad_signature_expired_and_missing(cluster: DevCluster, client: Client) -> None:
    # An unknown app is answered exactly as a wrong signature: app names cannot be probed.
    path = "/api/v1/storages"
    answers = []
    for app in ("ghost", "demo"):
        q = {"app": app, "user": "ivan"}
        resp = requests.get(
            cluster.url + path, params=q, headers=signed_headers(app, "wrong", "GET", path, q), timeout=5
        )
        _err(resp, 401, "bad_signature")
        answers.append(resp.json())
    assert answers[0] == answers[1]
    q = {"app": "demo", "user": "ivan"}
    _err(requests.get(cluster.url + path, params=q, timeout=5), 401, "missing_credentials")
    old = signed_headers("demo", cluster.app_secret, "GET", path, q)
    old["X-MG-Timestamp"] = str(int(time.time()) - 3600)
    _err(requests.get(cluster.url + path, params=q, headers=old, timeout=5), 401, "expired_signature")
    # signature bound to the query: change the user after signing
    signed = signed_headers("demo", cluster.app_secret, "GET", path, q)
    _err(
        requests.get(
            cluster.url + path, params={"app": "demo", "user": "mallory"}, headers=signed, timeout=5
        ),
        401,
        "bad_signature",
    )
    _err(
        requests.get(
            cluster.url + "/api/v1/groups", headers={"Authorization": "Bearer mg1.demo.1.x"}, timeout=5
        ),
        401,
        "bad_token",
    )
    expired = Client(cluster.url, "demo", cluster.app_secret).token(ttl=-10)
    _err(
        requests.get(
            cluster.url + "/api/v1/groups", headers={"Authorization": f"Bearer {expired}"}, timeout=5
        ),
        401,
        "expired_token",
    )
    url = client.playback_url("ivan", "nothing", ttl=-5)
    _err(requests.get(url, timeout=5), 401, "expired_signature")


def test_cluster_join_needs_the_cluster_secret(cluster: DevCluster) -> None:
    body = (
        b'{"node_id": "evil", "group": "g1", "url": "http://127.0.0.1:1", "free": 1, "total": 1,'
        b' "reserve": 0, "load": 0, "heal_pending": 0}'
    )
    path = "/api/v1/cluster/join"
    headers = signed_headers("evil", "not-the-secret", "POST", path, None, body, cluster=True)
    _err(
        requests.post(cluster.tracker_url(0) + path, data=body, headers=headers, timeout=5),
        401,
        "bad_cluster_signature",
    )
    _err(requests.post(cluster.tracker_url(0) + path, data=body, timeout=5), 401, "missing_credentials")
    good = signed_headers("evil", cluster.node_key("evil"), "POST", path, None, b"{not json", cluster=True)
    _err(
        requests.post(cluster.tracker_url(0) + path, data=b"{not json", headers=good, timeout=5),
        400,
        "invalid_json",
    )


def _raw_put(url: str, path: str, headers: dict[str, str], declared: int, send: bytes) -> bytes:
    """PUT that declares ``declared`` bytes, sends ``send`` and closes its side."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        head = f"PUT {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {declared}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        s.sendall(head.encode() + send)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_short_body_and_disconnect_leave_nothing(cluster: DevCluster, client: Client) -> None:
    before, rows = _leftovers(cluster), _rows(cluster)
    base = _storage(client, "judy")
    path = "/api/v1/files/demo/judy/short.bin"
    headers = signed_headers("demo", cluster.app_secret, "PUT", path)
    _raw_put(base, path, headers, declared=5_000_000, send=b"x" * 1_000_000)
    time.sleep(1.0)  # let the shim notice the closed connection and clean up
    assert _leftovers(cluster) == before
    assert _rows(cluster) == rows
    gone = requests.get(client.playback_url("judy", "short.bin"), timeout=5)
    _err(gone, 404, "file_not_found")


def test_upload_past_reserve_is_507(cluster: DevCluster, client: Client, tmp_path: Path) -> None:
    import os

    group = client.storages("ken")["group"]
    nodes = [n for n, info in cluster.storage_nodes.items() if info["group"] == group]
    st = os.statvfs(cluster.group_dir(group))
    free = st.f_bavail * st.f_frsize
    before, rows = _leftovers(cluster), _rows(cluster)
    for node in nodes:
        cluster.reconfigure(f"shim-{node}", {"RESERVE_BYTES": free - 2_000_000})
    try:
        big = tmp_path / "big.bin"
        big.write_bytes(b"\0" * 4_000_000)
        base = cluster.storage_url(nodes[0])
        path = "/api/v1/files/demo/ken/big.bin"
        resp = requests.put(
            base + path,
            data=big.read_bytes(),
            timeout=10,
            headers=signed_headers("demo", cluster.app_secret, "PUT", path),
        )
        _err(resp, 507, "insufficient_storage")
        # chunked (no Content-Length): stopped while streaming
        resp = requests.put(
            base + path,
            data=iter([b"\0" * 1_000_000] * 4),
            timeout=10,
            headers=signed_headers("demo", cluster.app_secret, "PUT", path),
        )
        _err(resp, 507, "insufficient_storage")
        assert _leftovers(cluster) == before and _rows(cluster) == rows
    finally:
        for node in nodes:
            cluster.reconfigure(f"shim-{node}", {"RESERVE_BYTES": 0})


def test_not_json_errors_for_unknown_routes_and_methods(cluster: DevCluster) -> None:
    _err(requests.get(cluster.tracker_url(0) + "/nope", timeout=5), 404, "not_found")
    _err(requests.delete(cluster.tracker_url(0) + "/api/v1/groups", timeout=5), 405, "method_not_allowed")
