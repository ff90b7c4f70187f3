"""Snapshots of live streams, for moderation (issue 13, flow 6).

The origin's agent takes them: every N seconds per stream (the stream's own interval, else
its app's, else ``LIVE_SNAPSHOT_EVERY``; 0 takes none) it reads the stream's live HLS
playlist from the node's nginx on loopback and has ffmpeg decode the first picture of the
newest segment (a keyframe: segments start on one) into a JPEG at most 640 pixels wide.
Python never touches the picture. The JPEG is written beside its final name in the
origin's group volume (``live-snapshots/<app>/<stream>/<ms>.jpg``, replicated like every
stored file), renamed into place, and only then recorded in ``live_snapshots``; the
trackers list the rows newest first with a direct link each (nginx serves the bytes).
Snapshots older than ``LIVE_SNAPSHOT_KEEP`` are deleted by the agents of their group, row
first, then file.

Only the primary publisher is snapshotted: a backup carries the same picture.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pymysql
import requests

from . import livesessions
from .config import Settings
from .db import LazyDB, transaction
from .package import PackageFailed
from .thumbs import run_ffmpeg

log = logging.getLogger("mediagrid.livesnaps")

SNAP_DIR = "live-snapshots"  # in the group volume; not a storage path (the sweeps skip it)
WIDTH = 640
LISTED = 100
PRUNE_EVERY = 60.0  # seconds
TIMEOUT = 10.0  # seconds ffmpeg may take for one picture


def interval(cur: Any, app: str, stream: str, default: int) -> int:
    """Seconds between the stream's snapshots (0: none)."""
    cur.execute(
        "SELECT s.snapshot_every, a.live_snapshot_every FROM live_streams s"
        " LEFT JOIN apps a ON a.app = s.app WHERE s.app = %s AND s.stream = %s",
        (app, stream),
    )
    row = cur.fetchone()
    if row is None:
        return default
    for value in (row["snapshot_every"], row["live_snapshot_every"]):
        if value is not None:
            return int(value)
    return default


def listing(app: str, stream: str, limit: int = LISTED) -> list[dict[str, Any]]:
    """The stream's snapshots, newest first (for the trackers' API)."""
    with transaction() as cur:
        cur.execute(
            "SELECT at, grp, node_id, path, size FROM live_snapshots"
            " WHERE app = %s AND stream = %s ORDER BY at DESC LIMIT %s",
            (app, stream, limit),
        )
        return list(cur.fetchall())


def newest(app: str, stream: str) -> dict[str, Any] | None:
    found = listing(app, stream, 1)
    return found[0] if found else None


def newest_segment(playlist: str) -> str | None:
    """The last segment an HLS media playlist lists (a complete one: nginx-rtmp lists a
    segment once it is closed), or None."""
    uris = [line.strip() for line in playlist.splitlines() if line.strip() and not line.startswith("#")]
    if not uris:
        return None
    name = uris[-1]
    # nginx-rtmp writes bare file names; anything else is not its playlist
    if "/" in name or not name.endswith(".ts") or name.startswith("."):
        return None
    return name


class LiveSnapshots:
    """The agent's snapshot task: :meth:`round` every second, in a thread of its own."""

    def __init__(self, conf: Settings) -> None:
        self.conf = conf
        self.http = requests.Session()
        self._db = LazyDB(conf)
        self._last: dict[str, float] = {}
        self._next_prune = 0.0

    def _due(self, cur: Any, session: livesessions.Session, now: float) -> bool:
        every = interval(cur, session.app, session.stream, self.conf.live_snapshot_every)
        if every <= 0:
            return False
        return now - self._last.get(session.name, 0.0) >= every

    def take(self, session: livesessions.Session) -> dict[str, Any] | None:
        """One snapshot of ``session`` into the group volume; its row's values, or None
        when the stream has no segment yet."""
        conf = self.conf
        base = f"{conf.live_hls_url.rstrip('/')}/{session.name}/"
        resp = self.http.get(base + "index.m3u8", timeout=2)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        segment = newest_segment(resp.text)
        if segment is None:
            return None
        at = int(time.time() * 1000)
        rel = f"{SNAP_DIR}/{session.app}/{session.stream}/{at}.jpg"
        final = Path(conf.data_dir) / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{at}.tmp.jpg")
        try:
            run_ffmpeg(
                [
                    "-i",
                    base + segment,
                    "-frames:v",
                    "1",
                    "-vf",
                    f"scale='min({WIDTH},iw)':-2",
                    "-q:v",
                    "5",
                    "-f",
                    "image2",
                    str(tmp),
                ],
                TIMEOUT,
                "ffmpeg",
            )
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return {"at": at, "path": rel, "size": final.stat().st_size}

    def _record(self, cur: Any, session: livesessions.Session, snap: dict[str, Any]) -> None:
        conf = self.conf
        row = (session.app, session.stream, snap["at"], conf.group, conf.node_id, snap["path"], snap["size"])
        cur.execute(
            "INSERT INTO live_snapshots (app, stream, at, grp, node_id, path, size)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            row,
        )

    def prune(self, cur: Any, now: float) -> int:
        """Delete this group's snapshots older than LIVE_SNAPSHOT_KEEP: rows, then files."""
        cutoff = int((now - self.conf.live_snapshot_keep) * 1000)
        cur.execute(
            "SELECT app, stream, at, path FROM live_snapshots WHERE grp = %s AND at < %s LIMIT 1000",
            (self.conf.group, cutoff),
        )
        old = list(cur.fetchall())
        for row in old:
            cur.execute(
                "DELETE FROM live_snapshots WHERE app = %s AND stream = %s AND at = %s",
                (row["app"], row["stream"], row["at"]),
            )
        cur.connection.commit()
        for row in old:
            (Path(self.conf.data_dir) / row["path"]).unlink(missing_ok=True)
        return len(old)

    def round(self, now: float | None = None) -> int:
        """Snapshots due now; how many were taken."""
        conf = self.conf
        now = time.time() if now is None else now
        sessions = [s for s in livesessions.load(Path(conf.live_sessions_dir)) if s.role == "primary"]
        live = {s.name for s in sessions}
        self._last = {k: v for k, v in self._last.items() if k in live}
        taken = 0
        try:
            db = self._db.get()
            with db.cursor() as cur:
                for session in sessions:
                    if not self._due(cur, session, now):
                        continue
                    try:
                        snap = self.take(session)
                    except (requests.RequestException, PackageFailed, OSError) as err:
                        log.warning("no snapshot of %s now: %s", session.name, err)
                        self._last[session.name] = now  # not again before the interval
                        continue
                    if snap is None:
                        continue
                    self._last[session.name] = now
                    try:
                        self._record(cur, session, snap)
                        db.commit()
                    except pymysql.MySQLError:
                        (Path(conf.data_dir) / snap["path"]).unlink(missing_ok=True)
                        raise
                    taken += 1
                if now >= self._next_prune:
                    self.prune(cur, now)
                    self._next_prune = now + PRUNE_EVERY
            db.commit()
        except pymysql.MySQLError as err:
            log.warning("cannot record live snapshots now: %s", err)
            self._db.drop()
        return taken
