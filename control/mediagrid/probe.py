"""What a stored file is as media: ffprobe's reading of it, checked against policy limits
before anything decodes it (issue 12, VOD pipeline).

Nothing here trusts a file's name or declared type: ffprobe reads the container and
stream headers, and a file is media only if ffprobe finds an audio or video stream in it.
Headers can lie (16000x16000 pixels or ten hours in a few kilobytes): the limits refuse
such a file here, from its headers alone, so no worker ever starts decoding it.

A refusal is a ``MediaRefused`` with a stable code and the state the media API shows:
``not_media`` (the file is not audio or video: any upload may be one) or ``failed`` (it
claims to be media but cannot or may not be processed).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

State = Literal["not_media", "failed"]

# Codecs the pipeline decodes (Debian's ffmpeg has each): anything else is refused with
# ``unsupported_codec`` rather than failing mid-transcode.
VIDEO_CODECS = frozenset(
    {"h264", "hevc", "vp8", "vp9", "av1", "mpeg1video", "mpeg2video", "mpeg4", "mjpeg", "prores", "theora"}
    | {"rawvideo"}
)
AUDIO_CODECS = frozenset(
    {"aac", "mp3", "mp2", "opus", "vorbis", "flac", "ac3", "eac3", "alac"}
    | {f"pcm_{f}" for f in ("s16le", "s16be", "s24le", "s32le", "f32le", "u8", "s8")}
)
# Still images ffprobe reads as one-frame "video": not media for the pipeline.
IMAGE_FORMATS = frozenset({"image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "gif", "webp_pipe", "tiff_pipe"})
# What HLS packaging copies without re-encoding (the first rendition in seconds).
COPY_VIDEO = frozenset({"h264"})
COPY_AUDIO = frozenset({"aac", "mp3"})

# ffprobe's confidence in the container it chose: AVPROBE_SCORE_EXTENSION (50) is what a
# matching file name alone earns. Most formats' own headers score far above it; a few real
# ones score below (a short MPEG-PS file: 26), so a low score alone refuses nothing.
PROBE_SCORE_SURE = 50


class MediaRefused(Exception):
    """A file the pipeline will not process: a stable ``code``, the media state it leads to,
    and a message for people."""

    def __init__(self, state: State, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.state: State = state
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Policy limits, checked on the headers before any decoding."""

    max_width: int = 7680
    max_height: int = 4320
    max_duration: float = 6 * 3600.0
    max_fps: float = 240.0
    # A file claiming more seconds than its bytes could hold at this rate is lying.
    min_bytes_per_second: float = 1000.0
    timeout: float = 30.0


@dataclass(frozen=True)
class Video:
    codec: str
    profile: str
    pix_fmt: str
    width: int
    height: int
    fps: float
    vfr: bool  # frames are not evenly spaced (average rate differs from the base rate)
    rotation: int  # degrees the player turns the picture (0, 90, 180 or 270)
    bitrate: int
    level: int = 0  # the codec's level as ffprobe reads it (H.264: 31 is 3.1); 0 unknown

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as shown, after rotation."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)


@dataclass(frozen=True)
class Audio:
    codec: str
    channels: int
    sample_rate: int
    bitrate: int


@dataclass(frozen=True)
class Info:
    container: str
    duration: float
    size: int
    bitrate: int
    video: Video | None
    audio: Audio | None

    @property
    def kind(self) -> Literal["video", "audio"]:
        return "video" if self.video else "audio"

    @property
    def copyable(self) -> bool:
        """Whether HLS packaging can copy the streams as they are (no re-encoding)."""
        video_ok = (
            self.video is not None and self.video.codec in COPY_VIDEO and self.video.pix_fmt == "yuv420p"
        )
        audio_ok = self.audio is None or self.audio.codec in COPY_AUDIO
        return video_ok and audio_ok and (self.video is None or self.video.rotation == 0)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = self.kind
        out["copyable"] = self.copyable
        return out

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Info:
        """The reading :meth:`as_dict` recorded (``media.info``)."""
        video, audio = doc.get("video"), doc.get("audio")
        return cls(
            container=str(doc["container"]),
            duration=float(doc["duration"]),
            size=int(doc["size"]),
            bitrate=int(doc["bitrate"]),
            video=Video(**video) if video else None,
            audio=Audio(**audio) if audio else None,
        )


def _rate(text: str | None) -> float:
    try:
        value = Fraction(text or "0")
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(value) if value > 0 else 0.0


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return 0.0
    return result if math.isfinite(result) and result > 0 else 0.0


def _rotation(stream: dict[str, Any]) -> int:
    """The display rotation (display matrix side data, else the old ``rotate`` tag), in
    quarter turns: 0, 90, 180 or 270."""
    raw: Any = 0
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            raw = side["rotation"]
    if not raw:
        raw = (stream.get("tags") or {}).get("rotate", 0)
    try:
        degrees = float(raw)
    except (TypeError, ValueError):
        return 0
    return round(degrees / 90.0) * 90 % 360 if math.isfinite(degrees) else 0


def parse(doc: dict[str, Any], size: int, limits: Limits) -> Info:
    """``Info`` from ffprobe's JSON (``-show_format -show_streams``) of a file of ``size``
    bytes, or ``MediaRefused``."""
    fmt = doc.get("format") or {}
    try:
        return _parse(doc, size, limits)
    except MediaRefused as err:
        if err.state == "failed" and _int(fmt.get("probe_score", PROBE_SCORE_SURE)) < PROBE_SCORE_SURE:
            # ffprobe only guessed the container (about one random file in 300 looks like
            # raw H.263 to it) and what it found makes no sense: not media, not a bad video.
            container = fmt.get("format_name", "")
            raise MediaRefused(
                "not_media", "not_media", f"not media (ffprobe guessed {container}: {err.message})"
            ) from None
        raise


def _parse(doc: dict[str, Any], size: int, limits: Limits) -> Info:
    fmt = doc.get("format") or {}
    streams = doc.get("streams") or []
    container = str(fmt.get("format_name", ""))
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if not videos and not audios:
        raise MediaRefused("not_media", "not_media", "no audio or video stream in the file")
    if container in IMAGE_FORMATS and not audios:
        raise MediaRefused("not_media", "not_media", f"a still image ({container}), not a video")

    video = None
    if videos:
        v = videos[0]
        codec = str(v.get("codec_name", ""))
        width, height = _int(v.get("width")), _int(v.get("height"))
        if width <= 0 or height <= 0:
            raise MediaRefused("failed", "bad_dimensions", "the video stream has no picture size")
        if width > limits.max_width or height > limits.max_height:
            raise MediaRefused(
                "failed",
                "too_large",
                f"{width}x{height} is over the limit of {limits.max_width}x{limits.max_height}",
            )
        if codec not in VIDEO_CODECS:
            raise MediaRefused(
                "failed", "unsupported_codec", f"video codec {codec or 'unknown'} is not supported"
            )
        base, average = _rate(v.get("r_frame_rate")), _rate(v.get("avg_frame_rate"))
        fps = average or base
        if fps <= 0 or fps > limits.max_fps:
            raise MediaRefused(
                "failed", "bad_frame_rate", f"frame rate {fps:g} is outside 0..{limits.max_fps:g}"
            )
        vfr = bool(base and average and abs(base - average) / base > 0.01)
        video = Video(
            codec=codec,
            profile=str(v.get("profile", "")),
            pix_fmt=str(v.get("pix_fmt", "")),
            width=width,
            height=height,
            fps=round(fps, 3),
            vfr=vfr,
            rotation=_rotation(v),
            bitrate=_int(v.get("bit_rate")),
            level=max(0, _int(v.get("level"))),
        )
    audio = None
    if audios:
        a = audios[0]
        codec = str(a.get("codec_name", ""))
        if codec not in AUDIO_CODECS:
            if video is None:
                raise MediaRefused(
                    "failed", "unsupported_codec", f"audio codec {codec or 'unknown'} is not supported"
                )
        else:
            audio = Audio(
                codec=codec,
                channels=_int(a.get("channels")),
                sample_rate=_int(a.get("sample_rate")),
                bitrate=_int(a.get("bit_rate")),
            )
    durations = [_float(fmt.get("duration"))] + [_float(s.get("duration")) for s in videos[:1] + audios[:1]]
    duration = max(durations)
    if duration <= 0:
        raise MediaRefused("failed", "no_duration", "the file does not say how long it is")
    if duration > limits.max_duration:
        raise MediaRefused(
            "failed", "too_long", f"{duration:.0f} s is over the limit of {limits.max_duration:.0f} s"
        )
    if size < duration * limits.min_bytes_per_second:
        raise MediaRefused(
            "failed", "implausible", f"{size} bytes cannot hold the {duration:.0f} s the headers claim"
        )
    return Info(
        container=container,
        duration=round(duration, 3),
        size=size,
        bitrate=_int(fmt.get("bit_rate")),
        video=video,
        audio=audio,
    )


# ISO base media (MP4, MOV) files open with one of these boxes: with one, a missing index
# ("moov atom not found") is a cut-short file; without, ffprobe only guessed from the name.
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


def _iso_media(path: str | Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8)[4:8] in _ISO_BOXES


def read(path: str | Path, limits: Limits | None = None, ffprobe: str = "ffprobe") -> Info:
    """Probe the file at ``path`` (headers only, bounded by ``limits.timeout``)."""
    limits = limits or Limits()
    size = os.stat(path).st_size
    if size == 0:
        raise MediaRefused("not_media", "empty", "the file is empty")
    argv = [
        ffprobe,
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        "--",
        os.fspath(path),
    ]
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=limits.timeout, check=False)
    except subprocess.TimeoutExpired:
        raise MediaRefused("failed", "probe_timeout", f"ffprobe took over {limits.timeout:g} s") from None
    if run.returncode != 0:
        err = run.stderr.strip().splitlines()
        last = err[-1] if err else f"ffprobe exited {run.returncode}"
        if "moov atom not found" in run.stderr and _iso_media(path):
            raise MediaRefused("failed", "truncated", "the file is cut short (its index is missing)")
        if "Invalid data found when processing input" in run.stderr:
            raise MediaRefused("not_media", "not_media", "not an audio or video file")
        raise MediaRefused("failed", "probe_failed", last[-200:])
    try:
        doc = json.loads(run.stdout)
    except json.JSONDecodeError:
        raise MediaRefused("failed", "probe_failed", "ffprobe's answer is not JSON") from None
    return parse(doc, size, limits)


def cost(info: Info, preset_factor: float = 1.0, height: int | None = None) -> float:
    """A job's cost in CPU units: pixels x frames per second x seconds x preset, in units of
    one 720p30 second (1280 x 720 x 30 pixels). ``height`` is the rendition's, if smaller
    than the source; audio-only files cost by duration alone, at a small rate."""
    if info.video is None:
        return round(info.duration * 0.01 * preset_factor, 3)
    width, src_height = info.video.display_size
    out_height = min(height or src_height, src_height)
    out_width = width * out_height / src_height
    return round(
        out_width * out_height * info.video.fps * info.duration * preset_factor / (1280 * 720 * 30), 3
    )
