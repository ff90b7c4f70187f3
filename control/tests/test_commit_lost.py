"""A commit whose answer is lost never deletes the committed file (issue 11, item 1).

The shims of one group reach MariaDB through ``DbProxy``, which lets the COMMIT that
records a file happen and then cuts the connection before its answer reaches the shim."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mediagrid.client import Client
from mediagrid.db import one
from mediagrid.signing import signed_headers
from mediagrid_dev import DevCluster

from .conftest import sha256_of
from .dbproxy import DbProxy

pytestmark = pytest.mark.integration
USER = "lou"


@pytest.fixture(scope="module")
def proxy(cluster: DevCluster, client: Client) -> Iterator[DbProxy]:
    """Every shim of USER's group talks to MariaDB through the proxy."""
    group = client.storages(USER)["group"]
    shims = [f"shim-{n}" for n, i in cluster.storage_nodes.items() if i["group"] == group]
    prox = DbProxy(cluster.db_port)
    for shim in shims:
        cluster.reconfigure(shim, {"DB_PORT": prox.port})
    try:
        yield prox
    finally:
        for shim in shims:
            cluster.reconfigure(shim, {"DB_PORT": cluster.db_port})
        prox.close()


def _download(client: Client, file_id: str) -> bytes:
    resp = requests.get(client.playback_url(USER, file_id, 600), timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.content


def _path(cluster: DevCluster, file_id: str) -> Path:
    conn = cluster.db()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT grp, path FROM files WHERE user = %s AND file_id = %s", (USER, file_id))
            row = one(cur)
    finally:
        conn.close()
    return cluster.group_dir(row["grp"]) / row["path"]


def test_lost_commit_answer_keeps_the_upload(
    cluster: DevCluster, client: Client, proxy: DbProxy, tmp_path: Path
) -> None:
    """The shim re-reads the row before undoing anything: the upload succeeds at once."""
    src = tmp_path / "lost.bin"
    src.write_bytes(os.urandom(200_000))
    proxy.arm(cut_commits=1)
    info = client.upload(src, USER, "lost.bin")
    assert proxy.cuts == 1, "no commit answer was lost"
    assert info["sha256"] == sha256_of(src) and info["size"] == 200_000
    assert _download(client, "lost.bin") == src.read_bytes()
    assert _path(cluster, "lost.bin").read_bytes() == src.read_bytes()


def test_lost_commit_answer_of_an_overwrite_keeps_the_new_version(
    cluster: DevCluster, client: Client, proxy: DbProxy, tmp_path: Path
) -> None:
    """One PUT with overwrite=1, no client retry: the new version is stored and served, the
    replaced one is removed (on main both were lost: 503, the row pointing at nothing)."""
    old, new = os.urandom(100_000), os.urandom(120_000)
    (tmp_path / "v1").write_bytes(old)
    client.upload(tmp_path / "v1", USER, "twice.bin")
    replaced = _path(cluster, "twice.bin")
    node = client.storages(USER)["storages"][0]["url"]
    path = f"/api/v1/files/demo/{USER}/twice.bin"
    query = {"overwrite": "1"}
    proxy.arm(cut_commits=1)
    resp = requests.put(
        node + path,
        params=query,
        data=new,
        headers=signed_headers("demo", cluster.app_secret, "PUT", path, query, new),
        timeout=30,
    )
    assert proxy.cuts == 1, "no commit answer was lost"
    assert resp.status_code == 201, resp.text
    assert resp.json()["replaced"] is True
    assert _download(client, "twice.bin") == new
    assert not replaced.exists(), "the replaced version was left behind"


def test_unknown_commit_outcome_keeps_the_file_for_the_retry(
    cluster: DevCluster, client: Client, proxy: DbProxy, tmp_path: Path
) -> None:
    """The re-read cannot reach MariaDB either: the shim keeps the file and answers 503; the
    client's retry on the group's other node finds the same bytes stored (409, then a
    checksum match) and reports success."""
    src = tmp_path / "unsure.bin"
    src.write_bytes(os.urandom(150_000))
    proxy.arm(cut_commits=1, refuse_next=1)
    info = client.upload(src, USER, "unsure.bin")
    assert proxy.cuts == 1 and proxy.refused == 1, "the re-read was not refused"
    assert info["sha256"] == sha256_of(src) and info["size"] == 150_000
    assert _download(client, "unsure.bin") == src.read_bytes()
