"""Failures on loopback: a stopped storage, MariaDB down, the id service down."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from mediagrid import config, inflight, names, removed
from mediagrid.agent import Janitor
from mediagrid.client import Client, MediagridError
from mediagrid.db import one
from mediagrid.signing import signed_headers
from mediagrid_dev import DevCluster

from .test_bad_input import _err, _leftovers, _rows

pytestmark = pytest.mark.integration


def _states_on(cluster: DevCluster, tracker: int) -> dict[str, str]:
    """Every node's state as one tracker sees it (the topology: admin credentials)."""
    path = "/api/v1/groups"
    resp = requests.get(
        cluster.tracker_url(tracker) + path,
        timeout=5,
        headers=signed_headers(cluster.admin_app, cluster.admin_secret, "GET", path),
    )
    return {m["node_id"]: m["state"] for g in resp.json()["groups"] for m in g["members"]}


def test_stopped_storage_goes_offline_and_peer_takes_uploads(
    cluster: DevCluster, client: Client, tmp_path: Path
) -> None:
    info = client.storages("liz")
    group, first = info["group"], info["storages"][0]["node_id"]
    peer = next(s["node_id"] for s in info["storages"] if s["node_id"] != first)
    src = tmp_path / "during.bin"
    src.write_bytes(os.urandom(500_000))
    for svc in cluster.node_services(first):
        cluster.stop_service(svc)
    stopped = time.monotonic()
    try:
        # before the tracker notices, the client fails over to the peer by itself
        up = client.upload(src, "liz", "during.bin")
        assert up["node_id"] == peer and up["group"] == group
        while any(_states_on(cluster, i)[first] != "OFFLINE" for i in range(2)):
            assert time.monotonic() - stopped <= 6.0, "not OFFLINE within 6 s"
            time.sleep(0.1)
        detected = time.monotonic() - stopped
        print(f"OFFLINE on every tracker {detected:.2f} s after the node stopped")
        assert [s["node_id"] for s in client.storages("liz")["storages"]] == [peer]
        up2 = client.upload(src, "liz", "after.bin")
        assert up2["node_id"] == peer
        assert requests.get(client.playback_url("liz", "during.bin"), timeout=5).content == src.read_bytes()
    finally:
        for svc in cluster.node_services(first):
            cluster.start_service(svc)
    cluster.wait_active(4, 15)
    assert _states_on(cluster, 0)[first] == "ACTIVE"


def test_whole_group_down_is_503(cluster: DevCluster, client: Client, tmp_path: Path) -> None:
    group = client.storages("mo")["group"]
    nodes = [n for n, i in cluster.storage_nodes.items() if i["group"] == group]
    for node in nodes:
        cluster.stop_service(f"agent-{node}")
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.storages("mo")
            except MediagridError as err:
                assert err.status == 503 and err.code == "no_active_storage"
                break
            time.sleep(0.2)
        else:
            pytest.fail("group never reported as having no active storage")
    finally:
        for node in nodes:
            cluster.start_service(f"agent-{node}")
    cluster.wait_active(4, 15)


def test_mariadb_down_503_then_recovers(cluster: DevCluster, client: Client, tmp_path: Path) -> None:
    src = tmp_path / "db.bin"
    src.write_bytes(os.urandom(300_000))
    storage = client.storages("nina")["storages"][0]["url"]
    client.storages("zed")  # warm route caches for a user seen before the outage
    before, rows = _leftovers(cluster), _rows(cluster)
    cluster.stop_service("mariadb")
    try:
        path = "/api/v1/files/demo/nina/db.bin"
        resp = requests.put(
            storage + path,
            data=src.read_bytes(),
            timeout=10,
            headers=signed_headers("demo", cluster.app_secret, "PUT", path),
        )
        # the app-secret cache may still be warm: then the upload itself meets the dead DB
        _err(resp, 503, "db_unavailable")
        q = {"app": "demo", "user": "brand-new-user"}
        resp = requests.get(
            cluster.url + "/api/v1/storages",
            params=q,
            timeout=10,
            headers=signed_headers("demo", cluster.app_secret, "GET", "/api/v1/storages", q),
        )
        _err(resp, 503, "db_unavailable")
        health = requests.get(cluster.url + "/api/v1/health?strict=1", timeout=10)
        assert health.status_code == 503 and health.json()["db"] == "unavailable"
    finally:
        cluster.start_service("mariadb", 60)
    assert _leftovers(cluster) == before
    # full service returns by itself, no restart of the services
    deadline = time.monotonic() + 20
    while True:
        try:
            info = client.upload(src, "nina", "db.bin")
            break
        except MediagridError:
            assert time.monotonic() < deadline, "service did not come back after MariaDB returned"
            time.sleep(0.5)
    assert info["size"] == 300_000
    assert _rows(cluster) == rows + 1
    # every tracker thread is back too: new users are routed (a thread whose connection
    # died in the restart answers one 503, then reconnects)
    for i in range(len(cluster.tracker_ports)):
        deadline = time.monotonic() + 10
        for n in range(40):
            q = {"app": "demo", "user": f"after-outage-{i}-{n}"}
            resp = requests.get(
                cluster.tracker_url(i) + "/api/v1/storages",
                params=q,
                timeout=5,
                headers=signed_headers("demo", cluster.app_secret, "GET", "/api/v1/storages", q),
            )
            if resp.status_code != 200:
                assert time.monotonic() < deadline, resp.text
                time.sleep(0.2)


def test_id_service_unreachable_is_503(cluster: DevCluster, client: Client) -> None:
    group = client.storages("oscar")["group"]
    node = next(n for n, i in cluster.storage_nodes.items() if i["group"] == group)
    before = _leftovers(cluster)
    cluster.stop_service("ids")
    cluster.stop_service(f"shim-{node}")  # a fresh shim has no prefetched ids
    cluster.start_service(f"shim-{node}")
    try:
        path = "/api/v1/files/demo/oscar/x.bin"
        resp = requests.put(
            cluster.storage_url(node) + path,
            data=b"abc",
            timeout=10,
            headers=signed_headers("demo", cluster.app_secret, "PUT", path),
        )
        _err(resp, 503, "id_service_unavailable")
        assert _leftovers(cluster) == before
    finally:
        cluster.start_service("ids")


def test_janitor_removes_an_upload_its_shim_never_finished(cluster: DevCluster, client: Client) -> None:
    """What a shim killed mid-upload leaves: its file at the final path, still recorded as
    in flight. The agents' janitor removes it once nobody has written it for a while, and
    leaves alone an upload still being written (fresh mtime) however old its row."""
    node = next(n for n, i in cluster.storage_nodes.items() if i["group"] == "g1")
    conf = config.load_settings(path=str(cluster.root / "conf" / f"agent-{node}.toml"))
    root = cluster.group_dir("g1")
    dead, live = ((sid, names.storage_path(sid, ".bin")) for sid in (0x7FFF0007, 0x7FFF0008))
    (root / "7f/ff").mkdir(parents=True, exist_ok=True)
    for _, rel in (dead, live):
        (root / rel).write_bytes(b"half an upload")
    os.utime(root / dead[1], (time.time() - 3600, time.time() - 3600))
    conn = cluster.db()
    try:
        with conn.cursor() as cur:
            for sid, rel in (dead, live):
                inflight.begin(cur, sid, "g1", rel, node)
            cur.execute(
                "UPDATE uploads SET started = NOW() - INTERVAL 1 HOUR WHERE sid IN (%s, %s)",
                (dead[0], live[0]),
            )
        conn.commit()
        assert Janitor(conf).sweep() == 1
        assert not (root / dead[1]).exists() and (root / live[1]).exists()
        with conn.cursor() as cur:
            cur.execute("SELECT sid FROM uploads WHERE sid IN (%s, %s)", (dead[0], live[0]))
            assert [r["sid"] for r in cur.fetchall()] == [live[0]]
            inflight.finish(cur, live[0])
        conn.commit()
    finally:
        conn.close()
        (root / live[1]).unlink(missing_ok=True)
        (root / "7f/ff").rmdir()
        (root / "7f").rmdir()


def test_in_place_uploads_leave_no_in_flight_rows(
    cluster: DevCluster, client: Client, tmp_path: Path
) -> None:
    src = tmp_path / "small.bin"
    src.write_bytes(os.urandom(70_000))
    for i in range(5):
        client.upload(src, "olga", f"s{i}.bin")
    conn = cluster.db()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) AS n FROM uploads")
            assert one(cur)["n"] == 0
    finally:
        conn.close()


def test_removed_node_leaves_the_listing_and_its_key_stops_working(
    cluster: DevCluster, admin_env: dict[str, str]
) -> None:
    """Item 8: an operator could not take a node out; `mediagrid-admin node remove` makes
    its heartbeats fail on every tracker and drops it from the listing, until `node allow`."""
    node = next(iter(cluster.storage_nodes))
    env = admin_env
    admin = [sys.executable, "-m", "mediagrid.admin", "node"]
    subprocess.run([*admin, "remove", node], env=env, check=True, capture_output=True)
    try:
        # every process of every tracker rereads the list within CACHE_SECONDS: the gunicorn
        # worker that answers the heartbeat below may not be the one that answered the listing
        time.sleep(removed.CACHE_SECONDS + 0.5)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(node in _states_on(cluster, t) for t in (0, 1)):
            time.sleep(0.5)
        assert all(node not in _states_on(cluster, t) for t in (0, 1))
        body = (
            f'{{"node_id": "{node}", "group": "g1", "url": "http://127.0.0.1:1", "free": 1, "total": 1,'
            f' "reserve": 0, "load": 0, "heal_pending": 0, "seq": {time.time_ns()}}}'
        ).encode()
        path = "/api/v1/cluster/heartbeat"
        headers = signed_headers(node, cluster.node_key(node), "POST", path, None, body, cluster=True)
        _err(
            requests.post(cluster.tracker_url(0) + path, data=body, headers=headers, timeout=5),
            403,
            "node_removed",
        )
    finally:
        subprocess.run([*admin, "allow", node], env=env, check=True, capture_output=True)
        time.sleep(removed.CACHE_SECONDS + 0.5)  # no process still holds it removed
    cluster.wait_active(len(cluster.storage_nodes), 30)
