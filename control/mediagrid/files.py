"""File records in MariaDB and the X-Accel-Redirect answer that lets nginx send bytes.

Shared by the storage shim (downloads on a storage node) and the gateway (playback on
front nodes): both resolve (app, user, file_id) the same way and differ only in which
services they run in.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Response, current_app, request

from . import names
from .db import get_db
from .errors import APIError

# Query arguments nginx's mp4 module understands; passed through to the internal location.
_PASS_ARGS = ("start", "end")


def check_ref(app: str, user: str, file_id: str) -> None:
    """A file reference from a URL: app, user and file id well formed (400 otherwise)."""
    names.check_app(app)
    names.check_user(user)
    names.check_file_id(file_id, int(current_app.config["MAX_FILE_ID_LENGTH"]))


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


def accel_response(row: dict[str, Any]) -> Response:
    """An empty answer whose X-Accel-Redirect makes nginx serve the file (Range, HEAD, mp4)."""
    target = f"{current_app.config['ACCEL_PREFIX']}/{row['grp']}/{row['path']}"
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
