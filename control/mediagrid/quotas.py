"""Per-app quotas: bytes and files an app (tenant) may store in the whole cluster.

An app's usage is kept in ``app_usage``, changed in the same transaction as the row of
the file it counts (``files.insert``, ``files.take_over``, ``files.delete``), so it is
exact whatever runs at once: the usage row is locked from the change to the commit. An
upload is refused twice over: before its body is read, when the declared size alone
would pass the quota (``precheck``: nothing is stored), and at its commit, when the
usage with it does (``enforce``: the transaction rolls back and the shim removes the
file), which catches concurrent uploads and bodies without a declared size.
"""

from __future__ import annotations

from typing import Any

from . import apps
from .db import get_db
from .errors import APIError


def change(cur: Any, app: str, nbytes: int, nfiles: int) -> None:
    """Add to the app's usage (negative to free), inside the file row's transaction."""
    cur.execute(
        "INSERT INTO app_usage (app, bytes, files) VALUES (%s, GREATEST(%s, 0), GREATEST(%s, 0))"
        " ON DUPLICATE KEY UPDATE bytes = GREATEST(CAST(bytes AS SIGNED) + %s, 0),"
        " files = GREATEST(CAST(files AS SIGNED) + %s, 0)",
        (app, nbytes, nfiles, nbytes, nfiles),
    )


def _state(cur: Any, app: str, lock: bool) -> dict[str, Any] | None:
    cur.execute(
        "SELECT a.quota_bytes, a.quota_files, COALESCE(u.bytes, 0) AS bytes, COALESCE(u.files, 0) AS files"
        " FROM apps a LEFT JOIN app_usage u ON u.app = a.app WHERE a.app = %s"
        + (" FOR UPDATE" if lock else ""),
        (app,),
    )
    row: dict[str, Any] | None = cur.fetchone()
    return row


def _check(row: dict[str, Any] | None, more_bytes: int, more_files: int) -> None:
    if row is None:
        return
    if row["quota_bytes"] is not None and int(row["bytes"]) + more_bytes > int(row["quota_bytes"]):
        raise APIError(
            507, "quota_exceeded", f"the app's quota of {row['quota_bytes']} bytes would be exceeded"
        )
    if row["quota_files"] is not None and int(row["files"]) + more_files > int(row["quota_files"]):
        raise APIError(
            507, "quota_exceeded", f"the app's quota of {row['quota_files']} files would be exceeded"
        )


def precheck(app: str, declared: int | None, replaces: int | None = None) -> None:
    """Before the body: refuse an upload whose declared size (or one more file) alone
    passes the app's quota; an overwrite frees the size of the file it ``replaces``."""
    with get_db().cursor() as cur:
        row = _state(cur, app, lock=False)
    if replaces is None:
        _check(row, declared or 0, 1)
    else:
        _check(row, (declared or 0) - replaces, 0)


def enforce(cur: Any, app: str) -> None:
    """At the commit, after the usage changed: refuse (rolling the upload back) if the app
    is now over its quota."""
    _check(_state(cur, app, lock=True), 0, 0)


def set_quota(cur: Any, app: str, max_bytes: int | None, max_files: int | None) -> bool:
    """Set the app's quotas (None: unlimited); whether the app exists."""
    cur.execute(
        "UPDATE apps SET quota_bytes = %s, quota_files = %s WHERE app = %s", (max_bytes, max_files, app)
    )
    return apps.exists(cur, app)


def usage(cur: Any, app: str) -> dict[str, Any] | None:
    """The app's quotas and usage, or None for an unknown app."""
    return _state(cur, app, lock=False)
