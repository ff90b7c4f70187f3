"""The agent's janitor on loopback: it reclaims orphaned stored objects (issue 11, item 4)
and never removes anything but a stored object of its own volume, whatever path a row
names (item 9)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from mediagrid import config, inflight, names
from mediagrid.agent import Janitor
from mediagrid.client import Client
from mediagrid.config import Settings
from mediagrid.db import Connection, one
from mediagrid_dev import DevCluster

pytestmark = pytest.mark.integration

HOUR_AGO = time.time() - 3600


def _agent_conf(cluster: DevCluster, group: str) -> Settings:
    node = next(n for n, i in cluster.storage_nodes.items() if i["group"] == group)
    return config.load_settings(path=str(cluster.root / "conf" / f"agent-{node}.toml"))


def _put(root: Path, rel: str, data: bytes = b"bytes", mtime: float = HOUR_AGO) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def test_janitor_removes_orphans_and_nothing_else(
    cluster: DevCluster, client: Client, conn: Connection, tmp_path: Path
) -> None:
    """An old stored object no row refers to is removed; a recorded file, a young orphan, an
    upload in flight, a file stored after the database's last reserved id (a database
    restored from a backup), a foreign file and links to files outside stay."""
    src = tmp_path / "kept.bin"
    src.write_bytes(os.urandom(5000))
    group = client.upload(src, "jan", "kept.bin")["group"]
    root = cluster.group_dir(group)
    with conn.cursor() as cur:
        cur.execute("SELECT sid, path FROM files WHERE user = 'jan' AND file_id = 'kept.bin'")
        kept = one(cur)
        cur.execute("SELECT max_id FROM id_segments WHERE name = 'files'")
        ceiling = int(one(cur)["max_id"])
    conn.commit()
    os.utime(root / kept["path"], (HOUR_AGO - 3600, HOUR_AGO - 3600))
    orphan, young, flying = client.ids(3)
    orphan_p = _put(root, names.storage_path(orphan, ".bin"), mtime=HOUR_AGO - 3600)
    young_p = _put(root, names.storage_path(young), mtime=time.time())
    flying_p = _put(root, names.storage_path(flying, ".mp4"), mtime=HOUR_AGO - 3600)
    later_p = _put(root, names.storage_path(ceiling + 10**6), mtime=HOUR_AGO - 3600)
    foreign_p = _put(root, "7f/ff/notes.txt", mtime=HOUR_AGO - 3600)
    outside = _put(tmp_path, "outside/aa/bb/00000000aabb0001", mtime=HOUR_AGO - 3600)
    (root / "aa").symlink_to(tmp_path / "outside" / "aa")
    link_sid = client.ids(1)[0]
    link_p = root / names.storage_path(link_sid)
    link_p.parent.mkdir(parents=True, exist_ok=True)
    link_p.symlink_to(outside)
    os.utime(link_p, (HOUR_AGO - 3600, HOUR_AGO - 3600), follow_symlinks=False)
    with conn.cursor() as cur:
        inflight.begin(cur, flying, group, names.storage_path(flying, ".mp4"), "test")
    conn.commit()
    conf = replace(_agent_conf(cluster, group), orphan_grace_seconds=3600.0)
    try:
        Janitor(conf).sweep()
        assert not orphan_p.exists(), "the orphan was not reclaimed"
        for path in (root / kept["path"], young_p, flying_p, later_p, foreign_p, outside, link_p):
            assert os.path.lexists(path), path
        back = requests.get(client.playback_url("jan", "kept.bin", 600), timeout=10)
        assert back.content == src.read_bytes()
    finally:
        with conn.cursor() as cur:
            inflight.finish(cur, flying)
        conn.commit()
        for path in (young_p, flying_p, later_p, foreign_p, link_p, root / "aa"):
            path.unlink(missing_ok=True)


@pytest.mark.parametrize(
    ("recorded", "sid"),
    [
        ("../outside.bin", 0x7E000009),  # up and out of the volume
        ("{abs}", 0x7E000009),  # an absolute path
        ("7e/00/000000007e000001", 0x7E000001),  # its directory is a link to one outside
        ("7e/01/000000007e010001", 0x7E010001),  # the file is a link to a file outside
        ("7e/02/000000007e020002", 0x7E020001),  # a stored object, but another upload's
        ("7e/03/000000007e030001\n", 0x7E030001),  # not exactly a storage path
    ],
)
def test_janitor_removes_only_the_rows_own_stored_object(
    cluster: DevCluster, conn: Connection, tmp_path: Path, recorded: str, sid: int
) -> None:
    """An in-flight row whose path is not its own stored object's under the volume: the
    janitor (root on the nodes) forgets the row and removes nothing."""
    root = cluster.group_dir("g1")
    victim = _put(cluster.root / "groups", "outside.bin")
    absolute = _put(tmp_path, "abs.bin")
    target = _put(tmp_path, "dir/000000007e000001")
    (root / "7e/01").mkdir(parents=True, exist_ok=True)
    (root / "7e/00").symlink_to(tmp_path / "dir")
    (root / "7e/01/000000007e010001").symlink_to(absolute)
    other = _put(root, "7e/02/000000007e020002")
    _put(root, "7e/03/000000007e030001")
    rel = recorded.format(abs=absolute)
    with conn.cursor() as cur:
        inflight.begin(cur, sid, "g1", rel, "test")
        cur.execute("UPDATE uploads SET started = NOW() - INTERVAL 2 HOUR WHERE sid = %s", (sid,))
    conn.commit()
    try:
        Janitor(_agent_conf(cluster, "g1")).sweep()
        for path in (victim, absolute, target, other, root / "7e/03/000000007e030001"):
            assert path.exists(), f"{path} was removed for a row naming {rel!r}"
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) AS n FROM uploads WHERE sid = %s", (sid,))
            assert one(cur)["n"] == 0, "the row was kept"
        conn.commit()
    finally:
        with conn.cursor() as cur:
            inflight.finish(cur, sid)
        conn.commit()
        victim.unlink(missing_ok=True)
        for rel_ in ("7e/00", "7e/01/000000007e010001", "7e/02/000000007e020002", "7e/03/000000007e030001"):
            (root / rel_).unlink(missing_ok=True)
        for rel_ in ("7e/01", "7e/02", "7e/03", "7e"):
            (root / rel_).rmdir()
