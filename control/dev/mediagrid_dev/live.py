"""Test publishers for live streaming: ffmpeg's test pattern and a tone, pushed to an RTMP
URL as an encoder would (1 s GOP at 25 fps: one keyframe per HLS fragment)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


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


def refused(url: str) -> int:
    """ffmpeg's exit code for a publish to ``url`` (an origin that refuses it ends it at once)."""
    run = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", *PUBLISH, "-t", "3", "-f", "flv", url],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return run.returncode
