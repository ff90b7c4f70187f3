"""Uploads in flight, recorded in MariaDB, so an upload its node never finished is removed.

A storage shim writes a raw-body upload straight to its final path in the group volume
(see ``spool.Spool``). Before it creates the file it records (storage id, group, path) in
``uploads``; the row is deleted in the very transaction that records the file in ``files``,
or when the upload fails. A row that outlives its upload is what a shim killed mid-upload
leaves: the agent of any node in the group removes the file (once nobody has written it
for ``STALE_PART_SECONDS``, so a slow upload in progress is never touched) and the row.
The path comes from the database and the agent runs as root: only the row's own stored
object under the volume is ever removed (``volume``); a row naming anything else is only
forgotten.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from . import volume
from .db import Connection, sids_in

log = logging.getLogger("mediagrid.inflight")


def begin(cur: Any, sid: int, group: str, path: str, node: str) -> None:
    cur.execute(
        "INSERT INTO uploads (sid, grp, path, node) VALUES (%s, %s, %s, %s)",
        (sid, group, path, node),
    )


def finish(cur: Any, sid: int) -> None:
    """Forget an upload: in the transaction that records it, or once its file is gone."""
    cur.execute("DELETE FROM uploads WHERE sid = %s", (sid,))


def recorded(cur: Any, sids: Sequence[int]) -> set[int]:
    """Which of these storage ids are uploads in flight."""
    return sids_in(cur, "uploads", sids)


def sweep(conn: Connection, group: str, data_dir: str, max_age: float) -> int:
    """Remove the files and rows of this group's uploads abandoned for ``max_age`` seconds."""
    removed = 0
    with conn.cursor() as cur:
        cur.execute(
            "SELECT sid, path FROM uploads WHERE grp = %s AND started < NOW() - INTERVAL %s SECOND",
            (group, int(max_age)),
        )
        rows: list[dict[str, Any]] = list(cur.fetchall())
    conn.commit()  # end the read view: the next sweep sees rows added since
    written_before = time.time() - max_age
    for row in rows:
        try:
            if volume.lstat(data_dir, row["path"], row["sid"]).st_mtime >= written_before:
                continue  # still being written
            volume.remove(data_dir, row["path"], row["sid"], written_before)
        except FileNotFoundError:
            pass
        except volume.UnsafePath as err:  # not a stored object of the volume: only forget the row
            log.error("upload %s was recorded with a path that is not its own: %s", row["sid"], err)
        except OSError as err:
            log.warning("cannot remove abandoned upload %s: %s", row["path"], err)
            continue
        with conn.cursor() as cur:
            finish(cur, row["sid"])
        conn.commit()
        removed += 1
    if removed:
        log.info("removed %d abandoned uploads", removed)
    return removed
