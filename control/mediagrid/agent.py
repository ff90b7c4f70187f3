"""Storage agent: joins every tracker and heartbeats its capacity, load and heal status.

One thread per tracker, so a slow or dead tracker never delays the others. A tracker that
does not know the node (it restarted) answers 404 and the agent joins it again.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pymysql
import requests

from . import (
    daemon,
    inflight,
    liverecord,
    liverelay,
    livesessions,
    livesnaps,
    livestore,
    livetranscode,
    liveviews,
    nodeclient,
    orphans,
)
from .config import Settings
from .contract import LiveSession, Report
from .db import LazyDB
from .spool import TMP_DIR

log = logging.getLogger("mediagrid.agent")


_BRICK_RE = re.compile(r"^Brick\s+([^:\s]+):", re.MULTILINE)
_ENTRIES_RE = re.compile(r"^Total Number of entries:\s*(\S+)", re.MULTILINE)


def gluster_heals(output: str, own_host: str) -> tuple[int, int]:
    """``(pending, source)`` from ``gluster volume heal VOL info summary``.

    AFR keeps a pending entry on the brick that took a write its peer missed, so entries
    listed under *another* node's brick are the ones this node's brick must be healed with
    (``pending``); entries under its own brick are heals it is the source of (``source``):
    it stays ACTIVE, but the tracker keeps its peers SYNCING until they are healed, since a
    peer that was cut off cannot see them itself. A brick that is not connected shows ``-``
    and counts for nothing."""
    bricks = list(_BRICK_RE.finditer(output))
    if not bricks:
        raise ValueError("no brick summary in the output")
    pending = source = 0
    for i, brick in enumerate(bricks):
        end = bricks[i + 1].start() if i + 1 < len(bricks) else len(output)
        entries = _ENTRIES_RE.search(output, brick.end(), end)
        if not (entries and entries.group(1).isdigit()):
            continue
        if brick.group(1) == own_host:
            source += int(entries.group(1))
        else:
            pending += int(entries.group(1))
    return pending, source


GLUSTER = "/usr/sbin/gluster"


def heal_argv(volume: str) -> list[str]:
    """The heal query. The gluster CLI talks to glusterd's root-only socket: an agent that
    is not root (it runs as the service user) asks sudo for exactly this command, which is
    all the node's sudoers rule allows it (the mediagrid role writes the rule)."""
    argv = [GLUSTER, "--mode=script", "volume", "heal", volume, "info", "summary"]
    return argv if os.geteuid() == 0 else ["sudo", "-n", *argv]


def check_heal(conf: Settings, timeout: float = 60.0) -> tuple[int, int]:
    """``(pending, source)`` heal entries of this node (see :func:`gluster_heals`): of the
    group's GlusterFS volume (``HEAL_VOLUME``; this node's brick is the one on
    ``HEAL_BRICK_HOST``, by default the host of ``PUBLIC_URL``) or from an operator-supplied
    command printing the pending count (``HEAL_CHECK_COMMAND``); ``(0, 0)`` when neither is
    set. Raises when the check fails."""
    if conf.heal_volume:
        argv = heal_argv(conf.heal_volume)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True)
        own = conf.heal_brick_host or urlsplit(conf.public_url).hostname or ""
        return gluster_heals(out.stdout, own)
    if conf.heal_check_command:
        command = conf.heal_check_command
        out = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=timeout, check=True)
        return int(out.stdout.strip() or 0), 0
    return 0, 0


class HealWatcher:
    """Runs the heal check in a thread of its own, so a slow one never delays a heartbeat:
    ``gluster volume heal info`` waits for a dead peer's brick for many seconds, exactly
    when the surviving node must keep beating as ACTIVE. Heartbeats carry the last answer.
    A failed check keeps the last answer (a dead peer makes the check fail, and says
    nothing new about this node); with no answer yet, or none for ``stale_after`` seconds,
    the node reports itself syncing: unsure is not healthy."""

    def __init__(self, conf: Settings, period: float = 2.0, stale_after: float = 300.0) -> None:
        self.conf, self.period, self.stale_after = conf, period, stale_after
        self._value: tuple[int, int] | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def check_once(self) -> None:
        try:
            value = check_heal(self.conf)
        except (subprocess.SubprocessError, ValueError, OSError) as err:
            log.warning("heal check failed (%s); keeping the last answer", err.__class__.__name__)
            return
        with self._lock:
            self._value, self._at = value, time.monotonic()

    def pending(self) -> int:
        with self._lock:
            if self._value is None or time.monotonic() - self._at > self.stale_after:
                return 1
            return self._value[0]

    def source(self) -> int:
        """Heals this node owes its peers (0 while unknown: it says nothing about them)."""
        with self._lock:
            return self._value[1] if self._value is not None else 0

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.check_once()
            stop.wait(self.period)


def sweep_parts(data_dir: str, max_age: float, now: float | None = None) -> int:
    """Remove upload temporaries (``.tmp/*.part``) nobody has written for ``max_age``
    seconds: what an upload leaves when its node dies mid-stream. A live upload keeps its
    part's mtime fresh, so a peer's upload in progress is never touched."""
    now = time.time() if now is None else now
    removed = 0
    try:
        parts = list(os.scandir(os.path.join(data_dir, TMP_DIR)))
    except OSError:
        return 0
    for entry in parts:
        try:
            if entry.name.endswith(".part") and now - entry.stat().st_mtime > max_age:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    if removed:
        log.info("removed %d stale upload temporaries", removed)
    return removed


class Janitor:
    """Removes what dead uploads leave in the group volume: stale ``.part`` temporaries,
    in-place uploads still recorded as in flight (``inflight``) and, every
    ``ORPHAN_SWEEP_INTERVAL``, stored objects no row refers to (``orphans``). MariaDB being
    down only postpones the last two to the next round."""

    def __init__(self, conf: Settings) -> None:
        self.conf = conf
        self.max_age = conf.stale_part_seconds
        self._db = LazyDB(conf)
        self._next_orphans = 0.0

    def sweep(self) -> int:
        conf = self.conf
        removed = sweep_parts(conf.data_dir, self.max_age)
        try:
            db = self._db.get()
            removed += inflight.sweep(db, conf.group, conf.data_dir, self.max_age)
            if conf.orphan_sweep_interval and time.monotonic() >= self._next_orphans:
                removed += orphans.sweep(db, conf.data_dir, conf.orphan_grace_seconds, conf.id_segment_name)
                self._next_orphans = time.monotonic() + conf.orphan_sweep_interval
        except pymysql.MySQLError as err:
            log.warning("cannot sweep abandoned uploads now: %s", err)
            self._db.drop()
        return removed


_last_seq = 0


def next_seq() -> int:
    """The next report's counter: the clock in ns, and always above the last one, so a
    tracker can refuse a replayed or reordered report (one not newer than the last)."""
    global _last_seq
    _last_seq = max(time.time_ns(), _last_seq + 1)
    return _last_seq


STAT_LOST = 3.0  # seconds without nginx-rtmp's statistics after which it carries nothing
EDGE_STAT_TIMEOUT = 0.5  # seconds an edge's statistics may take (read each heartbeat)
EdgeStats = dict[str, dict[str, int] | None]  # edges' players by stream, by edge address


class LiveOrigin:
    """This origin's live sessions for the heartbeat: the shim's sessions nginx-rtmp still has
    a publisher for, with its figures; their viewers are the RTMP players of the edges that
    pull them from here (each edge's own statistics, LIVE_EDGE_STATS) and the HLS viewers
    the edges tell the views listener of (``liveviews``). A session whose key an operator or the app banned,
    or kicked after it started (``live_keys``), or whose picture is over LIVE_MAX_PIXELS, is
    dropped here through nginx-rtmp's control interface (loopback): nginx-rtmp then calls
    ``on_publish_done`` and the shim tells the trackers. MariaDB being down only postpones
    a ban or a kick."""

    def __init__(self, conf: Settings, views: liveviews.Views | None = None) -> None:
        self.conf = conf
        self.views = views
        self.http = requests.Session()
        self._db = LazyDB(conf)
        self._stat_read = time.monotonic()  # when nginx-rtmp's statistics last answered
        # the edges' nginx-rtmp statistics, by the address their pulls come from
        self.edges = {urlsplit(url).hostname or "": url for url in conf.live_edge_stats}

    def _edge_players(self, url: str) -> dict[str, int] | None:
        """An edge's RTMP players by stream name; None when its statistics cannot be read."""
        try:
            resp = self.http.get(url, timeout=EDGE_STAT_TIMEOUT)
            resp.raise_for_status()
            return livesessions.players(resp.content)
        except (requests.RequestException, ValueError) as err:  # ET.ParseError is a ValueError
            log.warning("cannot read an edge's nginx-rtmp statistics at %s: %s", url, err)
            return None

    def rtmp_viewers(self, name: str, players: tuple[str, ...], edges: EdgeStats) -> int:
        """The RTMP viewers of stream ``name``, whose players here come from ``players``: an
        edge pulls once for all its players, so each edge's pull counts that edge's players
        of the stream (one while its statistics cannot be read: a pull is there for a
        player). Other hosts play here only to relay (the other origins): no viewers. With
        no edge statistics configured, each player from another host counts one.
        ``edges`` holds the statistics read in this heartbeat, by address."""
        if not self.edges:
            return len(players)
        count = 0
        for address in players:
            url = self.edges.get(address)
            if url is None:
                continue
            if address not in edges:
                edges[address] = self._edge_players(url)
            seen = edges[address]
            count += 1 if seen is None else seen.get(name, 0)
        return count

    def moderation(self, kids: list[str]) -> dict[str, tuple[bool, float | None]]:
        try:
            db = self._db.get()
            with db.cursor() as cur:
                got = livestore.moderation(cur, kids)
            db.commit()
            return got
        except pymysql.MySQLError as err:
            log.warning("cannot read the live keys' bans now: %s", err)
            self._db.drop()
            return {}

    def _log(self, session: livesessions.Session, code: str) -> None:
        try:
            db = self._db.get()
            with db.cursor() as cur:
                livestore.log(
                    session.app, session.stream, self.conf.node_id, "dropped", code, session.kid, cur=cur
                )
            db.commit()
        except pymysql.MySQLError as err:
            log.warning("cannot log why %s was dropped: %s", session.name, err)
            self._db.drop()

    def _drop(self, session: livesessions.Session, why: str) -> None:
        try:
            livesessions.drop_publisher(self.http, self.conf.rtmp_stat_url, session)
            log.warning("dropped the publisher of %s (%s): %s", session.name, session.role, why)
        except requests.RequestException as err:
            log.warning("cannot drop the publisher of %s: %s", session.name, err)

    def sessions(self) -> list[LiveSession] | None:
        """None when nginx-rtmp's statistics cannot be read (the trackers keep what they had:
        a slow read must not end a stream), none at all once they have not been read for
        STAT_LOST seconds: an nginx-rtmp that died carries no stream, though this agent
        still heartbeats for the node."""
        conf = self.conf
        if not conf.rtmp_stat_url or not conf.live_sessions_dir:
            return []
        try:
            resp = self.http.get(conf.rtmp_stat_url, timeout=1)
            resp.raise_for_status()
            stats = livesessions.parse_stat(resp.content)
        except (requests.RequestException, ValueError) as err:  # ET.ParseError is a ValueError
            log.warning("cannot read nginx-rtmp statistics at %s: %s", conf.rtmp_stat_url, err)
            return [] if time.monotonic() - self._stat_read > STAT_LOST else None
        self._stat_read = time.monotonic()
        live = livesessions.live(Path(conf.live_sessions_dir), stats)
        verdicts = self.moderation([s.kid for s, _ in live]) if live else {}
        edges: EdgeStats = {}  # each edge's statistics, read once
        out = []
        for s, st in live:
            banned, kicked = verdicts.get(s.kid, (False, None))
            if banned or (kicked is not None and kicked >= s.started):
                self._drop(s, "banned" if banned else "kicked")
                continue
            if conf.live_max_pixels and st.width * st.height > conf.live_max_pixels:
                self._drop(s, f"a {st.width}x{st.height} picture is over LIVE_MAX_PIXELS")
                self._log(s, "picture_too_large")
                continue
            fault = livesessions.fault(st)
            if fault is not None:
                self._drop(s, fault[1])
                self._log(s, fault[0])
                continue
            out.append(
                LiveSession(
                    app=s.app,
                    stream=s.stream,
                    role="primary" if s.role == "primary" else "backup",
                    client=s.client,
                    started=s.started,
                    bw_in=st.bw_in,
                    fps=st.fps,
                    width=st.width,
                    height=st.height,
                    viewers=self.rtmp_viewers(s.name, st.players, edges)
                    + (self.views.viewers(s.name) if self.views else 0),
                    edges=sorted({a for a in st.players if a in self.edges}),
                )
            )
        return out


def report(conf: Settings, heal: HealWatcher, live: list[LiveSession] | None = None) -> Report:
    """One heartbeat. A group volume that cannot be read (its mount lost every brick, say)
    reports no space and a pending heal: the node stays known but is offered to nobody."""
    pending = heal.pending()
    try:
        st = os.statvfs(conf.data_dir)
        free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    except OSError as err:
        log.warning("cannot read the group volume %s: %s", conf.data_dir, err)
        free, total, pending = 0, 0, max(pending, 1)
    return Report(
        node_id=conf.node_id,
        group=conf.group,
        url=conf.public_url,
        free=free,
        total=total,
        reserve=conf.reserve_bytes,
        load=round(os.getloadavg()[0] / (os.cpu_count() or 1), 3),
        heal_pending=pending,
        heal_source=heal.source(),
        seq=next_seq(),
        rtmp_url=conf.rtmp_url,
        live=live,
    )


class TrackerLink:
    def __init__(self, base: str, conf: Settings) -> None:
        self.base = base.rstrip("/")
        self.conf = conf
        self.joined = False
        self.session = requests.Session()

    def _post(self, path: str, body: bytes) -> requests.Response:
        return nodeclient.post(self.session, self.conf, self.base, path, body)

    def beat(self, payload: Report) -> None:
        body = payload.model_dump_json().encode()
        try:
            if self.joined:
                resp = self._post("/api/v1/cluster/heartbeat", body)
                if resp.status_code == 404:
                    self.joined = False
            if not self.joined:
                resp = self._post("/api/v1/cluster/join", body)
                self.joined = resp.status_code == 200
                if self.joined:
                    log.info("joined tracker %s", self.base)
            if resp.status_code != 200:
                log.warning("tracker %s answered %s: %s", self.base, resp.status_code, resp.text[:200])
        except requests.RequestException as err:
            if self.joined:
                log.warning("tracker %s unreachable: %s", self.base, err)
            self.joined = False


def _every_second(task: Callable[[], object], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            task()
        except Exception:  # a task's bug must not end it for good: logged, tried again
            log.exception("agent task %s failed", threading.current_thread().name)
        stop.wait(1.0)


def run(conf: Settings, stop: threading.Event) -> None:
    interval = conf.heartbeat_interval
    links = [TrackerLink(url, conf) for url in conf.trackers]
    if not links:
        raise SystemExit("agent needs MEDIAGRID_TRACKERS")
    heal = HealWatcher(conf)
    heal.check_once()  # the first heartbeat already knows
    threading.Thread(target=heal.run, args=(stop,), daemon=True, name="heal").start()
    janitor = Janitor(conf)
    # who fetches this origin's live playlists: viewers and watched renditions
    views = liveviews.start(conf, stop)
    origin = LiveOrigin(conf, views)
    # a live origin's recordings and snapshots, each in its own thread: an upload or an
    # ffmpeg run never delays a heartbeat
    tasks: list[tuple[str, Callable[[], object]]] = []
    if conf.live_record_dir:
        tasks.append(("live-record", liverecord.LiveRecorder(conf).round))
    if conf.live_hls_url and conf.live_sessions_dir:
        tasks.append(("live-snap", livesnaps.LiveSnapshots(conf).round))
    # dual hot streams: a primary that ended here is fed from its backup, at once
    liverelay.start(conf, stop, LiveOrigin(conf).moderation)
    transcoder = livetranscode.start(conf, views)
    if transcoder is not None:
        tasks.append(("live-transcode", transcoder.round))
    for name, task in tasks:
        threading.Thread(target=_every_second, args=(task, stop), daemon=True, name=name).start()
    next_sweep = 0.0
    while not stop.is_set():
        if time.monotonic() >= next_sweep:
            janitor.sweep()
            if views is not None:
                views.sweep()
            next_sweep = time.monotonic() + 60
        payload = report(conf, heal, origin.sessions())
        threads = [threading.Thread(target=link.beat, args=(payload,)) for link in links]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.wait(interval)
    if transcoder is not None:
        transcoder.close()  # its ffmpeg runs in a session of its own: not signalled with us


def main(argv: list[str] | None = None) -> None:
    daemon.main(
        "mediagrid-agent",
        "mediagrid storage agent",
        ("node_id", "group", "data_dir", "public_url", "node_key"),
        run,
        argv,
    )


if __name__ == "__main__":
    main()
