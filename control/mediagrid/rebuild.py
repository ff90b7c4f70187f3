"""``mediagrid-admin rebuild``: the files table put back from the volumes.

Each stored object carries its identity (``identity``). After the database is restored
from a backup, the uploads acknowledged since that backup have no row; this walks a group
volume and puts back each missing row (and the user's route), and raises the id segment
above every storage id found, so no new upload takes an id already in use. Run it right
after a restore, before the agents' orphan sweep (``orphans``), which leaves objects with
storage ids above the segment alone precisely until then.

Where the restored row and an object disagree on a name (an overwrite after the backup),
the later upload wins. Storage ids do not tell which: each storage shim takes ids in
batches, so a later upload on another node may have the smaller one. A row whose object
is gone from the volume (an overwrite unlinks the old object once it commits) loses to
the object found; when both are there (a crash between that commit and the unlink), the
object written last (mtime; stored objects are never written again) wins. The loser, now
unreferenced, is the orphan sweep's. Rows are never removed: a row whose object is gone
(deleted after the backup) stays.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from . import files, idalloc, identity, media, routes, volume
from .db import Connection
from .errors import APIError

log = logging.getLogger("mediagrid.rebuild")


def _row_is_newer(data_dir: str | Path, group: str, row: dict[str, Any], found: volume.Stored) -> bool:
    """Whether the row's object is a later upload of the name than ``found``: it exists and
    was written no earlier. A row of another group is left to the insert (a conflict)."""
    if row["grp"] != group:
        return False
    try:
        theirs = volume.lstat(data_dir, row["path"], int(row["sid"])).st_mtime_ns
    except (FileNotFoundError, volume.UnsafePath):
        return False  # the row points at nothing: the object found replaces it
    return theirs >= volume.lstat(data_dir, found.rel, found.sid).st_mtime_ns


def rebuild(
    conn: Connection, data_dir: str | Path, group: str, segment: str, step: int, dry_run: bool = False
) -> Counter[str]:
    """Put back the rows of ``group``'s volume at ``data_dir``; counts of what was found
    and done (restored, replaced, present, superseded, conflict, no_identity, foreign)."""
    counts: Counter[str] = Counter()
    highest = 0
    for stored in volume.stored(data_dir):
        counts["objects"] += 1
        highest = max(highest, stored.sid)
        ident = identity.read(Path(data_dir) / stored.rel)
        if ident is None:
            counts["no_identity"] += 1
            continue
        if ident.sid != stored.sid or ident.group != group:
            counts["foreign"] += 1  # copied from elsewhere: not this path's object
            log.warning("%s carries the identity of storage id %d in %s", stored.rel, ident.sid, ident.group)
            continue
        with conn.cursor() as cur:
            row = files.row_of(cur, ident.app, ident.user, ident.file_id)
            current = None if row is None else int(row["sid"])
            if current == ident.sid:
                counts["present"] += 1
            elif row is not None and _row_is_newer(data_dir, group, row, stored):
                counts["superseded"] += 1  # a later upload of the name has the row
            elif dry_run:
                counts["replaced" if current is not None else "restored"] += 1
            else:
                try:
                    if current is not None:
                        files.take_over(cur, ident.app, ident.user, ident.file_id, group)
                    files.insert(
                        cur,
                        ident.app,
                        ident.user,
                        ident.file_id,
                        ident.sid,
                        group,
                        stored.rel,
                        ident.size,
                        ident.sha256,
                        ident.content_type,
                    )
                    routes.insert(cur, ident.app, ident.user, group)
                    media.queue(cur, ident.sid, ident.app, group)
                except APIError as err:  # the name's row lives in another group
                    conn.rollback()
                    counts["conflict"] += 1
                    log.warning("%s (%s/%s/%s): %s", stored.rel, ident.app, ident.user, ident.file_id, err)
                    continue
                counts["replaced" if current is not None else "restored"] += 1
        conn.commit()
    if highest and not dry_run:
        with conn.cursor() as cur:
            idalloc.raise_to(cur, segment, highest, step)
        conn.commit()
    counts["highest_sid"] = highest
    return counts
