"""Per-app quotas (issue 11, item 15): bytes and files, refused with 507 quota_exceeded
before a body is stored, exact under overwrites and deletes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mediagrid import quotas
from mediagrid.client import Client, MediagridError
from mediagrid_dev import DevCluster

from .test_bad_input import _err, _leftovers

pytestmark = pytest.mark.integration


def _app(cluster: DevCluster, max_bytes: int | None, max_files: int | None) -> Client:
    name = f"q{time.monotonic_ns() % 10**12}"
    secret = cluster.add_app(name)
    conn = cluster.db()
    try:
        with conn.cursor() as cur:
            assert quotas.set_quota(cur, name, max_bytes, max_files)
        conn.commit()
    finally:
        conn.close()
    return Client(cluster.url, name, secret)


def _file(tmp_path: Path, size: int) -> Path:
    path = tmp_path / f"{time.monotonic_ns()}.bin"
    path.write_bytes(os.urandom(size))
    return path


def _usage(cluster: DevCluster, app: str) -> tuple[int, int]:
    conn = cluster.db()
    try:
        with conn.cursor() as cur:
            state = quotas.usage(cur, app)
    finally:
        conn.close()
    assert state is not None
    return int(state["bytes"]), int(state["files"])


def test_byte_quota_refuses_before_the_body_is_stored(cluster: DevCluster, tmp_path: Path) -> None:
    client = _app(cluster, 10_000, None)
    client.upload(_file(tmp_path, 6_000), "u", "a.bin")
    before = set(_leftovers(cluster))
    with pytest.raises(MediagridError) as err:
        client.upload(_file(tmp_path, 6_000), "u", "b.bin")
    assert (err.value.status, err.value.code) == (507, "quota_exceeded")
    assert set(_leftovers(cluster)) == before  # nothing of the body was written
    assert _usage(cluster, client.app) == (6_000, 1)
    client.upload(_file(tmp_path, 4_000), "u", "c.bin")  # exactly the quota
    assert _usage(cluster, client.app) == (10_000, 2)


def test_file_quota(cluster: DevCluster, tmp_path: Path) -> None:
    client = _app(cluster, None, 2)
    for name in ("a", "b"):
        client.upload(_file(tmp_path, 10), "u", name)
    with pytest.raises(MediagridError) as err:
        client.upload(_file(tmp_path, 10), "v", "c")
    assert err.value.code == "quota_exceeded"


def test_overwrite_and_delete_keep_the_usage_exact(cluster: DevCluster, tmp_path: Path) -> None:
    client = _app(cluster, 10_000, 5)
    client.upload(_file(tmp_path, 8_000), "u", "big.bin")
    # replacing it with one of the same size fits: the old one stops counting at the commit
    client.upload(_file(tmp_path, 8_000), "u", "big.bin", overwrite=True)
    assert _usage(cluster, client.app) == (8_000, 1)
    client.delete("u", "big.bin")
    assert _usage(cluster, client.app) == (0, 0)
    client.upload(_file(tmp_path, 9_000), "u", "again.bin")  # the freed room is usable


def test_a_body_without_declared_size_is_refused_at_the_commit(cluster: DevCluster) -> None:
    client = _app(cluster, 1_000, None)
    storage = client.storages("u")["storages"][0]["url"]
    path = f"/api/v1/files/{client.app}/u/chunked.bin"
    token = client.token(600)

    def body() -> Iterator[bytes]:  # chunked: no Content-Length, so only the commit can tell
        yield os.urandom(1_500)

    resp = requests.put(storage + path, data=body(), headers={"Authorization": f"Bearer {token}"}, timeout=10)
    _err(resp, 507, "quota_exceeded")
    assert _usage(cluster, client.app) == (0, 0)
