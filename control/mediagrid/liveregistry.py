"""The trackers' registry of live streams, kept beside the node table in each tracker's
SQLite file (``nodes``): like storage heartbeats, every origin tells every tracker, so any
tracker answers with no database in the path.

Two sources feed it. An origin's publish hooks push a session's start and end to every
tracker at once (``POST /api/v1/cluster/live``): the end of a stream is known within the
hook's round trip of nginx-rtmp dropping its publisher. Each heartbeat of the origin then
lists the sessions it carries with nginx-rtmp's figures (ingest bitrate, fps, picture,
viewers, the edges that pull an RTMP copy): a session it no longer lists has ended (a
lost push heals), and a session of an origin whose heartbeats stopped is over when the
node goes OFFLINE (``offline_after``).

One row per (app, stream, role): the primary and the backup publisher of a stream.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from .contract import LiveSession

_SCHEMA = """
CREATE TABLE IF NOT EXISTS live (
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    role TEXT NOT NULL,
    node_id TEXT NOT NULL,
    client TEXT NOT NULL,
    started REAL NOT NULL,
    updated REAL NOT NULL,
    ended REAL,
    bw_in INTEGER NOT NULL DEFAULT 0,
    fps REAL NOT NULL DEFAULT 0,
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0,
    viewers INTEGER NOT NULL DEFAULT 0,
    edges TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (app, stream, role)
)
"""

# A session the hooks pushed is listed by the origin's next heartbeat; one that started less
# than this before a heartbeat was collected may be missing from it and is not ended.
START_GRACE = 3.0

_UPSERT = """
INSERT INTO live (app, stream, role, node_id, client, started, updated, ended,
                  bw_in, fps, width, height, viewers, edges)
VALUES (:app, :stream, :role, :node_id, :client, :started, :now, NULL,
        :bw_in, :fps, :width, :height, :viewers, :edges)
ON CONFLICT (app, stream, role) DO UPDATE SET
    node_id = excluded.node_id, client = excluded.client, started = excluded.started,
    updated = excluded.updated, ended = NULL, bw_in = excluded.bw_in, fps = excluded.fps,
    width = excluded.width, height = excluded.height, viewers = excluded.viewers,
    edges = excluded.edges
"""
# What a heartbeat says of a session an end was already taken for changes nothing: the
# heartbeat may have been collected just before the publisher was dropped.
_REFRESH = (
    _UPSERT
    + """ WHERE NOT (live.node_id = excluded.node_id AND live.client = excluded.client
             AND live.started = excluded.started AND live.ended IS NOT NULL)"""
)


@dataclass(frozen=True)
class Entry:
    app: str
    stream: str
    role: str
    node_id: str
    client: str
    started: float
    updated: float
    ended: float | None
    bw_in: int
    fps: float
    width: int
    height: int
    viewers: int
    edges: str = "[]"  # JSON: the edges pulling an RTMP copy from this publisher's origin

    @property
    def pulled_by(self) -> list[str]:
        """The edges (addresses) that pull an RTMP copy of this publisher's stream."""
        found = json.loads(self.edges)
        return [e for e in found if isinstance(e, str)] if isinstance(found, list) else []

    def public(self, live: bool) -> dict[str, Any]:
        return {
            "role": self.role,
            "state": "live" if live else "ended",
            "node_id": self.node_id,
            "started": self.started,
            "ended": None if live else self.ended,
            "ingest": {
                "bitrate": self.bw_in,
                "fps": self.fps,
                "width": self.width,
                "height": self.height,
            },
            "viewers": self.viewers,
            "edges": self.pulled_by if live else [],
        }


class LiveTable:
    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        conn = self._conn()
        conn.execute(_SCHEMA)
        if "edges" not in {row[1] for row in conn.execute("PRAGMA table_info(live)")}:
            conn.execute("ALTER TABLE live ADD COLUMN edges TEXT NOT NULL DEFAULT '[]'")  # an older tracker's

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @staticmethod
    def _row(node_id: str, session: LiveSession, now: float) -> dict[str, Any]:
        return {
            **session.model_dump(),
            "edges": json.dumps(sorted(session.edges)),
            "node_id": node_id,
            "now": now,
        }

    def start(self, node_id: str, session: LiveSession) -> None:
        self._conn().execute(_UPSERT, self._row(node_id, session, time.time()))

    def end(self, node_id: str, session: LiveSession, at: float) -> bool:
        cur = self._conn().execute(
            "UPDATE live SET ended = ?, updated = ? WHERE app = ? AND stream = ? AND role = ?"
            " AND node_id = ? AND client = ? AND ended IS NULL",
            (at, time.time(), session.app, session.stream, session.role, node_id, session.client),
        )
        return cur.rowcount > 0

    def beat(self, node_id: str, sessions: list[LiveSession], collected: float) -> None:
        """An origin's heartbeat: the sessions it carries now; any other of its sessions
        that started before the report (by ``START_GRACE``) has ended."""
        conn = self._conn()
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for session in sessions:
                conn.execute(_REFRESH, self._row(node_id, session, now))
            held = [s.client for s in sessions]
            marks = ",".join("?" * len(held)) or "''"
            conn.execute(
                f"UPDATE live SET ended = ?, updated = ? WHERE node_id = ? AND ended IS NULL"
                f" AND started < ? AND client NOT IN ({marks})",
                (collected, now, node_id, collected - START_GRACE, *held),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def entries(self, app: str, stream: str | None = None) -> list[Entry]:
        if stream is None:
            cur = self._conn().execute("SELECT * FROM live WHERE app = ? ORDER BY stream, role", (app,))
        else:
            cur = self._conn().execute(
                "SELECT * FROM live WHERE app = ? AND stream = ? ORDER BY role DESC", (app, stream)
            )
        return [Entry(**dict(r)) for r in cur.fetchall()]

    def all_live(self) -> list[Entry]:
        """Every session not ended (its origin may have gone silent: the caller checks)."""
        cur = self._conn().execute("SELECT * FROM live WHERE ended IS NULL")
        return [Entry(**dict(r)) for r in cur.fetchall()]

    def prune(self, older_than: float) -> None:
        """Forget ended sessions whose end is older than ``older_than`` (unix seconds)."""
        self._conn().execute("DELETE FROM live WHERE ended IS NOT NULL AND ended < ?", (older_than,))
