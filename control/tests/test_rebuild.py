"""The namespace survives the database (issue 11, item 3): every stored object carries its
identity, and `mediagrid-admin rebuild` puts back the rows a restored database lacks."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mediagrid import identity, rebuild
from mediagrid.client import Client, MediagridError
from mediagrid.db import one
from mediagrid_dev import DevCluster

pytestmark = pytest.mark.integration


def _row(cluster: DevCluster, user: str, file_id: str) -> dict[str, Any]:
    conn = cluster.db()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT * FROM files WHERE app = 'demo' AND user = %s AND file_id = %s", (user, file_id)
            )
            return one(cur)
    finally:
        conn.close()


def _sql(cluster: DevCluster, statement: str, args: tuple[Any, ...] = ()) -> None:
    conn = cluster.db()
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args)
        conn.commit()
    finally:
        conn.close()


def _get(client: Client, user: str, file_id: str) -> tuple[bytes, str]:
    out = io.BytesIO()
    got = client.download(user, file_id, out)
    return out.getvalue(), str(got.get("content_type", ""))


def test_uploads_carry_their_identity(client: Client, cluster: DevCluster, tmp_path: Path) -> None:
    src = tmp_path / "who.txt"
    src.write_bytes(b"who am I")
    user = f"id{time.monotonic_ns()}"
    client.upload(src, user, "who.txt")
    row = _row(cluster, user, "who.txt")
    ident = identity.read(cluster.group_dir(row["grp"]) / row["path"])
    assert ident == identity.Identity(
        "demo", user, "who.txt", row["sid"], row["grp"], 8, row["sha256"], "text/plain"
    )


def test_rebuild_puts_back_what_a_restored_database_lacks(
    client: Client, cluster: DevCluster, tmp_path: Path
) -> None:
    user = f"rita{time.monotonic_ns()}"
    content = {"keep.txt": os.urandom(5000), "page.html": b"<p>hi</p>", "over.txt": b"version 1"}
    for name, data in content.items():
        (tmp_path / name).write_bytes(data)
        client.upload(tmp_path / name, user, name)
    v1 = _row(cluster, user, "over.txt")
    content["over.txt"] = b"version 2, after the backup"
    (tmp_path / "over.txt").write_bytes(content["over.txt"])
    client.upload(tmp_path / "over.txt", user, "over.txt", overwrite=True)
    group = v1["grp"]

    # The database comes back from a backup taken after over.txt's first version: the
    # user's other files and its route are not in it, over.txt's row is the old version's.
    _sql(cluster, "DELETE FROM files WHERE app = 'demo' AND user = %s AND file_id <> 'over.txt'", (user,))
    _sql(
        cluster,
        "UPDATE files SET sid = %s, path = %s, size = %s, sha256 = %s WHERE app = 'demo' AND user = %s",
        (v1["sid"], v1["path"], v1["size"], v1["sha256"], user),
    )
    _sql(cluster, "DELETE FROM routes WHERE app = 'demo' AND user = %s", (user,))
    with pytest.raises(MediagridError):
        _get(client, user, "keep.txt")

    conn = cluster.db()
    try:
        dry = rebuild.rebuild(conn, cluster.group_dir(group), group, "rebuild-test", 1000, dry_run=True)
        assert (dry["restored"], dry["replaced"]) == (2, 1)
        done = rebuild.rebuild(conn, cluster.group_dir(group), group, "rebuild-test", 1000)
        assert (done["restored"], done["replaced"]) == (2, 1)
        with conn.cursor() as cur:
            cur.execute("SELECT max_id FROM id_segments WHERE name = 'rebuild-test'")
            assert one(cur)["max_id"] == done["highest_sid"] >= _row(cluster, user, "over.txt")["sid"]
        again = rebuild.rebuild(conn, cluster.group_dir(group), group, "rebuild-test", 1000)
        assert (again["restored"], again["replaced"], again["present"]) == (0, 0, done["present"] + 3)
    finally:
        conn.close()
    types = {"keep.txt": "text/plain", "page.html": "text/html", "over.txt": "text/plain"}
    for name, data in content.items():
        got, ctype = _get(client, user, name)
        assert got == data and ctype.startswith(types[name]), name
    assert client.storages(user)["group"] == group


def test_rebuild_command(cluster: DevCluster, admin_env: dict[str, str]) -> None:
    env = admin_env
    argv = [sys.executable, "-m", "mediagrid.admin", "rebuild", "--group", "g1", "--data-dir"]
    out = subprocess.run(
        [*argv, str(cluster.group_dir("g1")), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "restored=" not in out or "restored=0" in out
    assert out.rstrip().endswith("(dry run)")
