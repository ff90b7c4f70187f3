"""Signatures seen (MariaDB ``seen_signatures``): the one module that reads or writes it.

A signed app request is accepted once: its signature is inserted with the time it stops
being valid, and a duplicate key is a replay. Every service shares the table, so a request
captured on its way to one node is refused by all. Rows past their expiry are purged.
"""

from __future__ import annotations

import pymysql
import pymysql.cursors

Cursor = pymysql.cursors.DictCursor


def first_use(cur: Cursor, sig: str, expires: int) -> bool:
    """Record ``sig`` (valid until ``expires``, unix seconds); False if it was seen before."""
    try:
        cur.execute("INSERT INTO seen_signatures (sig, expires) VALUES (%s, %s)", (sig, expires))
    except pymysql.err.IntegrityError:
        return False
    return True


def purge(cur: Cursor, now: int, limit: int = 10000) -> int:
    """Forget up to ``limit`` signatures that expired before ``now``; how many went."""
    cur.execute("DELETE FROM seen_signatures WHERE expires < %s LIMIT %s", (now, limit))
    return int(cur.rowcount)
