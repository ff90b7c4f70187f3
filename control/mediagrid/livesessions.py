"""An origin's live sessions: what its nginx-rtmp carries, as the shim's hooks admitted it.

nginx-rtmp publishes and plays; the shim's ``on_publish`` hook decides (``livehooks``) and
writes one small file per admitted publisher here, named by nginx-rtmp's client id;
``on_publish_done`` removes it. The files hold what nginx-rtmp does not keep: the stream's
role (primary or backup), the key's id, when it started. The node's agent reads them with
nginx-rtmp's own statistics (``rtmp_stat``) each heartbeat: a session is reported while
nginx-rtmp still has its client publishing, with the ingest figures nginx-rtmp measured.
A file whose client nginx-rtmp no longer has (nginx restarted, a lost hook) is removed.
"""

from __future__ import annotations

import json
import os
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

LOOPBACK = ("127.0.0.1", "::1")  # the node itself: its nginx-rtmp hooks, its own ffmpeg

# nginx-rtmp's client ids are decimal counters
_CLIENT_RE = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True)
class Session:
    app: str
    stream: str
    role: str
    kid: str
    client: str
    started: float
    relay: bool = False  # fed from the backup origin (``liverelay``), not by an encoder

    @property
    def name(self) -> str:
        return f"{self.app}.{self.stream}"


@dataclass(frozen=True)
class Stat:
    """nginx-rtmp's figures for one published stream."""

    name: str
    client: str
    bw_in: int
    fps: float
    width: int
    height: int
    # the addresses of its RTMP players from other hosts: the edges' pulls, the other
    # origins' relays (ffmpeg on loopback is this node's own: snapshots, transcodes)
    players: tuple[str, ...] = ()
    # what nginx-rtmp's codec module has seen: no codec at all is a publisher that sent
    # no media; a video codec with no video bandwidth (its last full 10 s window) is a
    # picture that stopped (a 0 fps stream); age is the stream's, in seconds
    video: bool = False
    audio: bool = False
    bw_video: int = 0
    age: float = 0.0


# A publisher that has sent no media this long after its stream began is dropped (before
# nginx-rtmp's own drop_idle_publisher, 5 s, so that the drop has a code); a picture whose
# video bandwidth is 0 once nginx-rtmp has measured a full 10 s window is dropped too.
NO_MEDIA_AFTER = 3.0
NO_VIDEO_AFTER = 13.0


def fault(stat: Stat) -> tuple[str, str] | None:
    """Why nginx-rtmp's figures say this publisher is no live stream (its code and the
    reason), or None."""
    if not (stat.video or stat.audio) and stat.age >= NO_MEDIA_AFTER:
        return "no_media", f"no audio or video {stat.age:.0f} s after the publish"
    if stat.video and stat.bw_video == 0 and stat.age >= NO_VIDEO_AFTER:
        return "no_video", "it announced a picture and sent no video for 10 s (0 fps)"
    return None


def valid_client(client: str) -> bool:
    return _CLIENT_RE.fullmatch(client) is not None


def _path(root: Path, client: str) -> Path:
    if not valid_client(client):
        raise ValueError("not an nginx-rtmp client id")
    return root / f"{client}.json"


def save(root: Path, session: Session) -> None:
    """Record an admitted publisher (written whole, then renamed into place)."""
    root.mkdir(mode=0o750, parents=True, exist_ok=True)
    put_json(_path(root, session.client), asdict(session))


def put_json(final: Path, data: dict[str, object]) -> None:
    """``data`` as JSON at ``final``, written whole then renamed into place (a reader sees
    the old file or the new one); the hooks' and the agent's small state files."""
    tmp = final.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, final)


def drop(root: Path, client: str) -> Session | None:
    """Forget the publisher ``client``; its session, if there was one."""
    if not valid_client(client):
        return None
    path = _path(root, client)
    session = _read(path)
    path.unlink(missing_ok=True)
    return session


def control_url(stat_url: str, action: str) -> str:
    """nginx-rtmp's control interface, next to its statistics (``/control/<action>``)."""
    return stat_url.rsplit("/", 1)[0] + "/control/" + action


def drop_publisher(http: requests.Session, stat_url: str, session: Session) -> None:
    """Disconnect ``session``'s publisher through nginx-rtmp's control interface (loopback);
    nginx-rtmp then calls ``on_publish_done``. Raises requests.RequestException."""
    params = {"app": "live", "name": session.name, "clientid": session.client}
    http.get(control_url(stat_url, "drop/publisher"), params=params, timeout=1).raise_for_status()


def wait_gone(http: requests.Session, stat_url: str, client: str, timeout: float = 1.0) -> bool:
    """Wait until nginx-rtmp's statistics no longer list ``client`` publishing: a dropped
    publisher is closed at the end of nginx's event cycle, after the control request was
    answered, and its HLS writes its last fragment then. Whether it went within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            resp = http.get(stat_url, timeout=1)
            resp.raise_for_status()
            if client not in parse_stat(resp.content):
                return True
        except (requests.RequestException, ValueError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _read(path: Path) -> Session | None:
    try:
        return Session(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def load(root: Path) -> list[Session]:
    """Every session recorded, oldest first."""
    if not root.is_dir():
        return []
    found = [s for p in root.glob("*.json") if (s := _read(p)) is not None]
    return sorted(found, key=lambda s: s.started)


def holder(root: Path, app: str, stream: str, role: str) -> Session | None:
    """The session publishing ``app``/``stream`` as ``role`` here, if any."""
    for s in load(root):
        if (s.app, s.stream, s.role) == (app, stream, role):
            return s
    return None


def _num(node: ET.Element | None, tag: str) -> float:
    found = node.find(tag) if node is not None else None
    try:
        return float(found.text or 0) if found is not None else 0.0
    except ValueError:
        return 0.0


def _streams(xml: str | bytes, application: str) -> Iterator[ET.Element]:
    """The ``<stream>`` elements of ``application`` in nginx-rtmp's ``rtmp_stat`` XML."""
    for app in ET.fromstring(xml).iter("application"):
        if (app.findtext("name") or "") == application:
            yield from app.iter("stream")


def parse_stat(xml: str | bytes, application: str = "live") -> dict[str, Stat]:
    """The publishers of ``application`` in nginx-rtmp's ``rtmp_stat`` XML, by client id."""
    found: dict[str, Stat] = {}
    for stream in _streams(xml, application):
        clients = stream.findall("client")
        publisher = next((c for c in clients if c.find("publishing") is not None), None)
        if publisher is None:
            continue
        client = publisher.findtext("id") or ""
        video = stream.find("meta/video")
        # nginx-rtmp measures bw_in over 10 s intervals (0 until the first): the average
        # since the start stands in before that
        millis = _num(stream, "time")
        average = _num(stream, "bytes_in") * 8000 / millis if millis > 0 else 0.0
        found[client] = Stat(
            name=stream.findtext("name") or "",
            client=client,
            bw_in=int(_num(stream, "bw_in") or average),
            fps=round(_num(video, "frame_rate"), 2),
            width=int(_num(video, "width")),
            height=int(_num(video, "height")),
            players=tuple(
                address
                for c in clients
                if c is not publisher and (address := c.findtext("address") or "") not in LOOPBACK
            ),
            video=bool(stream.findtext("meta/video/codec")),
            audio=bool(stream.findtext("meta/audio/codec")),
            bw_video=int(_num(stream, "bw_video")),
            age=millis / 1000,
        )
    return found


def players(xml: str | bytes, application: str = "live") -> dict[str, int]:
    """An edge's RTMP players in nginx-rtmp's ``rtmp_stat`` XML, by stream name: the
    clients of ``application`` that do not publish (the pull from the origin is the one
    that publishes there)."""
    found: dict[str, int] = {}
    for stream in _streams(xml, application):
        count = sum(c.find("publishing") is None for c in stream.findall("client"))
        if count:
            name = stream.findtext("name") or ""
            found[name] = found.get(name, 0) + count
    return found


def live(
    root: Path, stats: dict[str, Stat], grace: float = 5.0, now: float | None = None
) -> list[tuple[Session, Stat]]:
    """The sessions nginx-rtmp still carries, with its figures. A file nginx-rtmp has no
    publisher for is removed once older than ``grace`` seconds (a hook is answered before
    nginx-rtmp lists the client)."""
    now = time.time() if now is None else now
    out = []
    for session in load(root):
        stat = stats.get(session.client)
        if stat is not None and stat.name == session.name:
            out.append((session, stat))
        elif now - session.started > grace:
            drop(root, session.client)
    return out
