"""The ``files`` table: every statement on it, and the X-Accel-Redirect answer that lets
nginx send a file's bytes.

The storage shim writes and deletes rows, the tracker lists them, and the shim and the
gateway (playback on front nodes) resolve (app, user, file_id) the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import pymysql
from flask import Response, request

from . import media, names, quotas
from .db import get_db, sids_in, transaction
from .errors import APIError
from .schema import FILE_ID_LENGTH
from .web import settings

# Query arguments nginx's mp4 module understands; passed through to the internal location.
_PASS_ARGS = ("start", "end")


def check_ref(app: str, user: str, file_id: str) -> None:
    """A file reference from a URL: app, user and file id well formed (400 otherwise)."""
    names.check_app(app)
    names.check_user(user)
    names.check_file_id(file_id, FILE_ID_LENGTH)


def _first(sql: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
    with get_db().cursor() as cur:
        cur.execute(sql, args)
        row: dict[str, Any] | None = cur.fetchone()
    return row


def exists(app: str, user: str, file_id: str) -> bool:
    sql = "SELECT 1 FROM files WHERE app = %s AND user = %s AND file_id = %s"
    return _first(sql, (app, user, file_id)) is not None


def size_of(app: str, user: str, file_id: str) -> int | None:
    """The file's size, or None if there is no such file."""
    row = _first("SELECT size FROM files WHERE app = %s AND user = %s AND file_id = %s", (app, user, file_id))
    return None if row is None else int(row["size"])


def get(app: str, user: str, file_id: str) -> dict[str, Any]:
    with get_db().cursor() as cur:
        cur.execute(
            "SELECT file_id, sid, grp, path, size, sha256, content_type, created FROM files"
            " WHERE app = %s AND user = %s AND file_id = %s",
            (app, user, file_id),
        )
        row = cur.fetchone()
    if row is None:
        raise APIError(404, "file_not_found", "no such file")
    return row


def listing(app: str, user: str, after: str, limit: int) -> list[dict[str, Any]]:
    """A page of a user's files in file id order, the first after ``after``."""
    with get_db().cursor() as cur:
        cur.execute(
            "SELECT file_id, grp, size, sha256, content_type, created FROM files"
            " WHERE app = %s AND user = %s AND file_id > %s ORDER BY file_id LIMIT %s",
            (app, user, after, limit),
        )
        rows = cur.fetchall()
    return [
        {
            "file_id": r["file_id"],
            "group": r["grp"],
            "size": r["size"],
            "sha256": r["sha256"],
            "content_type": r["content_type"],
            "created": r["created"].isoformat() + "Z",
        }
        for r in rows
    ]


COMMIT_CHECK_WAIT = 10  # seconds a re-read waits for a lost transaction still holding the row


def recorded(app: str, user: str, file_id: str, sid: int) -> bool:
    """Whether this upload (its storage id) is the file's row now: asked after a commit whose
    answer was lost. A locking read, so a transaction still holding the row (its COMMIT on
    the way) is waited for, up to COMMIT_CHECK_WAIT seconds; past that, a database error
    (the outcome is still unknown)."""
    sql = (
        "SET STATEMENT innodb_lock_wait_timeout = %s FOR SELECT sid FROM files"
        " WHERE app = %s AND user = %s AND file_id = %s LOCK IN SHARE MODE"
    )
    row = _first(sql, (COMMIT_CHECK_WAIT, app, user, file_id))
    return row is not None and int(row["sid"]) == sid


def row_of(cur: Any, app: str, user: str, file_id: str) -> dict[str, Any] | None:
    """The file's storage id, group and path now, or None without a row."""
    cur.execute(
        "SELECT sid, grp, path FROM files WHERE app = %s AND user = %s AND file_id = %s", (app, user, file_id)
    )
    row: dict[str, Any] | None = cur.fetchone()
    return row


def take_over(cur: Any, app: str, user: str, file_id: str, group: str) -> dict[str, Any] | None:
    """Inside the transaction of an overwrite: lock and delete the file's row (its media
    jobs stop: ``media.forget``); return its ``sid`` and ``path``, or None if there was no
    such file. A file of another group is not ours to replace."""
    cur.execute(
        "SELECT sid, grp, path, size FROM files WHERE app = %s AND user = %s AND file_id = %s FOR UPDATE",
        (app, user, file_id),
    )
    old = cur.fetchone()
    if old is None:
        return None
    if old["grp"] != group:
        raise APIError(409, "wrong_group", "the existing file lives in another group")
    cur.execute(
        "DELETE FROM files WHERE app = %s AND user = %s AND file_id = %s",
        (app, user, file_id),
    )
    quotas.change(cur, app, -int(old["size"]), -1)
    media.forget(cur, int(old["sid"]))
    return {"sid": int(old["sid"]), "path": str(old["path"])}


def insert(
    cur: Any,
    app: str,
    user: str,
    file_id: str,
    sid: int,
    group: str,
    path: str,
    size: int,
    sha256: str,
    ctype: str,
) -> None:
    """Record a file (inside the upload's transaction); 409 if the id is taken."""
    try:
        cur.execute(
            "INSERT INTO files (app, user, file_id, sid, grp, path, size, sha256,"
            " content_type) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (app, user, file_id, sid, group, path, size, sha256, ctype),
        )
    except pymysql.err.IntegrityError:
        raise APIError(409, "file_exists", "a file with this id exists") from None
    quotas.change(cur, app, size, 1)


def delete(app: str, user: str, file_id: str, sid: int) -> bool:
    """Delete this very upload of the file (its storage id) and its media state, stopping
    its jobs: False if it is gone or replaced."""
    with transaction() as cur:
        cur.execute(
            "SELECT size FROM files WHERE app = %s AND user = %s AND file_id = %s AND sid = %s FOR UPDATE",
            (app, user, file_id, sid),
        )
        row = cur.fetchone()
        if row is None:
            return False
        cur.execute(
            "DELETE FROM files WHERE app = %s AND user = %s AND file_id = %s AND sid = %s",
            (app, user, file_id, sid),
        )
        quotas.change(cur, app, -int(row["size"]), -1)
        media.forget(cur, sid)
        return True


def referenced(cur: Any, sids: Sequence[int]) -> set[int]:
    """Which of these storage ids a row refers to (a fresh read: call outside a snapshot)."""
    return sids_in(cur, "files", sids)


def accel_response(row: dict[str, Any]) -> Response:
    """An empty answer whose X-Accel-Redirect makes nginx serve the file (Range, HEAD, mp4)."""
    target = f"{settings().accel_prefix}/{row['grp']}/{row['path']}"
    args = [(k, request.args[k]) for k in _PASS_ARGS if k in request.args]
    if args:
        target += "?" + urlencode(args)
    resp = Response(status=200)
    resp.headers["X-Accel-Redirect"] = target
    resp.headers["Content-Type"] = row["content_type"]
    resp.headers["X-MG-SHA256"] = row["sha256"]
    resp.headers["Cache-Control"] = "private, max-age=3600"
    return resp


def describe(row: dict[str, Any], app: str, user: str) -> dict[str, Any]:
    return {
        "app": app,
        "user": user,
        "file_id": row["file_id"],
        "group": row["grp"],
        "size": row["size"],
        "sha256": row["sha256"],
        "content_type": row["content_type"],
    }
