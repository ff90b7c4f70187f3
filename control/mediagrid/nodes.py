"""The tracker's table of storage servers, kept in a small SQLite file per tracker.

Every storage agent heartbeats to every tracker, so each tracker owns its own view and
needs no database to know who is alive. SQLite (WAL, on local disk or tmpfs) lets all of
a tracker's gunicorn workers share that view; each worker reads it through a snapshot
cached for a fraction of a second, so lookups cost no I/O.

States are derived at read time: OFFLINE when the last heartbeat is older than
``offline_after``; SYNCING while the node reports pending heals, or a live peer of its
group reports heals it is the source of (it is kept out of the upload list but its group's
files stay readable); otherwise ACTIVE. The peer's word counts because a node that was cut
off sees its peer's brick as unreachable, so its own count says 0 until it reconnects and
checks again, while the peer that stayed up has counted every write it missed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from .contract import Report

ACTIVE, SYNCING, OFFLINE = "ACTIVE", "SYNCING", "OFFLINE"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    node_id TEXT PRIMARY KEY,
    grp TEXT NOT NULL,
    url TEXT NOT NULL,
    free INTEGER NOT NULL,
    total INTEGER NOT NULL,
    reserve INTEGER NOT NULL,
    load REAL NOT NULL,
    heal_pending INTEGER NOT NULL,
    joined REAL NOT NULL,
    last_seen REAL NOT NULL,
    heal_source INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL DEFAULT 0,
    rtmp_url TEXT NOT NULL DEFAULT ''
)
"""


@dataclass(frozen=True)
class Node:
    node_id: str
    group: str
    url: str
    free: int
    total: int
    reserve: int
    load: float
    heal_pending: int
    joined: float
    last_seen: float
    heal_source: int
    seq: int
    rtmp_url: str
    state: str

    def public(self, now: float) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "url": self.url,
            "state": self.state,
            "free": self.free,
            "total": self.total,
            "reserve": self.reserve,
            "load": self.load,
            "heal_pending": self.heal_pending,
            "heal_source": self.heal_source,
            "last_heartbeat_age": round(max(0.0, now - self.last_seen), 3),
        }


# The table's columns: Node's fields but its derived state, in field order (group is a
# reserved word in SQL, so its column is grp). A report (mediagrid.contract.Report) fills
# them, with the times the tracker adds.
_COLUMNS = tuple("grp" if f.name == "group" else f.name for f in fields(Node) if f.name != "state")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM nodes ORDER BY node_id"
# Only a report newer than the last one taken from the node is written (its seq): a
# replayed or reordered report changes nothing, and the caller refuses it.
_JOIN = (
    "INSERT INTO nodes ({}) VALUES ({}) ON CONFLICT (node_id) DO UPDATE SET {} WHERE excluded.seq > nodes.seq"
).format(
    ", ".join(_COLUMNS),
    ", ".join(f":{c}" for c in _COLUMNS),
    ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "node_id"),
)
# a heartbeat keeps the time the node joined
_BEAT = "UPDATE nodes SET {} WHERE node_id = :node_id AND seq < :seq".format(
    ", ".join(f"{c} = :{c}" for c in _COLUMNS if c not in ("node_id", "joined"))
)


@dataclass
class Group:
    name: str
    nodes: list[Node] = field(default_factory=list)

    @cached_property
    def active(self) -> list[Node]:
        """ACTIVE members, best first: least loaded, then most free space."""
        return sorted((n for n in self.nodes if n.state == ACTIVE), key=lambda n: (n.load, -n.free))

    @cached_property
    def storages_json(self) -> str:
        """The ``storages`` list of a lookup answer, serialised once per snapshot."""
        return json.dumps(
            [{"node_id": n.node_id, "url": n.url, "free": n.free, "load": n.load} for n in self.active]
        )

    @property
    def free(self) -> int:
        """Usable bytes of a replicated group: the smallest ACTIVE member's free minus reserve."""
        act = self.active
        return min(n.free - n.reserve for n in act) if act else 0

    @property
    def writable(self) -> bool:
        return bool(self.active) and self.free > 0

    def public(self, now: float) -> dict[str, Any]:
        act = self.active
        state = "ok" if len(act) == len(self.nodes) else ("degraded" if act else "down")
        return {
            "name": self.name,
            "state": state,
            "writable": self.writable,
            "free": self.free,
            "total": min((n.total for n in act), default=0),
            "members": [n.public(now) for n in sorted(self.nodes, key=lambda n: n.node_id)],
        }


class NodeTable:
    def __init__(self, path: str, offline_after: float, snapshot_ttl: float) -> None:
        self.path = path
        self.offline_after = offline_after
        self.snapshot_ttl = snapshot_ttl
        self._local = threading.local()
        self._lock = threading.Lock()
        self._snap: tuple[float, tuple[list[Node], dict[str, Group]] | None] = (0.0, None)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(_SCHEMA)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(nodes)")}
        if "heal_source" not in columns:  # a table made by an older tracker
            conn.execute("ALTER TABLE nodes ADD COLUMN heal_source INTEGER NOT NULL DEFAULT 0")
        if "seq" not in columns:
            conn.execute("ALTER TABLE nodes ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
        if "rtmp_url" not in columns:
            conn.execute("ALTER TABLE nodes ADD COLUMN rtmp_url TEXT NOT NULL DEFAULT ''")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def known(self, node_id: str) -> bool:
        cur = self._conn().execute("SELECT 1 FROM nodes WHERE node_id = ?", (node_id,))
        return cur.fetchone() is not None

    def record(self, report: Report, join: bool) -> bool:
        """Store a join or heartbeat report, validated by its model; False (nothing
        written) when it is not newer than the last report taken from the node."""
        now = time.time()
        row = report.model_dump(exclude={"live"})
        row["grp"] = row.pop("group")
        row["joined"] = row["last_seen"] = now
        if self._conn().execute(_JOIN if join else _BEAT, row).rowcount == 0:
            return False
        with self._lock:
            self._snap = (0.0, None)  # this worker sees its own write at once
        return True

    def forget(self, node_id: str) -> None:
        """Drop a node an operator removed."""
        self._conn().execute("DELETE FROM nodes WHERE node_id = ?", (node_id,))
        with self._lock:
            self._snap = (0.0, None)

    def nodes(self) -> list[Node]:
        return self._snapshot()[0]

    def groups(self, fresh: bool = False) -> dict[str, Group]:
        """Groups of the current snapshot (shared by every request until the next one);
        ``fresh`` re-reads the table, for answers that would otherwise be a refusal."""
        return self._snapshot(fresh)[1]

    def _snapshot(self, fresh: bool = False) -> tuple[list[Node], dict[str, Group]]:
        now = time.monotonic()
        with self._lock:
            expires, snap = self._snap
            if snap is not None and not fresh and now < expires:
                return snap
        rows: list[sqlite3.Row] = self._conn().execute(_SELECT).fetchall()
        wall = time.time()
        # a snapshot never outlives the moment a member it holds as live turns OFFLINE, so a
        # lookup drops a silent node exactly when /groups does
        expires = now + self.snapshot_ttl
        live: dict[str, bool] = {}
        owed: dict[str, int] = {}  # per group: heals its live members are the source of
        for r in rows:
            silent_for = wall - r["last_seen"]
            live[r["node_id"]] = silent_for <= self.offline_after
            if live[r["node_id"]]:
                expires = min(expires, now + self.offline_after - silent_for)
                owed[r["grp"]] = owed.get(r["grp"], 0) + r["heal_source"]
        nodes = []
        for r in rows:
            if not live[r["node_id"]]:
                state = OFFLINE
            else:
                # heals pending onto this node: its own count, and what its peers hold for it
                syncing = r["heal_pending"] > 0 or owed[r["grp"]] - r["heal_source"] > 0
                state = SYNCING if syncing else ACTIVE
            nodes.append(Node(*(*r, state)))  # the columns in field order, then the state
        groups: dict[str, Group] = {}
        for node in nodes:
            groups.setdefault(node.group, Group(node.group)).nodes.append(node)
        with self._lock:
            self._snap = (expires, (nodes, groups))
        return nodes, groups
