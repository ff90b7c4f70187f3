"""Still pictures of a video: its poster, a thumbnail at a given time, and the sprite sheet
with the WebVTT index players use for seek-bar previews (issue 12, VOD pipeline).

ffmpeg decodes and encodes every picture; Python picks the times and sizes, and publishes
each file the way renditions are published: ffmpeg writes a hidden temporary file beside
the final name, which is fsynced and renamed into place (``ladder.place``), so nginx
never serves half a JPEG. The sprite's WebVTT is written only once its JPEG is in place:
a player that finds the index always finds the picture it points into.

Rotation is ffmpeg's: it turns the picture upright while decoding (``-autorotate``, on by
default in Debian's ffmpeg 5.1), before our scale filter, so sizes here are computed from
``Video.display_size`` and every picture comes out upright.

The sprite's geometry is read back from the JPEG ffmpeg made (ffprobe), not predicted:
the tile height is ffmpeg's rounding of the aspect ratio, and the cues must match the
pixels exactly.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from urllib.parse import quote

from . import probe
from .ladder import place, temp_beside, write_atomic
from .package import PackageFailed

POSTER_WIDTH = 1280
THUMB_WIDTH = 640
MAX_TILES = 100
TIMEOUT = 120.0


@dataclass(frozen=True)
class Sprite:
    jpg: Path
    vtt: Path
    interval: float  # seconds between tiles (longer than asked when the tiles were capped)
    cols: int
    rows: int
    tiles: int
    tile_width: int
    tile_height: int


def _video(info: probe.Info) -> probe.Video:
    if info.video is None:
        raise PackageFailed("no_video", "an audio-only file has no pictures")
    return info.video


def run_ffmpeg(argv: list[str], timeout: float, ffmpeg: str) -> None:
    """Run ffmpeg (errors only, no stdin), mapping failure to ``PackageFailed``."""
    full = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-y", *argv]
    try:
        run = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PackageFailed("timeout", f"ffmpeg took over {timeout:g} s") from None
    if run.returncode != 0:
        lines = run.stderr.strip().splitlines()
        raise PackageFailed(
            "ffmpeg_failed", (lines[-1] if lines else f"ffmpeg exited {run.returncode}")[-200:]
        )


def _frame(
    src: Path, dest: Path, t: float, info: probe.Info, max_width: int, timeout: float, ffmpeg: str
) -> Path:
    """One JPEG of the frame at ``t`` seconds, at most ``max_width`` wide, published whole."""
    video = _video(info)
    width = min(max_width, video.display_size[0])
    # The last frame starts before the end: a seek to the very end would find no frame.
    seek = max(0.0, min(t, info.duration - 2.0 / (video.fps or 25.0)))
    tmp = temp_beside(dest)
    try:
        run_ffmpeg(
            [
                "-ss", f"{seek:.3f}", "-i", os.fspath(src), "-map", "0:v:0", "-frames:v", "1",
                "-vf", f"scale={width}:-2", "-q:v", "3", "-f", "image2", "-update", "1",
                os.fspath(tmp),
            ],
            timeout,
            ffmpeg,
        )  # fmt: skip
        if tmp.stat().st_size == 0:
            raise PackageFailed("no_frame", f"no picture at {seek:.3f} s")
        return place(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def poster_time(duration: float) -> float:
    """When the poster is taken: a tenth of the way in, but for a short clip up to a second
    in (never past the middle), past the fade-in or black first frame most videos open with."""
    return max(duration * 0.1, min(1.0, duration / 2))


def poster(src: Path, dest: Path, info: probe.Info, timeout: float = TIMEOUT, ffmpeg: str = "ffmpeg") -> Path:
    """The video's poster: a JPEG at ``poster_time``, at most 1280 pixels wide."""
    return _frame(src, dest, poster_time(info.duration), info, POSTER_WIDTH, timeout, ffmpeg)


def at(
    src: Path,
    dest: Path,
    t: float,
    info: probe.Info,
    width: int = THUMB_WIDTH,
    timeout: float = TIMEOUT,
    ffmpeg: str = "ffmpeg",
) -> Path:
    """A thumbnail of the frame at ``t`` seconds (0 <= t <= duration), made once: an existing
    ``dest`` is returned as it is (the same time always gives the same picture)."""
    if not (math.isfinite(t) and 0 <= t <= info.duration):
        raise ValueError(f"time {t!r} is outside 0..{info.duration:g} s")
    if width <= 0:
        raise ValueError(f"width {width!r} is not positive")
    if dest.exists():
        return dest
    return _frame(src, dest, t, info, width, timeout, ffmpeg)


def _jpeg_size(path: Path, timeout: float) -> tuple[int, int]:
    argv = ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "--", os.fspath(path)]
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PackageFailed("timeout", "ffprobe on the sprite took too long") from None
    streams = (json.loads(run.stdout).get("streams") or []) if run.returncode == 0 else []
    if not streams:
        raise PackageFailed("no_output", "ffmpeg made no readable sprite")
    return int(streams[0]["width"]), int(streams[0]["height"])


def _vtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def sprite(
    src: Path,
    dest_jpg: Path,
    dest_vtt: Path,
    info: probe.Info,
    interval: float = 5.0,
    cols: int = 10,
    tile_width: int = 160,
    max_tiles: int = MAX_TILES,
    timeout: float = TIMEOUT,
    ffmpeg: str = "ffmpeg",
) -> Sprite:
    """A sprite sheet (one tile every ``interval`` seconds, ``cols`` across, each
    ``tile_width`` wide) and its WebVTT index. A long video gets a longer interval rather
    than more than ``max_tiles`` tiles, so the sheet stays one modest download."""
    _video(info)
    if not (math.isfinite(interval) and interval > 0) or cols <= 0 or tile_width <= 0 or max_tiles <= 0:
        raise ValueError("interval, cols, tile_width and max_tiles must be positive")
    if math.ceil(info.duration / interval) > max_tiles:
        interval = float(math.ceil(info.duration / max_tiles))
    step = Fraction(interval).limit_denominator(1000)
    tiles = max(1, math.ceil(info.duration / step))
    cols = min(cols, tiles)
    rows = math.ceil(tiles / cols)
    tmp = temp_beside(dest_jpg)
    try:
        # eof_action=pass keeps the last, partial interval's tile (ffmpeg would round it away).
        vf = (
            f"fps={step.denominator}/{step.numerator}:eof_action=pass,"
            f"scale={tile_width}:-2,tile={cols}x{rows}"
        )
        run_ffmpeg(
            [
                "-i", os.fspath(src), "-map", "0:v:0", "-vf", vf, "-frames:v", "1",
                "-q:v", "4", "-f", "image2", "-update", "1", os.fspath(tmp),
            ],
            timeout,
            ffmpeg,
        )  # fmt: skip
        width, height = _jpeg_size(tmp, timeout)
        if width != cols * tile_width or height % rows:
            raise PackageFailed("bad_output", f"a {width}x{height} sprite is not {cols}x{rows} tiles")
        place(tmp, dest_jpg)
    finally:
        tmp.unlink(missing_ok=True)
    tile_height = height // rows
    uri = quote(Path(os.path.relpath(dest_jpg, dest_vtt.parent)).as_posix())
    cues = ["WEBVTT", ""]
    for i in range(tiles):
        start, end = float(i * step), min(float((i + 1) * step), info.duration)
        x, y = (i % cols) * tile_width, (i // cols) * tile_height
        cues += [
            f"{_vtt_time(start)} --> {_vtt_time(end)}",
            f"{uri}#xywh={x},{y},{tile_width},{tile_height}",
            "",
        ]
    write_atomic(dest_vtt, "\n".join(cues).encode())
    return Sprite(dest_jpg, dest_vtt, float(step), cols, rows, tiles, tile_width, tile_height)
