"""Apps (tenants) in MariaDB: the one module that reads or writes the ``apps`` table.

Services read an app's secret (``mediagrid.auth`` caches it per process); operators and
configuration management create, set, list and delete apps through ``mediagrid-admin``.
"""

from __future__ import annotations

import secrets as _random
from typing import Any, NamedTuple

import pymysql.cursors

from . import names
from .db import one

Cursor = pymysql.cursors.DictCursor


def secret(cur: Cursor, app: str) -> str | None:
    """The app's (current) secret, or None for an unknown app."""
    cur.execute("SELECT secret FROM apps WHERE app = %s", (app,))
    row = cur.fetchone()
    return None if row is None else str(row["secret"])


class Credentials(NamedTuple):
    """What a service needs to check an app: the secrets its credentials may be signed
    with (the current one, and while a rotation is under way the previous one), and
    whether it is an admin app (sees the cluster's topology)."""

    secrets: tuple[str, ...]
    admin: bool = False


def credentials(cur: Cursor, app: str) -> Credentials | None:
    """The app's credentials, or None for an unknown app."""
    cur.execute("SELECT secret, secret2, admin FROM apps WHERE app = %s", (app,))
    row = cur.fetchone()
    if row is None:
        return None
    secrets = (str(row["secret"]),) + ((str(row["secret2"]),) if row["secret2"] else ())
    return Credentials(secrets, bool(row["admin"]))


def set_admin(cur: Cursor, name: str, admin: bool) -> bool:
    """Make app ``name`` an admin app or not; whether that changed anything."""
    cur.execute("UPDATE apps SET admin = %s WHERE app = %s AND admin <> %s", (admin, name, admin))
    return cur.rowcount == 1


def rotate(cur: Cursor, name: str) -> str | None:
    """Give app ``name`` a new random secret and keep its current one valid (as secret2)
    until :func:`retire`: clients move to the new secret one by one. Returns the new one
    (None: no such app)."""
    new_secret = _random.token_urlsafe(32)
    cur.execute("UPDATE apps SET secret2 = secret, secret = %s WHERE app = %s", (new_secret, name))
    return new_secret if cur.rowcount == 1 else None


def retire(cur: Cursor, name: str) -> bool:
    """End a rotation: the previous secret stops being valid. False if there was none."""
    cur.execute("UPDATE apps SET secret2 = NULL WHERE app = %s AND secret2 IS NOT NULL", (name,))
    return cur.rowcount == 1


def create(cur: Cursor, name: str, new_secret: str | None = None) -> str:
    """Create app ``name`` if it is new; return its secret. A given ``new_secret`` replaces
    the app's, else an existing app keeps its own and a new one gets a random one."""
    names.check_app(name)
    cur.execute(
        "INSERT INTO apps (app, secret) VALUES (%s, %s)"
        " ON DUPLICATE KEY UPDATE secret = IF(%s, VALUES(secret), secret)",
        (name, new_secret or _random.token_urlsafe(32), bool(new_secret)),
    )
    cur.execute("SELECT secret FROM apps WHERE app = %s", (name,))
    return str(one(cur)["secret"])


def put(cur: Cursor, name: str, new_secret: str) -> str:
    """Make app ``name`` hold ``new_secret``; say what that took: created, updated or
    unchanged (idempotent, for configuration management)."""
    names.check_app(name)
    old = secret(cur, name)
    if old == new_secret:
        return "unchanged"
    create(cur, name, new_secret)
    return "created" if old is None else "updated"


def listing(cur: Cursor) -> list[dict[str, Any]]:
    cur.execute("SELECT app, admin, created FROM apps ORDER BY app")
    return list(cur.fetchall())


def delete(cur: Cursor, name: str) -> None:
    cur.execute("DELETE FROM apps WHERE app = %s", (name,))


def exists(cur: Cursor, app: str) -> bool:
    cur.execute("SELECT 1 FROM apps WHERE app = %s", (app,))
    return cur.fetchone() is not None


def media_ladder(cur: Cursor, app: str) -> str | None:
    """The app's own ABR ladder (rung names, ``"720p,360p"``), or None: the nodes' default."""
    cur.execute("SELECT media_ladder FROM apps WHERE app = %s", (app,))
    row = cur.fetchone()
    return None if row is None or not row["media_ladder"] else str(row["media_ladder"])


def set_media_ladder(cur: Cursor, app: str, spec: str | None) -> bool:
    """Give the app its own ladder (None: back to the nodes' default); whether it exists.
    The spec is checked by the caller (``ladder.parse_ladder``)."""
    cur.execute("UPDATE apps SET media_ladder = %s WHERE app = %s", (spec, app))
    return exists(cur, app)


def live_snapshot_every(cur: Cursor, app: str) -> int | None:
    """Seconds between the app's live snapshots, or None: the nodes' LIVE_SNAPSHOT_EVERY."""
    cur.execute("SELECT live_snapshot_every FROM apps WHERE app = %s", (app,))
    row = cur.fetchone()
    return None if row is None or row["live_snapshot_every"] is None else int(row["live_snapshot_every"])


def set_live_snapshot_every(cur: Cursor, app: str, seconds: int | None) -> bool:
    """Set the app's snapshot interval (0: none; None: the nodes' default); whether it exists."""
    cur.execute("UPDATE apps SET live_snapshot_every = %s WHERE app = %s", (seconds, app))
    return exists(cur, app)
