"""Test publishers for live streaming: ffmpeg's test pattern and a tone, pushed to an RTMP
URL as an encoder would (1 s GOP at 25 fps: one keyframe per HLS fragment)."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit


def publish_args(size: str = "320x240") -> list[str]:
    """ffmpeg's input and encoding options for a test publisher of ``size`` pictures."""
    return [
        "-re", "-f", "lavfi", "-i", f"testsrc=size={size}:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "25", "-keyint_min", "25",
        "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
    ]  # fmt: skip


PUBLISH = publish_args()


@contextmanager
def publishing(url: str, seconds: int = 120, size: str = "320x240") -> Iterator[subprocess.Popen[bytes]]:
    """ffmpeg publishing to ``url`` while the block runs (a stopped one is resumed to die)."""
    proc = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", *publish_args(size), "-t", str(seconds), "-f", "flv", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(timeout=10)


class Encoder:
    """An ffmpeg publisher that can be killed and started again (a dual hot stream's primary
    encoder). ``reconnect``: one that connects again a second after its connection dropped,
    as OBS does, until it is killed (an origin that comes back gets its publisher back)."""

    def __init__(self, url: str, size: str = "320x240", seconds: int = 300, reconnect: bool = False) -> None:
        self.argv = [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            *publish_args(size),
            "-t",
            str(seconds),
            "-f",
            "flv",
            url,
        ]
        self.reconnect = reconnect
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _spawn(self) -> bool:
        with self._lock:
            if self._stop.is_set():
                return False
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return True

    def _again(self) -> None:
        while self.proc is not None and self.proc.wait() is not None and not self._stop.wait(1.0):
            if not self._spawn():
                return

    def start(self) -> None:
        self._stop.clear()
        self._spawn()
        if self.reconnect:
            self._thread = threading.Thread(target=self._again, daemon=True)
            self._thread.start()

    def kill(self) -> None:
        with self._lock:
            self._stop.set()
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


def refused(url: str) -> int:
    """ffmpeg's exit code for a publish to ``url`` (an origin that refuses it ends it at once)."""
    run = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", *PUBLISH, "-t", "3", "-f", "flv", url],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return run.returncode


def _amf(value: object) -> bytes:
    """One AMF0 value: a number, a string, None or a flat object of strings."""
    if value is None:
        return b"\x05"
    if isinstance(value, (int, float)):
        return b"\x00" + struct.pack(">d", value)
    if isinstance(value, str):
        raw = value.encode()
        return b"\x02" + struct.pack(">H", len(raw)) + raw
    assert isinstance(value, dict)
    body = b"".join(struct.pack(">H", len(k)) + k.encode() + _amf(v) for k, v in value.items())
    return b"\x03" + body + b"\x00\x00\x09"


def _command(stream_id: int, *values: object) -> bytes:
    """An AMF0 command message in one chunk (chunk stream 3; the chunk size is set first)."""
    body = b"".join(_amf(v) for v in values)
    header = bytes(3) + len(body).to_bytes(3, "big") + b"\x14" + struct.pack("<I", stream_id)
    return b"\x03" + header + body


@contextmanager
def idle_publisher(url: str) -> Iterator[socket.socket]:
    """A client that does the RTMP handshake, connects and publishes to ``url``
    (rtmp://host:port/<app>/<name>?<args>), then sends nothing: what no ffmpeg does, and
    what a stuck encoder or a port scanner that speaks RTMP looks like to the origin."""
    parts = urlsplit(url)
    app, _, name = parts.path.lstrip("/").partition("/")
    if parts.query:
        name += "?" + parts.query
    sock = socket.create_connection((parts.hostname or "", parts.port or 1935), timeout=10)
    try:
        sock.sendall(b"\x03" + bytes(8) + os.urandom(1528))  # C0, C1
        s0s1 = b""
        while len(s0s1) < 1 + 1536:
            got = sock.recv(1 + 1536 - len(s0s1))
            if not got:
                raise ConnectionError("the server closed the handshake")
            s0s1 += got
        sock.sendall(s0s1[1:])  # C2 echoes S1
        # Set Chunk Size (4096) on the protocol control chunk stream
        chunk_size = b"\x02" + bytes(3) + b"\x00\x00\x04\x01" + bytes(4) + struct.pack(">I", 4096)
        tc_url = f"rtmp://{parts.netloc}/{app}"
        connect = {"app": app, "type": "nonprivate", "flashVer": "FMLE/3.0", "tcUrl": tc_url}
        sock.sendall(
            chunk_size
            + _command(0, "connect", 1, connect)
            + _command(0, "createStream", 2, None)
            + _command(1, "publish", 3, None, name, "live")
        )
        yield sock
    finally:
        sock.close()
