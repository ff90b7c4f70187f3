"""Unique 63-bit ids from segments reserved in MariaDB.

A reservation is one transactional ``UPDATE id_segments SET max_id = max_id + step``, so
every id server, worker and restart gets a disjoint range. Each process hands ids out of
its current segment from memory and reserves the next one in the background before the
current one runs dry, so a batch request almost never waits on the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import pymysql

from .db import connect

log = logging.getLogger(__name__)
MAX_ID = 2**63 - 1


def _reserve_once(conn: Any, name: str, step: int) -> tuple[int, int]:
    with conn.cursor() as cur:
        bump = "UPDATE id_segments SET max_id = LAST_INSERT_ID(max_id + step) WHERE name = %s"
        if cur.execute(bump, (name,)) == 0:  # first use of this segment name
            cur.execute(
                "INSERT IGNORE INTO id_segments (name, max_id, step) VALUES (%s, 0, %s)",
                (name, step),
            )
            cur.execute(bump, (name,))
        cur.execute("SELECT LAST_INSERT_ID() AS hi, step FROM id_segments WHERE name = %s", (name,))
        row = cur.fetchone()
    conn.commit()
    hi, seg_step = int(row["hi"]), int(row["step"])
    return hi - seg_step + 1, hi


def issued(cur: Any, name: str) -> int | None:
    """The highest id ever reserved for ``name`` (None before its first reservation): no
    stored object of a database that is up to date has a larger storage id."""
    cur.execute("SELECT max_id FROM id_segments WHERE name = %s", (name,))
    row = cur.fetchone()
    return None if row is None else int(row["max_id"])


def raise_to(cur: Any, name: str, at_least: int, step: int) -> None:
    """Make the segment's next reservations start above ``at_least`` (ids the database
    never reserved, found in use: a database restored from an older backup)."""
    cur.execute(
        "INSERT INTO id_segments (name, max_id, step) VALUES (%s, %s, %s)"
        " ON DUPLICATE KEY UPDATE max_id = GREATEST(max_id, VALUES(max_id))",
        (name, at_least, step),
    )


def reserve_segment(conf: Mapping[str, Any], name: str, step: int) -> tuple[int, int]:
    """Reserve ids ``lo..hi`` (inclusive) for ``name``; the segment row is made on first use.

    Concurrent reservations serialise on the row lock; a deadlock or lock wait timeout
    (InnoDB picks a victim) is retried, since the transaction had no effect.
    """
    conn = connect(conf)
    try:
        for attempt in range(5):
            try:
                lo, hi = _reserve_once(conn, name, step)
                break
            except pymysql.err.OperationalError as err:
                conn.rollback()
                if err.args[0] not in (1205, 1213) or attempt == 4:
                    raise
                time.sleep(0.01 * (attempt + 1))
    finally:
        conn.close()
    if hi > MAX_ID:
        raise RuntimeError(f"id space of segment {name!r} is exhausted")
    return lo, hi


class SegmentAllocator:
    """Hands out ids from reserved segments; thread-safe; prefetches the next segment."""

    def __init__(self, reserve: Callable[[], tuple[int, int]], low_water: float = 0.25) -> None:
        self._reserve = reserve
        self._low_water = low_water
        self._lock = threading.Lock()
        self._segments: deque[list[int]] = deque()  # [next, hi] pairs
        self._remaining = 0
        self._last_size = 0
        self._prefetching = False

    def _add(self, lo: int, hi: int) -> None:
        self._segments.append([lo, hi])
        self._remaining += hi - lo + 1
        self._last_size = hi - lo + 1

    def _prefetch(self) -> None:
        try:
            lo, hi = self._reserve()
        except Exception:
            log.warning("background segment reservation failed", exc_info=True)
            with self._lock:
                self._prefetching = False
            return
        with self._lock:
            self._add(lo, hi)
            self._prefetching = False

    def take(self, count: int) -> list[int]:
        """Return ``count`` fresh ids in ascending order."""
        out: list[int] = []
        while len(out) < count:
            with self._lock:
                while self._segments and len(out) < count:
                    seg = self._segments[0]
                    n = min(count - len(out), seg[1] - seg[0] + 1)
                    out.extend(range(seg[0], seg[0] + n))
                    seg[0] += n
                    self._remaining -= n
                    if seg[0] > seg[1]:
                        self._segments.popleft()
                need_more = len(out) < count
                start_prefetch = (
                    not need_more
                    and not self._prefetching
                    and self._remaining < self._last_size * self._low_water
                )
                if start_prefetch:
                    self._prefetching = True
            if start_prefetch:
                threading.Thread(target=self._prefetch, daemon=True).start()
            if need_more:
                lo, hi = self._reserve()  # inline: nothing left in memory
                with self._lock:
                    self._add(lo, hi)
        return out
