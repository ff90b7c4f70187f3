"""(app, user) -> group routes in MariaDB, with a per-process cache.

A route never changes once made, so a cached hit is always right; new users are assigned
by the configured strategy and inserted with ``INSERT IGNORE`` so two trackers assigning
the same user at once agree on the row that won.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from .assign import resolve
from .db import get_db, one, transaction
from .errors import APIError
from .nodes import Group
from .web import settings


class RouteCache:
    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, str], str] = OrderedDict()

    def get(self, key: tuple[str, str]) -> str | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: tuple[str, str], group: str) -> None:
        with self._lock:
            self._items[key] = group
            if len(self._items) > self._size:
                self._items.popitem(last=False)


def lookup(app: str, user: str) -> str | None:
    """The user's group if it has one."""
    with get_db().cursor() as cur:
        cur.execute("SELECT grp FROM routes WHERE app = %s AND user = %s", (app, user))
        row = cur.fetchone()
    return row["grp"] if row else None


def insert(cur: Any, app: str, user: str, group: str) -> None:
    """Route the user to ``group`` unless it already has a route (two trackers may race)."""
    cur.execute("INSERT IGNORE INTO routes (app, user, grp) VALUES (%s, %s, %s)", (app, user, group))


def group_for(app: str, user: str, groups: Sequence[Group], cache: RouteCache) -> str:
    """The user's group, assigning one among the writable groups if the user is new."""
    key = (app, user)
    cached = cache.get(key)
    if cached is not None:
        return cached
    group = lookup(app, user)
    if group is None:
        writable = [g for g in groups if g.writable]
        if not writable:
            raise APIError(503, "no_writable_group", "no storage group can take new users now")
        choice = resolve(settings().assign_strategy)(writable, app, user)
        with transaction() as cur:
            insert(cur, app, user, choice)
            cur.execute("SELECT grp FROM routes WHERE app = %s AND user = %s", (app, user))
            group = one(cur)["grp"]
    cache.put(key, group)
    return group
