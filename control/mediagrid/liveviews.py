"""Who watches a live stream, heard from nginx's access log (issue 13, flows 2 and 7).

An origin's agent listens on one UDP port (LIVE_VIEWS_PORT) for nginx's syslog lines:

- its own nginx, on loopback, sends ``<name>`` for each fetch of a live rendition's
  playlist. The edges' caches make that at most one fetch per edge and playlist lifetime
  while anybody watches, which is what ``livetranscode`` needs to know.
- each edge's nginx sends ``<name> <session>`` for each viewer's fetch of a playlist of a
  stream of this origin, cache hits included. The session is the ``v=`` the tracker put in
  the viewer's HLS URL (a fresh one for every play), and the player keeps it on every
  playlist reload. The distinct sessions seen within :data:`WINDOW` seconds are the
  stream's HLS viewers, renditions included.

Only lines from loopback and from LIVE_VIEWS_FROM (the edges' addresses) are taken. The
port listens on every address only when edges are named, on loopback otherwise.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time

from .config import Settings
from .streamkeys import split_rtmp_name

log = logging.getLogger("mediagrid.liveviews")

TAG = "mgviews"  # the syslog tag both nginx sites give the lines
WINDOW = 5.0  # seconds a viewer's last playlist fetch counts (players reload every 1 s)
SEEN_KEPT = 600.0  # seconds a playlist name's last fetch is kept (for ``livetranscode``)
MAX_SESSIONS = 100_000  # sessions held at most; more are not counted (a flood, not viewers)
_RUNG_RE = re.compile(r"[0-9]{3,4}p")
_SESSION_RE = re.compile(r"[A-Za-z0-9_-]{8,32}")


def _stream_of(name: str) -> str | None:
    """``app.stream`` of a playlist name (a stream's, or a rendition's ``app.stream.480p``)."""
    stream, _, rung = name.rpartition(".") if name.count(".") == 2 else (name, "", "")
    if (rung and _RUNG_RE.fullmatch(rung) is None) or split_rtmp_name(stream) is None:
        return None
    return stream


class Views:
    """The last fetch of each playlist name, and each stream's viewer sessions."""

    def __init__(self, port: int, sources: list[str] | None = None) -> None:
        self.sources = {"127.0.0.1", *(sources or [])}
        self._seen: dict[str, float] = {}
        self._sessions: dict[str, dict[str, float]] = {}  # stream -> session -> monotonic
        self._held = 0
        self._lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0" if sources else "127.0.0.1", port))
        self.sock.settimeout(1.0)

    def note(self, datagram: bytes) -> str | None:
        """Record one line (``<pri>... mgviews: <name>[ <session>]``); the name, or None."""
        text = datagram.decode("ascii", "replace")
        _, tag, rest = text.partition(f"{TAG}: ")
        name, _, session = rest.strip().partition(" ")
        stream = _stream_of(name)
        if not tag or stream is None or (session and not _SESSION_RE.fullmatch(session)):
            return None
        now = time.monotonic()
        with self._lock:
            self._seen[name] = now
            if session:
                sessions = self._sessions.setdefault(stream, {})
                if session not in sessions:
                    if self._held >= MAX_SESSIONS:
                        return name
                    self._held += 1
                sessions[session] = now
        return name

    def serve(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                datagram, (address, _) = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError as err:
                log.warning("views socket: %s", err)
                stop.wait(1.0)
                continue
            if address in self.sources:
                self.note(datagram)

    def last(self, name: str) -> float | None:
        """When a playlist of that name (a stream's or a rendition's) was last fetched."""
        with self._lock:
            return self._seen.get(name)

    def forget(self, name: str) -> None:
        with self._lock:
            self._seen.pop(name, None)

    def viewers(self, stream: str) -> int:
        """The HLS viewers of ``app.stream`` (of its renditions too) now; sessions older
        than :data:`WINDOW` are let go."""
        cutoff = time.monotonic() - WINDOW
        with self._lock:
            sessions = self._sessions.get(stream, {})
            for session in [s for s, at in sessions.items() if at < cutoff]:
                del sessions[session]
                self._held -= 1
            if not sessions:
                self._sessions.pop(stream, None)
            return len(sessions)

    def sweep(self) -> None:
        """Let go of the sessions of streams nobody asks about (ended ones), and of names
        not fetched for :data:`SEEN_KEPT` seconds."""
        cutoff = time.monotonic() - SEEN_KEPT
        with self._lock:
            streams = list(self._sessions)
            for name in [n for n, at in self._seen.items() if at < cutoff]:
                del self._seen[name]
        for stream in streams:
            self.viewers(stream)


def start(conf: Settings, stop: threading.Event) -> Views | None:
    """The agent's views listener when LIVE_VIEWS_PORT is set (None otherwise, or when the
    port cannot be had: logged)."""
    if not conf.live_views_port:
        return None
    try:
        views = Views(conf.live_views_port, conf.live_views_from)
    except OSError as err:
        log.error("no live views: no UDP port %d: %s", conf.live_views_port, err)
        return None
    threading.Thread(target=views.serve, args=(stop,), daemon=True, name="live-views").start()
    return views
