"""Dual hot streams (issue 13, flow 8): switching at the origin.

A stream has two publishers, a primary and a backup, on origins of two groups; viewers
play the primary origin's HLS through the edges. When the primary's encoder dies (nginx-rtmp
sees its connection close, or drops it after 5 s of silence), the primary origin goes on
feeding the *same* stream name from the backup origin:

1. The shim's ``on_publish_done`` for a primary writes a relay request here
   (``<LIVE_SESSIONS_DIR>/relay/<app>.<stream>.json``).
2. The node's agent (:class:`LiveRelay`, polling every 100 ms) asks a tracker where the
   stream's backup is live (``POST /api/v1/cluster/live/relay``, node-signed) and starts one
   ``ffmpeg -c copy`` that plays it from the backup origin's nginx-rtmp and publishes it to
   this one's on loopback, under the stream's name, with a one-time nonce (``relay=``) the
   shim checks against the request and then clears: no stream key on a command line.
3. nginx-rtmp's HLS goes on in the same playlist (``hls_continuous``, its default): the
   media sequence continues and the relayed fragments start after an
   ``#EXT-X-DISCONTINUITY``, at the backup's next keyframe. The edges, their cached URLs
   and the players never change origin; a player's buffer (about 1.5 s) covers the
   switch.
4. When the primary encoder publishes again, the shim's ``on_publish`` takes the stream
   back: it cancels the request, drops the relay's publisher through nginx-rtmp's control
   interface, then admits the primary, whose HLS starts at its first keyframe after
   another discontinuity. The relay's ffmpeg, its output closed, exits.

The relay is admitted as the stream's primary (the registry keeps sending viewers here),
under the primary's key id, so a ban or a kick of that key ends it too; a recorded
stream's relayed span is recorded as the primary's (its parts carry that key id).
Python decides; nginx-rtmp and ffmpeg carry the media.
"""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import requests

from . import daemon, livesessions, nodeclient, streamkeys
from .config import Settings

log = logging.getLogger("mediagrid.liverelay")

POLL = 0.1  # seconds between the agent's looks at the requests
ATTEMPTS = 3  # failed ffmpeg runs before a request is given up
STOP_WAIT = 3.0  # seconds a relay's ffmpeg has to end after SIGTERM


@dataclass(frozen=True)
class Request:
    """A primary publisher ended here: feed its stream from the backup."""

    app: str
    stream: str
    kid: str  # the primary's key id: bans and kicks of it apply to the relay
    started: float  # the primary's start, which the relay's session keeps
    asked: float
    nonce: str = ""  # the running attempt's, checked by ``on_publish``

    @property
    def name(self) -> str:
        return streamkeys.rtmp_name(self.app, self.stream)


def _dir(root: Path) -> Path:
    return root / "relay"


def _path(root: Path, name: str) -> Path:
    if streamkeys.split_rtmp_name(name) is None:
        raise ValueError("not a stream name")
    return _dir(root) / f"{name}.json"


def write(root: Path, request: Request) -> None:
    folder = _dir(root)
    folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    livesessions.put_json(_path(root, request.name), asdict(request))


def ask(root: Path, session: livesessions.Session) -> None:
    """The shim: ``session`` (a primary) ended; feed its stream from the backup."""
    write(root, Request(session.app, session.stream, session.kid, session.started, time.time()))


def read(root: Path, name: str) -> Request | None:
    try:
        return Request(**json.loads(_path(root, name).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def cancel(root: Path, name: str) -> None:
    with suppress(ValueError):
        _path(root, name).unlink(missing_ok=True)


def pending(root: Path) -> list[Request]:
    folder = _dir(root)
    if not folder.is_dir():
        return []
    return [r for p in folder.glob("*.json") if (r := read(root, p.name[: -len(".json")])) is not None]


def admits(root: Path, name: str, nonce: str) -> Request | None:
    """The request a relay's publish with ``nonce`` belongs to, if it is the running one."""
    request = read(root, name)
    if request is None or not request.nonce or not secrets.compare_digest(request.nonce, nonce):
        return None
    return request


# -- the agent's side ----------------------------------------------------------------------


def tracker_source(conf: Settings, http: requests.Session) -> Callable[[Request], str | None]:
    """Asks the trackers in turn where a stream's backup is live: its RTMP URL, or None."""

    def source(request: Request) -> str | None:
        body = json.dumps({"node_id": conf.node_id, "app": request.app, "stream": request.stream}).encode()
        for base in conf.trackers:
            try:
                resp = nodeclient.post(http, conf, base, "/api/v1/cluster/live/relay", body, timeout=1)
            except requests.RequestException as err:
                log.warning("tracker %s unreachable for a relay source: %s", base, err)
                continue
            if resp.status_code == 200:
                return str(resp.json()["source"])
            if resp.status_code == 404:
                return None
            log.warning("tracker %s answered %s for a relay source", base, resp.status_code)
        return None

    return source


@dataclass
class Relay:
    proc: subprocess.Popen[bytes]
    log_path: Path


class LiveRelay:
    """The agent's relays: :meth:`serve` in a thread of its own."""

    def __init__(
        self,
        conf: Settings,
        source: Callable[[Request], str | None],
        moderation: Callable[[list[str]], dict[str, tuple[bool, float | None]]],
    ) -> None:
        self.conf = conf
        self.moderation = moderation
        self.root = Path(conf.live_sessions_dir)
        self.source = source
        self.target = f"rtmp://127.0.0.1:{urlsplit(conf.rtmp_url).port or 1935}/live/"
        self.running: dict[str, Relay] = {}
        self.failures: dict[str, int] = {}

    def _start(self, request: Request, source: str) -> None:
        nonce = secrets.token_urlsafe(16)
        write(self.root, replace(request, nonce=nonce))
        log_path = _dir(self.root) / f".{request.name}.log"
        argv = [
            "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
            "-rw_timeout", "5000000",
            # nginx-rtmp sends a new player audio at once and video from the next keyframe:
            # the probe waits for that (up to 2 s) but not for frame rates (fpsprobesize),
            # so the relay starts at the first keyframe without a burst of buffered media
            # (two fragments in one millisecond would get one wall-clock name)
            "-analyzeduration", "2000000", "-fpsprobesize", "0",
            "-i", source,
            "-map", "0", "-c", "copy",
            # kid: its parts are recorded as the primary's (the shim's record_done)
            "-f", "flv", f"{self.target}{request.name}?relay={nonce}&kid={request.kid}",
        ]  # fmt: skip
        with open(log_path, "wb") as err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
            )
        self.running[request.name] = Relay(proc, log_path)
        log.warning("primary of %s ended: relaying it from %s (pid %d)", request.name, source, proc.pid)

    def _stop(self, name: str, why: str) -> None:
        relay = self.running.pop(name, None)
        if relay is None:
            return
        daemon.terminate(relay.proc, STOP_WAIT)
        relay.log_path.unlink(missing_ok=True)
        log.info("relay of %s stopped: %s", name, why)

    def _outcome(self, name: str, relay: Relay) -> str | None:
        """None while the relay's ffmpeg runs; ``retry`` after a failure, ``done`` once its
        input ended (the backup's stream ended) or it failed ATTEMPTS times."""
        code = relay.proc.poll()
        if code is None:
            return None
        said = daemon.last_line(relay.log_path)
        self.running.pop(name)
        relay.log_path.unlink(missing_ok=True)
        if code == 0:
            log.info("relay of %s ended: the backup's stream ended", name)
            return "done"
        self.failures[name] = self.failures.get(name, 0) + 1
        log.warning("relay of %s failed (%d): %s", name, code, said)
        return "done" if self.failures[name] >= ATTEMPTS else "retry"

    def _withdraw(self, name: str) -> None:
        cancel(self.root, name)
        self.failures.pop(name, None)

    def round(self) -> None:
        wanted = {r.name: r for r in pending(self.root)}
        for name in set(self.running) - set(wanted):  # the primary took the stream back
            self._stop(name, "the primary publishes again")
            self.failures.pop(name, None)
        for name, request in wanted.items():
            relay = self.running.get(name)
            if relay is not None:
                outcome = self._outcome(name, relay)
                if outcome is None:
                    continue
                if outcome == "done":
                    self._withdraw(name)
                    continue
            banned, kicked = self.moderation([request.kid]).get(request.kid, (False, None))
            if banned or (kicked is not None and kicked >= request.started):
                log.info("primary of %s ended: kicked or banned, not relayed", name)
                self._withdraw(name)
                continue
            source = self.source(request)
            if source is None:
                log.info("primary of %s ended: no backup is live to relay", name)
                self._withdraw(name)
                continue
            self._start(request, source)

    def serve(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.round()
            except Exception:  # a bug must not end relaying for good: logged, tried again
                log.exception("relay round failed")
                stop.wait(1.0)
            stop.wait(POLL)
        for name in list(self.running):
            self._stop(name, "the agent stops")


def start(
    conf: Settings,
    stop: threading.Event,
    moderation: Callable[[list[str]], dict[str, tuple[bool, float | None]]],
) -> LiveRelay | None:
    """The agent's relay thread, when this node is a live origin; ``moderation`` tells
    banned and kicked keys (a kicked primary is not relayed)."""
    if not (conf.live_sessions_dir and conf.rtmp_url and conf.trackers):
        return None
    relay = LiveRelay(conf, tracker_source(conf, requests.Session()), moderation)
    threading.Thread(target=relay.serve, args=(stop,), daemon=True, name="live-relay").start()
    return relay
