"""Names compare byte-exact (issue 11, item 2): file ids and users that differ only in case
are different names, on a new cluster and on one upgraded from the old collation."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymysql
import pytest

from mediagrid import schema
from mediagrid.client import Client
from mediagrid_dev import DevCluster

pytestmark = pytest.mark.integration


def _put(client: Client, tmp_path: Path, user: str, file_id: str, data: bytes) -> None:
    src = tmp_path / f"{time.monotonic_ns()}.txt"
    src.write_bytes(data)
    client.upload(src, user, file_id)


def _get(client: Client, user: str, file_id: str) -> bytes:
    out = io.BytesIO()
    client.download(user, file_id, out)
    return out.getvalue()


def test_file_ids_differing_in_case_are_two_files(client: Client, tmp_path: Path) -> None:
    user = f"bob{time.monotonic_ns()}"
    _put(client, tmp_path, user, "a.txt", b"lower")
    _put(client, tmp_path, user, "A.txt", b"upper")  # 409 file_exists under unicode_ci
    assert _get(client, user, "a.txt") == b"lower"
    assert _get(client, user, "A.txt") == b"upper"
    assert sorted(f["file_id"] for f in client.list(user)) == ["A.txt", "a.txt"]


def test_users_differing_in_case_see_only_their_own_files(client: Client, tmp_path: Path) -> None:
    user = f"carol{time.monotonic_ns()}"
    _put(client, tmp_path, user, "mine.txt", b"carol's")
    assert [f["file_id"] for f in client.list(user)] == ["mine.txt"]
    assert client.list(user.capitalize()) == []  # listed carol's files under unicode_ci


FILE_ROW = (
    "INSERT INTO {db}files (app, user, file_id, sid, grp, path, size, sha256, content_type)"
    " VALUES ('demo', 'bob', %s, %s, 'g1', %s, 1, REPEAT('0', 64), 'text/plain')"
)


def _file_row(cur: pymysql.cursors.Cursor, file_id: str, sid: int, db: str = "") -> None:
    cur.execute(FILE_ROW.format(db=f"`{db}`." if db else ""), (file_id, sid, f"00/00/{sid:016x}.txt"))


def _columns(cur: pymysql.cursors.DictCursor, db: str) -> dict[str, str]:
    cur.execute(
        "SELECT CONCAT(TABLE_NAME, '.', COLUMN_NAME) AS c, COLLATION_NAME AS k"
        " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s"
        " AND COLUMN_NAME IN ('app', 'user', 'file_id') AND TABLE_NAME IN ('files', 'routes', 'apps')",
        (db,),
    )
    return {r["c"]: r["k"] for r in cur.fetchall()}


@contextmanager
def scratch_db(cluster: DevCluster, collation: str) -> Iterator[tuple[dict[str, Any], Any]]:
    """A new empty database on the dev cluster's MariaDB (its configuration, and a root
    connection), dropped afterwards."""
    db = f"mg_scratch_{time.monotonic_ns()}"
    conf = {**cluster.db_conf, "DB_NAME": db}
    root = pymysql.connect(
        unix_socket=str(cluster.mariadb.socket), user="root", cursorclass=pymysql.cursors.DictCursor
    )
    try:
        with root.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE {collation}")
            cur.execute(f"GRANT ALL ON `{db}`.* TO '{conf['DB_USER']}'@'127.0.0.1'")
        yield conf, root
    finally:
        with root.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        root.close()


def test_upgrade_migrates_names_in_place(cluster: DevCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database made by the migrations before this one (unicode_ci) keeps its rows and
    compares names as bytes after `schema upgrade`."""
    with scratch_db(cluster, "utf8mb4_unicode_ci") as (conf, root):
        db = conf["DB_NAME"]
        before = [m for m in schema.MIGRATIONS if m[0] < 5]
        monkeypatch.setattr(schema, "MIGRATIONS", before)
        schema.upgrade(conf)
        old = pymysql.connect(
            host="127.0.0.1",
            port=conf["DB_PORT"],
            user=conf["DB_USER"],
            password=conf["DB_PASSWORD"],
            database=db,
        )
        with old.cursor() as cur:
            _file_row(cur, "a.txt", 7)
            cur.execute("INSERT INTO routes (app, user, grp) VALUES ('demo', 'bob', 'g1')")
            with pytest.raises(pymysql.IntegrityError):  # the old collation: one name
                cur.execute("INSERT INTO routes (app, user, grp) VALUES ('demo', 'BOB', 'g2')")
        old.commit()
        old.close()
        monkeypatch.undo()
        assert schema.upgrade(conf) == [m[0] for m in schema.MIGRATIONS if m[0] >= 5]
        with root.cursor() as cur:
            assert set(_columns(cur, db).values()) == {"utf8mb4_bin"}
            cur.execute(f"SELECT user, file_id, sid FROM `{db}`.files")
            assert list(cur.fetchall()) == [{"user": "bob", "file_id": "a.txt", "sid": 7}]
            cur.execute(f"INSERT INTO `{db}`.routes (app, user, grp) VALUES ('demo', 'BOB', 'g2')")
            _file_row(cur, "A.txt", 8, db)
            cur.execute(f"SELECT file_id FROM `{db}`.files WHERE user = 'bob' ORDER BY file_id")
            assert [r["file_id"] for r in cur.fetchall()] == ["A.txt", "a.txt"]
        assert schema.upgrade(conf) == []  # idempotent


def test_upgrade_applies_a_migration_that_landed_after_a_later_one(
    cluster: DevCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migrations written side by side may land out of order: a database that has 12 but
    not 11 gets 11 at the next upgrade, and nothing twice."""
    with scratch_db(cluster, "utf8mb4_bin") as (conf, root):
        # 12 without 11 (13 alters 11's table: it waits for 11 too)
        monkeypatch.setattr(schema, "MIGRATIONS", [m for m in schema.MIGRATIONS if m[0] <= 12 and m[0] != 11])
        schema.upgrade(conf)
        monkeypatch.undo()
        assert schema.upgrade(conf) == [11, *range(13, schema.LATEST + 1)]
        assert schema.upgrade(conf) == []
        with root.cursor() as cur:
            cur.execute(f"SHOW TABLES FROM `{conf['DB_NAME']}` LIKE 'qos_reports'")
            assert cur.fetchone() is not None
