"""Recording live streams for replay (issue 13, flow 5).

nginx-rtmp records every publisher on the origin (``record all`` into ``LIVE_RECORD_DIR``,
``<app>.<stream>-<unix time>.flv``), cut into parts every ``record_interval``. When it
closes a part it calls the shim's ``record_done`` hook, which moves the part into
``ready/`` under the publisher's key id (``<kid>.<app>.<stream>-<time>.flv``): nothing
else happens on nginx-rtmp's side. The agent then, one part at a time, oldest first:

- keeps it only if the key was issued to be recorded (``live_keys.record``: the stream's
  owner asked, and the key is the primary's); any other part is deleted;
- has ffmpeg remux it to MP4 with the index first (``-c copy -movflags +faststart``);
- uploads the MP4 as a file of the stream's owner, through the owner's group like any
  upload (so it is complete and recorded, or absent, and the VOD pipeline packages it),
  named ``<stream>-<UTC time the part began, YYYYmmddTHHMMSSZ>``; it signs as the app,
  whose secret the storage services already read to check the app's requests;
- deletes the part once the cluster has the file, and logs ``recorded`` (or
  ``record_failed`` with a code) in the stream's events.

A part is stored within seconds of being closed, so an origin that dies loses at most the
part it was writing; and that part is not lost either if the node comes back: a part no
hook handed over (nginx-rtmp killed, or the shim down when it called) and untouched for
``ORPHAN_AFTER`` seconds is taken as closed and handed over by the agent itself, under the
newest recorded primary key of its stream issued for this node before it began.

An upload the cluster could not take now (no storage answered) is tried again the next
round; a refusal (a quota, say) is final and logged.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pymysql

from . import apps, livestore
from .client import Client, MediagridError
from .config import Settings
from .db import LazyDB
from .package import PackageFailed
from .thumbs import run_ffmpeg

log = logging.getLogger("mediagrid.liverecord")

# a closed part as the hook leaves it: <kid>.<app>.<stream>-<unix time>.flv
_READY = re.compile(
    r"(?P<kid>[A-Za-z0-9_-]{1,16})\.(?P<app>[a-z0-9][a-z0-9_-]{0,31})"
    r"\.(?P<stream>[A-Za-z0-9][A-Za-z0-9_-]{0,63})-(?P<began>[0-9]{1,12})\.flv"
)
# a part as nginx-rtmp names it (record_unique on)
PART = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}\.[A-Za-z0-9][A-Za-z0-9_-]{0,63}-[0-9]{1,12}\.flv")
REMUX_TIMEOUT = 600.0
# a part nginx-rtmp still writes is touched every second; one of a publisher that stopped
# sending is closed within 5 s (drop_idle_publisher)
ORPHAN_AFTER = 60.0


def ready_dir(record_dir: str | Path) -> Path:
    return Path(record_dir) / "ready"


def file_id(stream: str, began: int) -> str:
    return f"{stream}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(began))}"


class Retry(Exception):
    """The part stays for the next round."""


class LiveRecorder:
    """The agent's recording task: :meth:`round` every second, in a thread of its own."""

    def __init__(self, conf: Settings) -> None:
        self.conf = conf
        self._db = LazyDB(conf)
        self._tracker = 0  # which tracker the uploads ask first; the next one after a failure
        self._next_adopt = 0.0

    def _upload(self, app: str, secret: str, mp4: Path, user: str, fid: str) -> dict[str, Any]:
        trackers = self.conf.trackers
        base = trackers[self._tracker % len(trackers)]
        # the storage nodes answer uploads over HTTPS with certificates of the cluster's CA,
        # the one MariaDB's certificate is checked against too
        client = Client(url=base, app=app, secret=secret, timeout=120.0, ca_file=self.conf.db_ssl_ca or None)
        try:
            return client.upload(mp4, user, fid, content_type="video/mp4")
        except MediagridError as err:
            if err.code == "file_exists":  # an earlier round stored it and lost the answer
                return {"file_id": fid, "existed": True}
            if err.status >= 500:
                self._tracker += 1
                raise Retry(f"{err.code}: {err.message}") from err
            raise
        except OSError as err:  # requests' errors are OSErrors
            self._tracker += 1
            raise Retry(str(err)) from err

    def one(self, cur: Any, part: Path) -> str:
        """Store or drop one closed part; what became of it."""
        match = _READY.fullmatch(part.name)
        if match is None:
            part.unlink(missing_ok=True)
            return "ignored"
        app, stream, kid, began = match["app"], match["stream"], match["kid"], int(match["began"])
        key = livestore.recorded_key(cur, kid)
        if key is None or (key["app"], key["stream"]) != (app, stream):
            part.unlink(missing_ok=True)  # not a recorded stream, or a backup's part
            return "dropped"
        secret = apps.secret(cur, app)
        if secret is None:
            part.unlink(missing_ok=True)
            return "dropped"
        mp4 = part.with_name(f".{part.stem}.mp4")
        fid = file_id(stream, began)
        node = self.conf.node_id
        try:
            try:
                run_ffmpeg(
                    [*("-i", str(part), "-map", "0", "-c", "copy"), "-movflags", "+faststart", str(mp4)],
                    REMUX_TIMEOUT,
                    "ffmpeg",
                )
            except PackageFailed as err:
                # an empty part (a publisher that sent nothing, or no picture or sound)
                log.warning("part %s of %s.%s does not remux: %s", part.name, app, stream, err)
                livestore.log(app, stream, node, "record_failed", "remux_failed", kid, cur=cur)
                part.unlink(missing_ok=True)
                return "failed"
            try:
                stored = self._upload(app, secret, mp4, str(key["user"]), fid)
            except MediagridError as err:
                log.warning("the cluster refused part %s of %s.%s: %s", part.name, app, stream, err)
                livestore.log(app, stream, node, "record_failed", err.code[:64], kid, cur=cur)
                part.unlink(missing_ok=True)
                return "failed"
            livestore.log(app, stream, node, "recorded", fid, kid, cur=cur)
            log.info("stored part %s of %s.%s as %s (%s)", part.name, app, stream, fid, stored.get("size"))
            part.unlink(missing_ok=True)
            return "stored"
        finally:
            mp4.unlink(missing_ok=True)

    def adopt(self, cur: Any, now: float) -> int:
        """Hand over the parts no hook did (see the module's text); how many."""
        root = Path(self.conf.live_record_dir)
        adopted = 0
        for part in root.glob("*.flv"):
            try:
                if PART.fullmatch(part.name) is None or now - part.stat().st_mtime < ORPHAN_AFTER:
                    continue
            except FileNotFoundError:
                continue
            name, _, began = part.name[: -len(".flv")].rpartition("-")
            app, _, stream = name.partition(".")
            kid = livestore.recorded_key_before(cur, app, stream, self.conf.node_id, int(began) + 1)
            if kid is None:
                part.unlink(missing_ok=True)
                continue
            ready = ready_dir(root)
            ready.mkdir(mode=0o770, exist_ok=True)
            part.replace(ready / f"{kid}.{part.name}")
            log.warning("adopted part %s, which no hook handed over", part.name)
            adopted += 1
        return adopted

    def round(self) -> dict[str, int]:
        """Every part ready now, oldest first; how many became what."""
        ready = ready_dir(self.conf.live_record_dir)
        done: dict[str, int] = {}
        if time.time() >= self._next_adopt:
            self._next_adopt = time.time() + 10
            try:
                db = self._db.get()
                with db.cursor() as cur:
                    self.adopt(cur, time.time())
                db.commit()
            except pymysql.MySQLError as err:
                log.warning("cannot adopt orphaned parts now: %s", err)
                self._db.drop()
        # oldest first: by the time each began (all have 10-digit times until 2286)
        parts = sorted(ready.glob("*.flv"), key=lambda p: p.name.rsplit("-", 1)[-1]) if ready.is_dir() else []
        if not parts:
            return done
        try:
            db = self._db.get()
            for part in parts:
                with db.cursor() as cur:
                    try:
                        what = self.one(cur, part)
                    except Retry as err:
                        log.warning("part %s stays for the next round: %s", part.name, err)
                        break
                db.commit()
                done[what] = done.get(what, 0) + 1
        except pymysql.MySQLError as err:
            log.warning("cannot store recorded parts now: %s", err)
            self._db.drop()
        return done
