"""Test media, made here with Debian's ffmpeg from lavfi sources (nothing is downloaded)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def ffmpeg(out: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args, str(out)], check=True, timeout=120)
    return out


def clip(out: Path, *codec: str, size: str = "320x240", rate: int = 25, secs: float = 1.0) -> Path:
    """A test pattern with a tone, encoded with ``codec`` (ffmpeg output options)."""
    return ffmpeg(
        out,
        "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}",
        "-f", "lavfi", "-i", "sine=frequency=440",
        "-t", str(secs), *codec,
    )  # fmt: skip


# An H.264/AAC MP4 with a keyframe every second: what HLS packaging copies as it is.
H264_AAC = ("-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac")
