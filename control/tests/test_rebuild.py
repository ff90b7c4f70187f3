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

from mediagrid import identity, names, rebuild
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


def test_the_later_upload_wins_whatever_its_storage_id(
    client: Client, cluster: DevCluster, tmp_path: Path
) -> None:
    """Storage ids do not order uploads: each shim takes ids in batches, so an overwrite on
    another node may get the smaller one. The restored row names a larger storage id here."""
    user = f"sam{time.monotonic_ns()}"
    src = tmp_path / "v.txt"
    src.write_bytes(b"version 1")
    client.upload(src, user, "v.txt")
    src.write_bytes(b"version 2, after the backup")
    client.upload(src, user, "v.txt", overwrite=True)
    v2 = _row(cluster, user, "v.txt")
    group, root = v2["grp"], cluster.group_dir(v2["grp"])

    # 1. The restored row names version 1 with a larger storage id; its object was unlinked
    # by the overwrite. The object found replaces the row that points at nothing.
    gone = v2["sid"] + 5000
    _sql(
        cluster,
        "UPDATE files SET sid = %s, path = %s WHERE app = 'demo' AND user = %s",
        (gone, names.storage_path(gone, ".txt"), user),
    )
    conn = cluster.db()
    try:
        done = rebuild.rebuild(conn, root, group, "rebuild-test", 1000)
        assert done["replaced"] == 1
        assert _row(cluster, user, "v.txt")["sid"] == v2["sid"]
        assert _get(client, user, "v.txt")[0] == b"version 2, after the backup"

        # 2. Both objects are there (a crash between an overwrite's commit and its unlink):
        # an older copy under a larger storage id loses to the object written last.
        older = v2["sid"] + 6000
        rel = names.storage_path(older, ".txt")
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"version 1")
        ident = identity.Identity("demo", user, "v.txt", older, group, 9, "0" * 64, "text/plain")
        for key, value in identity.attrs(ident).items():
            os.setxattr(root / rel, key, value)
        hour_ago = time.time() - 3600
        os.utime(root / rel, (hour_ago, hour_ago))
        restored = "UPDATE files SET sid = %s, path = %s WHERE app = 'demo' AND user = %s"
        _sql(cluster, restored, (older, rel, user))
        done = rebuild.rebuild(conn, root, group, "rebuild-test", 1000)
        assert done["replaced"] == 1  # (the older copy is "present" or "superseded": walk order)
        assert _row(cluster, user, "v.txt")["sid"] == v2["sid"]
        assert _get(client, user, "v.txt")[0] == b"version 2, after the backup"
    finally:
        conn.close()
        (root / names.storage_path(v2["sid"] + 6000, ".txt")).unlink(missing_ok=True)


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
