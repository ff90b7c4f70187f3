"""Storage nodes an operator removed (``mediagrid-admin node remove``).

A removed node's credential stops working on every tracker and id service, and the
trackers drop it from what they list, until ``node allow`` puts it back. The list lives
in MariaDB (``removed_nodes``), read by each process at most every few seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pymysql

from .db import get_db

CACHE_SECONDS = 5.0


class RemovedNodes:
    """The removed node ids, read from MariaDB at most every CACHE_SECONDS per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._ids: frozenset[str] = frozenset()

    def ids(self) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            if now - self._at < CACHE_SECONDS:
                return self._ids
        try:
            with get_db().cursor() as cur:
                cur.execute("SELECT node_id FROM removed_nodes")
                ids = frozenset(str(r["node_id"]) for r in cur.fetchall())
        except pymysql.MySQLError:
            return self._ids  # MariaDB down: the last list known (nodes must keep beating)
        with self._lock:
            self._ids, self._at = ids, now
        return ids

    def has(self, node_id: str) -> bool:
        return node_id in self.ids()


removed_nodes = RemovedNodes()


def remove(cur: Any, node_id: str) -> bool:
    """Record the node as removed; whether it was not already."""
    cur.execute("INSERT IGNORE INTO removed_nodes (node_id) VALUES (%s)", (node_id,))
    return bool(cur.rowcount == 1)


def allow(cur: Any, node_id: str) -> bool:
    """Take the node off the removed list; whether it was on it."""
    cur.execute("DELETE FROM removed_nodes WHERE node_id = %s", (node_id,))
    return bool(cur.rowcount == 1)
