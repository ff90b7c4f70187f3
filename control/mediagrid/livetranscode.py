"""Live transcoding on demand (issue 13, flow 7): a lower rendition of a live stream, made
while somebody watches it.

- A viewer asks for a rung (``/live/<app>/<stream>.m3u8?token=...&rendition=480p``). The
  tracker writes a ``live_transcodes`` row for the stream's origin (:func:`want`) and waits
  until the origin's agent has admitted it and the rendition's first segment is out; then
  it sends the viewer to the edge as for the source, under ``<app>.<stream>.<rung>``.
- The origin's agent (:class:`LiveTranscoder`, every second) admits a wanted rendition
  within the node's media budget, the one VOD jobs are claimed against (``jobs``): live
  first, since a live transcode counts only the node's other live transcodes, while a VOD
  job waits until live transcodes and running jobs leave it room. Over the budget, the row
  is refused (``no_capacity``). An admitted rendition is one ffmpeg that plays the stream
  from nginx-rtmp on loopback and writes HLS (1 s segments, a 4 s playlist) into
  LIVE_RENDITIONS_DIR, which the node's nginx serves to the edges with the source's HLS.
- Watching is seen where it costs nothing (``liveviews``): nginx's access log lines for
  the rendition's playlist, from the origin's own nginx (the edges' cache fetches) and
  from the edges (each viewer's fetch), sent to the agent as syslog over UDP
  (LIVE_VIEWS_PORT). A rendition nobody fetched for LIVE_TRANSCODE_IDLE seconds (30) is
  stopped, its row and files removed; so is one whose source stream ended (ffmpeg sees
  the end of its input).

Python decides and records; nginx-rtmp and ffmpeg carry the media.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pymysql

from . import daemon, jobs, ladder, livesessions, streamkeys
from .config import Settings
from .db import LazyDB
from .liveviews import Views
from .worker import encode_cores

log = logging.getLogger("mediagrid.livetranscode")

LEASE = 10.0  # seconds a running transcode's row outlives its agent's last renewal
SEGMENT = 1  # seconds, as nginx-rtmp cuts the source
PLAYLIST = 4  # segments a rendition's playlist lists
REFUSED_KEPT = 60  # seconds a refused rendition's row stays
STOP_WAIT = 5.0  # seconds ffmpeg has to finish after SIGTERM before it is killed


def rendition_name(app: str, stream: str, rung: str) -> str:
    """The rendition's name at the origin and on the edges: its stream's, then the rung."""
    return f"{app}.{stream}.{rung}"


def rung_of(name: str) -> ladder.Rung:
    """A rung a viewer may ask for (``480p``), or ValueError."""
    rung = ladder.RUNGS.get(name)
    if rung is None:
        raise ValueError(name)
    return rung


def cores(rung: ladder.Rung) -> float:
    """What a live encode of ``rung`` holds of the node's budget (16:9 at 30 fps)."""
    return encode_cores(16 / 9, rung.height, 30)


# -- the tracker's side ------------------------------------------------------------------


def want(cur: Any, app: str, stream: str, rung: ladder.Rung, node_id: str) -> dict[str, Any]:
    """Ask ``node_id`` (the stream's origin) for the rendition, or count a play of one that
    runs; the row as it is now."""
    cur.execute(
        "SELECT node_id, state, ready, lease_until > NOW(3) AS leased FROM live_transcodes"
        " WHERE app = %s AND stream = %s AND rung = %s FOR UPDATE",
        (app, stream, rung.name),
    )
    row = cur.fetchone()
    fresh = (
        row is None
        or row["node_id"] != node_id  # the stream moved to another origin
        or row["state"] == "refused"  # admission is tried again for every new viewer
        or (row["state"] == "running" and not row["leased"])  # its agent stopped
    )
    if fresh:
        cur.execute(
            "REPLACE INTO live_transcodes (app, stream, rung, node_id, cores, state, wanted, viewed)"
            " VALUES (%s, %s, %s, %s, %s, 'wanted', NOW(3), NOW(3))",
            (app, stream, rung.name, node_id, cores(rung)),
        )
    else:
        cur.execute(
            "UPDATE live_transcodes SET viewed = NOW(3) WHERE app = %s AND stream = %s AND rung = %s",
            (app, stream, rung.name),
        )
    return state(cur, app, stream, rung.name) or {}


def state(cur: Any, app: str, stream: str, rung: str) -> dict[str, Any] | None:
    cur.execute(
        "SELECT node_id, state, code, ready IS NOT NULL AS ready FROM live_transcodes"
        " WHERE app = %s AND stream = %s AND rung = %s",
        (app, stream, rung),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def running(cur: Any, app: str, stream: str) -> list[str]:
    """The stream's renditions that play now (for the registry's answers)."""
    cur.execute(
        "SELECT rung FROM live_transcodes WHERE app = %s AND stream = %s AND state = 'running'"
        " AND ready IS NOT NULL AND lease_until > NOW(3) ORDER BY rung",
        (app, stream),
    )
    return [str(r["rung"]) for r in cur.fetchall()]


# -- the origin's side ---------------------------------------------------------------------


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    started: float  # monotonic
    log_path: Path


class LiveTranscoder:
    """The agent's live transcodes: :meth:`round` every second, in a thread of its own."""

    def __init__(self, conf: Settings, views: Views | None) -> None:
        self.conf = conf
        self.views = views
        self.out = Path(conf.live_renditions_dir)
        self.budget = jobs.node_budget(conf.worker_budget)
        self.source = f"rtmp://127.0.0.1:{urlsplit(conf.rtmp_url).port or 1935}/live/"
        self.procs: dict[str, Running] = {}
        self._db = LazyDB(conf)

    def _argv(
        self, app: str, stream: str, rung: ladder.Rung, folder: Path, cpu: float, resume: bool = False
    ) -> list[str]:
        session = int(time.time() * 1000)  # segment names never repeat across runs (edge caches)
        # resumed: the playlist goes on from the last run's (its numbering, then a
        # discontinuity), so its players do not see the media sequence go back
        flags = "delete_segments+temp_file+omit_endlist" + ("+append_list" if resume else "")
        return [
            "ffmpeg",
            "-nostdin", "-hide_banner", "-loglevel", "error",
            "-rw_timeout", "10000000",
            "-i", self.source + streamkeys.rtmp_name(app, stream),
            "-map", "0:v:0", "-map", "0:a:0?",
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
            "-threads", str(int(cpu)),
            "-vf", f"scale=-2:{rung.height}",
            "-b:v", f"{rung.video_kbps}k", "-maxrate", f"{rung.maxrate_kbps}k",
            "-bufsize", f"{rung.bufsize_kbps}k",
            "-force_key_frames", f"expr:gte(t,n_forced*{SEGMENT})", "-sc_threshold", "0",
            "-c:a", "aac", "-b:a", f"{rung.audio_kbps}k", "-ac", "2",
            "-f", "hls", "-hls_time", str(SEGMENT), "-hls_list_size", str(PLAYLIST),
            "-hls_flags", flags,
            "-hls_segment_filename", str(folder / f"{session}-%d.ts"),
            str(folder / "index.m3u8"),
        ]  # fmt: skip

    def _start(self, app: str, stream: str, rung: ladder.Rung, cpu: float, resume: bool = False) -> None:
        name = rendition_name(app, stream, rung.name)
        if name in self.procs:  # started before, but its row was not updated (MariaDB lost)
            self._stop(name, "started again")
        folder = self.out / name
        resume = resume and (folder / "index.m3u8").is_file()
        if not resume:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        log_path = self.out / f".{name}.log"
        with open(log_path, "wb") as err:
            proc = subprocess.Popen(
                self._argv(app, stream, rung, folder, cpu, resume),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        self.procs[name] = Running(proc, time.monotonic(), log_path)
        log.info("live transcode %s %s (pid %d)", name, "resumed" if resume else "started", proc.pid)

    def _stop(self, name: str, why: str, keep_output: bool = False) -> None:
        run = self.procs.pop(name, None)
        if run is not None:
            daemon.terminate(run.proc, STOP_WAIT)
            run.log_path.unlink(missing_ok=True)
        if not keep_output:
            shutil.rmtree(self.out / name, ignore_errors=True)
        if self.views is not None:
            self.views.forget(name)
        log.info("live transcode %s stopped: %s", name, why)

    def _exited(self, name: str) -> str | None:
        """Why a transcode's ffmpeg is no longer running (None while it is)."""
        run = self.procs.get(name)
        if run is None:
            return "not running here"
        code = run.proc.poll()
        if code is None:
            return None
        said = daemon.last_line(run.log_path)
        return f"ffmpeg exited {code}" + (f": {said}" if said else " (its source ended)")

    def _idle(self, name: str, row: dict[str, Any]) -> bool:
        run = self.procs.get(name)
        seen = [t for t in (self.views.last(name) if self.views else None, run.started if run else None) if t]
        # a play through the tracker counts as a view too (its row's ``viewed``)
        recent = max(seen, default=0.0)
        since_play = float(row["since_viewed"]) if row["since_viewed"] is not None else 1e9
        return min(time.monotonic() - recent, since_play) > self.conf.live_transcode_idle

    def round(self) -> None:
        conf = self.conf
        try:
            db = self._db.get()
            with db.cursor() as cur:
                cur.execute(
                    "SELECT app, stream, rung, cores, state, ready IS NOT NULL AS ready,"
                    " TIMESTAMPDIFF(MICROSECOND, viewed, NOW(3)) / 1e6 AS since_viewed"
                    " FROM live_transcodes WHERE node_id = %s AND state IN ('wanted', 'running')"
                    " ORDER BY wanted FOR UPDATE",
                    (conf.node_id,),
                )
                rows = list(cur.fetchall())
                # a refusal is kept a while for the tracker to answer with (a new viewer's
                # want() tries again anyway), then forgotten
                cur.execute(
                    "DELETE FROM live_transcodes WHERE node_id = %s AND state = 'refused'"
                    " AND wanted < NOW(3) - INTERVAL %s SECOND",
                    (conf.node_id, REFUSED_KEPT),
                )
                live = {
                    s.name for s in livesessions.load(Path(conf.live_sessions_dir)) if s.role == "primary"
                }
                used = sum(float(r["cores"]) for r in rows if r["state"] == "running")
                keep: set[str] = set()
                ending: dict[str, str] = {}  # stopped once the rows are gone (no lock held meanwhile)
                for row in rows:
                    app, stream, rung_name = str(row["app"]), str(row["stream"]), str(row["rung"])
                    name = rendition_name(app, stream, rung_name)
                    key = (app, stream, rung_name)
                    if row["state"] == "wanted":
                        cpu = float(row["cores"])
                        if streamkeys.rtmp_name(app, stream) not in live:
                            self._refuse(cur, key, "stream_offline")
                        elif used + cpu > self.budget:
                            self._refuse(cur, key, "no_capacity")
                            log.warning("transcode %s refused: %.1f of %.1f cores", name, used, self.budget)
                        else:
                            self._start(app, stream, rung_of(rung_name), cpu)
                            used += cpu
                            cur.execute(
                                "UPDATE live_transcodes SET state = 'running', ready = NULL,"
                                " lease_until = NOW(3) + INTERVAL %s SECOND"
                                " WHERE app = %s AND stream = %s AND rung = %s",
                                (LEASE, *key),
                            )
                            keep.add(name)
                        continue
                    if name not in self.procs and streamkeys.rtmp_name(app, stream) in live:
                        # running for an agent that stopped (a restart, a deploy): resumed
                        # here, its viewers' playlist going on; what they fetch from now
                        # on keeps it, as for a new one
                        self._start(app, stream, rung_of(rung_name), float(row["cores"]), resume=True)
                    gone = self._exited(name)
                    if gone is not None or self._idle(name, row):
                        ending[name] = gone or f"nobody watched for {conf.live_transcode_idle} s"
                        cur.execute(
                            "DELETE FROM live_transcodes WHERE app = %s AND stream = %s AND rung = %s", key
                        )
                        continue
                    keep.add(name)
                    ready = bool(row["ready"]) or (self.out / name / "index.m3u8").exists()
                    cur.execute(
                        "UPDATE live_transcodes SET lease_until = NOW(3) + INTERVAL %s SECOND,"
                        " ready = IF(%s, COALESCE(ready, NOW(3)), NULL)"
                        " WHERE app = %s AND stream = %s AND rung = %s",
                        (LEASE, ready, *key),
                    )
            db.commit()
        except pymysql.MySQLError as err:
            log.warning("cannot run the live transcodes' round now: %s", err)
            self._db.drop()
            return
        for name in set(self.procs) - keep:  # rows ended here, or another tracker moved
            self._stop(name, ending.get(name, "no longer wanted here"))
        for folder in self.out.iterdir():  # left by an agent that stopped, and not resumed
            if folder.is_dir() and folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)

    def _refuse(self, cur: Any, key: tuple[str, str, str], code: str) -> None:
        cur.execute(
            "UPDATE live_transcodes SET state = 'refused', code = %s"
            " WHERE app = %s AND stream = %s AND rung = %s",
            (code, *key),
        )

    def close(self) -> None:
        """The agent stops: so do its transcodes, their rows and output kept for the agent
        that comes next to resume (their lease lapses if none does)."""
        for name in list(self.procs):
            self._stop(name, "the agent stops", keep_output=True)


def start(conf: Settings, views: Views | None) -> LiveTranscoder | None:
    """The agent's live transcodes, when this node is an origin with LIVE_RENDITIONS_DIR;
    None otherwise, and when LIVE_VIEWS_PORT is set but its listener could not start
    (without the fetches, a watched rendition would be stopped as unwatched)."""
    if not (conf.live_renditions_dir and conf.live_sessions_dir and conf.rtmp_url):
        return None
    if conf.live_views_port and views is None:
        log.error("no live transcodes: the views listener is not running")
        return None
    os.makedirs(conf.live_renditions_dir, exist_ok=True)
    return LiveTranscoder(conf, views)
