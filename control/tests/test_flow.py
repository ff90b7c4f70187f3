"""End to end on loopback: upload, download, Range, delete, listing, ids, tenancy."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from urllib3 import encode_multipart_formdata

from mediagrid.client import Client, MediagridError
from mediagrid.signing import signed_headers
from mediagrid_dev import DevCluster

from .conftest import sha256_of

pytestmark = pytest.mark.integration


def _row(cluster: DevCluster, app: str, user: str, file_id: str) -> dict[str, Any] | None:
    conn = cluster.db()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM files WHERE app=%s AND user=%s AND file_id=%s", (app, user, file_id))
            return cur.fetchone()
    finally:
        conn.close()


def test_upload_download_range_delete(cluster: DevCluster, client: Client, payload: Path) -> None:
    data = payload.read_bytes()
    info = client.upload(payload, "alice", "clip.bin")
    assert info["size"] == len(data)
    assert info["sha256"] == sha256_of(payload)
    row = _row(cluster, "demo", "alice", "clip.bin")
    assert row is not None and row["sha256"] == info["sha256"]
    on_disk = cluster.group_dir(row["grp"]) / row["path"]
    assert on_disk.read_bytes() == data
    assert row["path"].endswith(f"{row['sid']:016x}.bin")

    url = client.playback_url("alice", "clip.bin")
    whole = requests.get(url, timeout=10)
    assert whole.status_code == 200
    assert hashlib.sha256(whole.content).hexdigest() == info["sha256"]
    assert whole.headers["X-MG-SHA256"] == info["sha256"]
    n = len(data)
    for first, last in ((0, 99), (n // 2, n // 2 + 4095), (n - 100, n - 1)):
        part = requests.get(url, headers={"Range": f"bytes={first}-{last}"}, timeout=10)
        assert part.status_code == 206
        assert part.content == data[first : last + 1]
        assert part.headers["Content-Range"] == f"bytes {first}-{last}/{n}"
    suffix = requests.get(url, headers={"Range": "bytes=-10"}, timeout=10)
    assert suffix.content == data[-10:]
    head = requests.head(url, timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == n

    # straight from a storage node of the group, too
    storage = client.storages("alice")["storages"][0]["url"]
    path = "/api/v1/files/demo/alice/clip.bin"
    direct = requests.get(
        storage + path, headers=signed_headers("demo", cluster.app_secret, "GET", path), timeout=10
    )
    assert direct.content == data

    assert [f["file_id"] for f in client.list("alice")].count("clip.bin") == 1
    client.delete("alice", "clip.bin")
    assert _row(cluster, "demo", "alice", "clip.bin") is None
    assert not on_disk.exists()
    gone = requests.get(url, timeout=10)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "file_not_found"


def test_generated_ids_and_content_type(cluster: DevCluster, client: Client, tmp_path: Path) -> None:
    video = tmp_path / "movie.mp4"
    video.write_bytes(os.urandom(100_000))
    info = client.upload(video, "bob")
    assert len(info["file_id"]) == 16 and int(info["file_id"], 16) > 0
    assert info["content_type"] == "video/mp4"
    resp = requests.get(client.playback_url("bob", info["file_id"]), timeout=10)
    assert resp.headers["Content-Type"] == "video/mp4"
    row = _row(cluster, "demo", "bob", info["file_id"])
    assert row is not None and row["path"].endswith(".mp4")


def test_multipart_post_for_browsers(cluster: DevCluster, client: Client) -> None:
    storage = client.storages("carol")["storages"][0]["url"]
    path = "/api/v1/files/demo/carol"
    body = os.urandom(700_000)
    form, ctype = encode_multipart_formdata({"file": ("pic.jpg", body, "image/jpeg"), "file_id": "pic.jpg"})
    digest = hashlib.sha256(body).hexdigest()  # the file part's: what the shim stores
    resp = requests.post(
        storage + path,
        headers=signed_headers(
            "demo", cluster.app_secret, "POST", path, content_sha256=digest, content_type=ctype
        ),
        data=form,
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["file_id"] == "pic.jpg"
    assert resp.json()["content_type"] == "image/jpeg"
    got = requests.get(client.playback_url("carol", "pic.jpg"), timeout=10)
    assert got.content == body
    row = _row(cluster, "demo", "carol", "pic.jpg")
    assert row is not None
    tmp = cluster.group_dir(row["grp"]) / ".tmp"
    assert list(tmp.iterdir()) == []


def test_duplicate_id_conflicts_unless_overwrite(cluster: DevCluster, client: Client, tmp_path: Path) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_bytes(b"first version")
    second.write_bytes(b"second version, longer")
    client.upload(first, "dave", "note.txt")
    old = _row(cluster, "demo", "dave", "note.txt")
    with pytest.raises(MediagridError) as err:
        client.upload(second, "dave", "note.txt")
    assert err.value.status == 409 and err.value.code == "file_exists"
    info = client.upload(second, "dave", "note.txt", overwrite=True)
    assert info["replaced"] is True
    new = _row(cluster, "demo", "dave", "note.txt")
    assert old is not None and new is not None
    assert new["size"] == second.stat().st_size
    assert not (cluster.group_dir(old["grp"]) / old["path"]).exists()
    assert requests.get(client.playback_url("dave", "note.txt"), timeout=10).content == second.read_bytes()


def test_a_retry_after_a_lost_answer_is_not_a_conflict(client: Client, tmp_path: Path) -> None:
    """An upload whose node stored the file but died before answering is retried on the
    peer: a 409 for exactly the same bytes is the success the client never heard of."""
    same, other = tmp_path / "same.bin", tmp_path / "other.bin"
    same.write_bytes(b"stored, answer lost" * 1000)
    other.write_bytes(b"different bytes" * 1000)
    client.upload(same, "lost", "clip.bin")
    calls: list[bool] = []

    def lost_then_retry(
        user: str, code: str, call: Callable[[str, bool], dict[str, Any]], rounds: int = 1
    ) -> dict[str, Any]:
        base = client.storages(user)["storages"][0]["url"]
        calls.append(True)
        return call(base, True)  # as _on_group does after a failed first attempt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(client, "_on_group", lost_then_retry)
        info = client.upload(same, "lost", "clip.bin")
        assert info["sha256"] == sha256_of(same) and info["size"] == same.stat().st_size
        with pytest.raises(MediagridError) as err:  # other bytes under the id stay a conflict
            client.upload(other, "lost", "clip.bin")
        assert err.value.status == 409
    assert calls == [True, True]
    with pytest.raises(MediagridError) as err:  # a first attempt's 409 is a conflict
        client.upload(same, "lost", "clip.bin")
    assert err.value.status == 409


def test_tenant_isolation(cluster: DevCluster, client: Client, other_client: Client, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"tenant demo only")
    client.upload(secret, "erin", "secret.txt")
    # the other tenant cannot list, read, delete or upload into demo's namespace
    calls: list[Callable[[], object]] = [
        lambda: other_client._call("GET", cluster.url, "/api/v1/files/demo/erin"),
        lambda: other_client._call("GET", cluster.url, "/files/demo/erin/secret.txt"),
        lambda: other_client._call("GET", cluster.url, "/api/v1/storages", {"app": "demo", "user": "erin"}),
    ]
    for call in calls:
        with pytest.raises(MediagridError) as err:
            call()
        assert err.value.status == 403
    storage = client.storages("erin")["storages"][0]["url"]
    for method in ("GET", "DELETE", "PUT"):
        with pytest.raises(MediagridError) as err:
            other_client._call(method, storage, "/api/v1/files/demo/erin/secret.txt", data=b"x")
        assert err.value.status == 403
    # a signed URL of the other tenant's secret does not open demo's file
    forged = other_client.playback_url("erin", "secret.txt").replace("/files/other/", "/files/demo/")
    assert requests.get(forged, timeout=10).status_code == 401
    # same user name in the other tenant is a different namespace
    assert other_client.list("erin") == []
    assert _row(cluster, "demo", "erin", "secret.txt") is not None


def test_both_trackers_agree_on_routes(cluster: DevCluster) -> None:
    results = set()
    for i in range(2):
        query = {"app": "demo", "user": "frank"}
        headers = signed_headers("demo", cluster.app_secret, "GET", "/api/v1/storages", query)
        resp = requests.get(
            cluster.tracker_url(i) + "/api/v1/storages", params=query, headers=headers, timeout=5
        )
        assert resp.status_code == 200
        body = resp.json()
        results.add(body["group"])
        assert [s["node_id"][:2] for s in body["storages"]] == [body["group"].replace("g", "s")] * 2
    assert len(results) == 1


def test_ids_are_unique_across_workers_and_restarts(cluster: DevCluster, client: Client) -> None:
    seen: list[int] = []
    for _ in range(20):
        seen.extend(client.ids(1000))
    cluster.stop_service("ids")
    cluster.start_service("ids")
    for _ in range(5):
        seen.extend(client.ids(1000))
    assert len(seen) == len(set(seen)) == 25_000
    assert all(0 < i < 2**63 for i in seen)
    for bad in ("0", "1001", "abc", "-1"):
        resp = requests.get(
            cluster.url + "/api/v1/ids",
            params={"count": bad},
            headers={"Authorization": "Bearer " + client.token()},
            timeout=5,
        )
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_count"


def test_groups_health_openapi_and_cli(cluster: DevCluster, tmp_path: Path) -> None:
    token = Client(cluster.url, cluster.admin_app, cluster.admin_secret).token()
    groups = requests.get(
        cluster.url + "/api/v1/groups", headers={"Authorization": f"Bearer {token}"}, timeout=5
    ).json()["groups"]
    assert {g["name"] for g in groups} == {"g1", "g2"}
    assert all(len(g["members"]) == 2 for g in groups)
    assert requests.get(cluster.url + "/api/v1/health", timeout=5).json()["db"] == "ok"
    spec = requests.get(cluster.url + "/api/v1/openapi.json", timeout=5).json()
    assert "/api/v1/storages" in spec["paths"]

    env = {**os.environ, "MEDIAGRID_CLIENT_CONFIG": str(cluster.root / "client.toml")}
    src = tmp_path / "cli.bin"
    src.write_bytes(os.urandom(200_000))
    cli = [sys.executable, "-m", "mediagrid.cli"]
    url = subprocess.run(
        [*cli, "upload", str(src), "--user", "gina", "--id", "cli.bin"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert url.startswith(cluster.url + "/files/demo/gina/cli.bin?")
    assert requests.get(url, timeout=5).content == src.read_bytes()
    out = subprocess.run(
        [*cli, "ls", "--user", "gina"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("cli.bin\t200000\t")
    dst = tmp_path / "back.bin"
    subprocess.run(
        [*cli, "download", "cli.bin", "--user", "gina", "-o", str(dst)],
        env=env,
        check=True,
        capture_output=True,
    )
    assert dst.read_bytes() == src.read_bytes()
    # the topology is for admin apps: the demo app is refused, the cluster's ops app sees it
    refused = subprocess.run([*cli, "cluster"], env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "forbidden" in refused.stderr
    ops = {**env, "MEDIAGRID_APP": cluster.admin_app, "MEDIAGRID_SECRET": cluster.admin_secret}
    table = subprocess.run([*cli, "cluster"], env=ops, capture_output=True, text=True, check=True).stdout
    assert table.count("ACTIVE") >= 4
    subprocess.run([*cli, "rm", "cli.bin", "--user", "gina"], env=env, check=True, capture_output=True)
    missing = subprocess.run(
        [*cli, "download", "cli.bin", "--user", "gina", "-o", str(dst)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "file_not_found" in missing.stderr


def test_segment_reservations_never_overlap_under_contention(cluster: DevCluster) -> None:
    """Many id servers reserving at once (each thread its own connection) get disjoint ranges."""
    import threading

    from mediagrid.idalloc import reserve_segment

    got: list[tuple[int, int]] = []
    lock = threading.Lock()

    def server() -> None:
        for _ in range(25):
            seg = reserve_segment(cluster.db_conf, "contention-test", 1000)
            with lock:
                got.append(seg)

    threads = [threading.Thread(target=server) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 150
    spans = sorted(got)
    assert all(hi - lo + 1 == 1000 for lo, hi in spans)
    assert all(spans[i][1] < spans[i + 1][0] for i in range(len(spans) - 1))


def test_admin_schema_and_apps(cluster: DevCluster, tmp_path: Path) -> None:
    conf = tmp_path / "admin.toml"
    conf.write_text(
        f'DB_HOST = "127.0.0.1"\nDB_PORT = {cluster.db_port}\nDB_USER = "mediagrid"\n'
        f'DB_PASSWORD = "{cluster.db_password}"\nDB_NAME = "mediagrid"\n'
    )
    admin = [sys.executable, "-m", "mediagrid.admin", "--config", str(conf)]
    again = subprocess.run([*admin, "schema", "upgrade"], capture_output=True, text=True, check=True)
    assert "(no change)" in again.stdout
    secret = subprocess.run(
        [*admin, "app", "create", "tenant3"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert len(secret) >= 32
    same = subprocess.run(
        [*admin, "app", "create", "tenant3"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert same == secret  # creating again keeps the secret
    states = [
        subprocess.run(
            [*admin, "app", "set", "tenant4"], input=f"{sec}\n", capture_output=True, text=True, check=True
        ).stdout.strip()
        for sec in ("s" * 20, "s" * 20, "t" * 20)
    ]
    assert states == ["created", "unchanged", "updated"]
    listed = subprocess.run([*admin, "app", "list"], capture_output=True, text=True, check=True).stdout
    assert "tenant3\t" in listed
    tenant = Client(cluster.url, "tenant3", secret)
    assert tenant.list("anyone") == []
    bad = subprocess.run([*admin, "app", "create", "Bad/Name"], capture_output=True, text=True)
    assert bad.returncode == 1 and "app must match" in bad.stderr


def test_new_users_spread_over_equally_free_groups(client: Client) -> None:
    groups = {client.storages(f"spread-{i}")["group"] for i in range(20)}
    assert groups == {"g1", "g2"}
