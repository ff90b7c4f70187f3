"""Stored objects no row refers to, and the agent's walk that removes them.

An upload whose commit failed removes its file, but a crash (or a lost volume) between a
commit that did not happen and that unlink leaves the file in the volume with no row, and
an overwrite whose commit happened leaves the replaced file if the shim dies before its
unlink. Nothing else would ever reclaim them. The agent walks its group volume every
``ORPHAN_SWEEP_INTERVAL`` and removes a stored object when all of these hold:

- its path is a storage path (``volume.stored``: links, temporaries and foreign files are
  never considered), and it is reached without following a link (``volume.remove``);
- nobody has written it for ``ORPHAN_GRACE_SECONDS`` (an upload keeps its file fresh
  until it is fsynced, and commits right after);
- no ``files`` row has its storage id, nor is it an upload in flight (those are
  ``inflight.sweep``'s);
- its storage id is at most the highest id ever reserved (``idalloc.issued``). A file with
  a larger one was stored after the database's state, so the database is behind the
  volume (restored from a backup): such files are what ``mediagrid-admin rebuild`` puts
  back, and the walk leaves every one of them alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

from . import files, idalloc, inflight, volume
from .db import Connection

log = logging.getLogger("mediagrid.orphans")
BATCH = 500  # storage ids looked up per query


def _batches(items: Iterable[volume.Stored], size: int) -> Iterator[list[volume.Stored]]:
    batch: list[volume.Stored] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def sweep(conn: Connection, data_dir: str, grace: float, segment: str, now: float | None = None) -> int:
    """Remove the volume's stored objects that no row refers to (see the module); the count."""
    written_before = (time.time() if now is None else now) - grace
    with conn.cursor() as cur:
        ceiling = idalloc.issued(cur, segment)
    conn.commit()
    if ceiling is None:
        log.warning("no ids reserved for segment %r yet: not looking for orphans", segment)
        return 0
    removed = 0
    for batch in _batches(volume.stored(data_dir), BATCH):
        old = [s for s in batch if s.mtime < written_before and s.sid <= ceiling]
        if not old:
            continue
        sids = [s.sid for s in old]
        with conn.cursor() as cur:
            kept = files.referenced(cur, sids) | inflight.recorded(cur, sids)
        conn.commit()  # end the read view: each batch sees the rows committed before it
        for s in old:
            if s.sid in kept:
                continue
            try:
                if volume.remove(data_dir, s.rel, s.sid, written_before):
                    log.info("removed %s: no row refers to storage id %d", s.rel, s.sid)
                    removed += 1
            except (volume.UnsafePath, OSError) as err:
                log.warning("cannot remove orphan %s: %s", s.rel, err)
    if removed:
        log.info("removed %d orphaned stored objects", removed)
    return removed
