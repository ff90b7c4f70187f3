"""Live streams in MariaDB: who owns a stream name, the keys issued for it, the publishes
its origins refused (and other events an operator asks about).

Only decisions are kept here, never the live state itself, which is the trackers'
(``liveregistry``): a tracker writes a stream's owner and keys when an app asks to publish,
the origin's shim reads a key's row when a publisher presents it and writes each refusal.
"""

from __future__ import annotations

from typing import Any

from .db import transaction
from .errors import APIError

EVENTS_LISTED = 100


def claim(
    app: str, stream: str, user: str, record: bool, snapshot_every: int | None = None
) -> dict[str, Any]:
    """The stream ``app``/``stream`` for ``user``: created on first use, or 409
    ``stream_taken`` if another user of the app has it. ``record`` and ``snapshot_every``
    (None: the app's) are updated."""
    with transaction() as cur:
        cur.execute(
            "INSERT INTO live_streams (app, stream, user, record, snapshot_every) VALUES (%s, %s, %s, %s, %s)"
            " ON DUPLICATE KEY UPDATE record = IF(user = VALUES(user), VALUES(record), record),"
            " snapshot_every = IF(user = VALUES(user), VALUES(snapshot_every), snapshot_every)",
            (app, stream, user, int(record), snapshot_every),
        )
        cur.execute(
            "SELECT app, stream, user, record, snapshot_every FROM live_streams"
            " WHERE app = %s AND stream = %s",
            (app, stream),
        )
        row = cur.fetchone()
    if row is None or row["user"] != user:
        raise APIError(409, "stream_taken", "another user of this app publishes under that stream name")
    return {**row, "record": bool(row["record"])}


def stream(app: str, stream: str) -> dict[str, Any] | None:
    with transaction() as cur:
        cur.execute(
            "SELECT app, stream, user, record FROM live_streams WHERE app = %s AND stream = %s", (app, stream)
        )
        row = cur.fetchone()
    return dict(row) if row else None


def add_keys(app: str, stream: str, keys: list[tuple[str, str, str, int]], record: bool = False) -> None:
    """Record issued keys: (kid, role, node_id, expires) each. ``record``: the primary's
    publisher is recorded (a backup never is: it carries the same picture)."""
    with transaction() as cur:
        cur.executemany(
            "INSERT INTO live_keys (kid, app, stream, role, node_id, record, expires)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (kid, app, stream, role, node, int(record and role == "primary"), expires)
                for kid, role, node, expires in keys
            ],
        )


def key(kid: str) -> dict[str, Any] | None:
    with transaction() as cur:
        cur.execute(
            "SELECT kid, app, stream, role, node_id, record, expires, banned FROM live_keys WHERE kid = %s",
            (kid,),
        )
        row = cur.fetchone()
    return dict(row) if row else None


def recorded_key(cur: Any, kid: str) -> dict[str, Any] | None:
    """The key ``kid`` with its stream's owner (``cur``: the agent's), if it was issued
    to be recorded; None otherwise."""
    cur.execute(
        "SELECT k.app, k.stream, s.user FROM live_keys k JOIN live_streams s USING (app, stream)"
        " WHERE k.kid = %s AND k.record = 1",
        (kid,),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def recorded_key_before(cur: Any, app: str, stream: str, node_id: str, began: float) -> str | None:
    """The kid of the newest primary key of the stream issued for ``node_id`` before
    ``began`` and to be recorded, if any: whose publisher most likely wrote a part that
    began then (for a part no hook handed over)."""
    cur.execute(
        "SELECT kid FROM live_keys WHERE app = %s AND stream = %s AND node_id = %s AND role = 'primary'"
        " AND record = 1 AND created <= FROM_UNIXTIME(%s) ORDER BY created DESC LIMIT 1",
        (app, stream, node_id, began),
    )
    row = cur.fetchone()
    return str(row["kid"]) if row else None


def ban(cur: Any, app: str, stream: str, kid: str | None = None) -> int:
    """Ban one key of the stream, or every key it has (``cur``: a cursor in a transaction);
    how many were banned. A banned key publishes nothing again, and its live publisher is
    dropped by its origin's agent at the next heartbeat."""
    if kid:
        cur.execute(
            "UPDATE live_keys SET banned = CURRENT_TIMESTAMP(3)"
            " WHERE app = %s AND stream = %s AND kid = %s AND banned IS NULL",
            (app, stream, kid),
        )
    else:
        cur.execute(
            "UPDATE live_keys SET banned = CURRENT_TIMESTAMP(3)"
            " WHERE app = %s AND stream = %s AND banned IS NULL",
            (app, stream),
        )
    return int(cur.rowcount)


def kick(cur: Any, app: str, stream: str) -> int:
    """Disconnect the stream's publishers (their origins' agents drop every session that
    started before now); the keys stay good for a new publish."""
    cur.execute(
        "UPDATE live_keys SET kicked = CURRENT_TIMESTAMP(3) WHERE app = %s AND stream = %s", (app, stream)
    )
    return int(cur.rowcount)


def moderation(cur: Any, kids: list[str]) -> dict[str, tuple[bool, float | None]]:
    """For each key id: banned, and when it was last kicked (unix seconds)."""
    if not kids:
        return {}
    marks = ", ".join(["%s"] * len(kids))
    cur.execute(
        f"SELECT kid, banned IS NOT NULL AS banned, UNIX_TIMESTAMP(kicked) AS kicked"
        f" FROM live_keys WHERE kid IN ({marks})",
        kids,
    )
    return {
        r["kid"]: (bool(r["banned"]), float(r["kicked"]) if r["kicked"] is not None else None)
        for r in cur.fetchall()
    }


def log(
    app: str,
    stream: str,
    node_id: str,
    event: str,
    code: str | None = None,
    kid: str | None = None,
    role: str | None = None,
    client: str | None = None,
    cur: Any = None,
) -> None:
    """One event of the stream: on ``cur`` (the agent's), or in a transaction of its own."""
    if cur is None:
        with transaction() as own:
            log(app, stream, node_id, event, code, kid, role, client, own)
        return
    cur.execute(
        "INSERT INTO live_events (app, stream, node_id, event, code, kid, role, client)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (app, stream, node_id, event, code, kid, role, client),
    )


def events(app: str, stream: str, limit: int = EVENTS_LISTED) -> list[dict[str, Any]]:
    """The stream's latest events, newest first."""
    with transaction() as cur:
        cur.execute(
            "SELECT id, node_id, event, code, kid, role, client, created FROM live_events"
            " WHERE app = %s AND stream = %s ORDER BY id DESC LIMIT %s",
            (app, stream, limit),
        )
        rows = cur.fetchall()
    return [{**r, "created": r["created"].timestamp()} for r in rows]
