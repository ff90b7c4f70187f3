"""The ABR ladder: which H.264 renditions a source gets, the ffmpeg arguments that make
each one, and the master playlist that lists them (issue 12, VOD pipeline).

A player switches renditions at segment boundaries, so every rung must cut its segments at
the same instants: each rung is encoded at one fixed output frame rate (the source's,
capped at 30) with a keyframe forced at every multiple of the segment length and no
scene-cut keyframes, so segment N of one rung starts on the same frame as segment N of
every other. A rung is never taller than the source as shown (upscaling only spends bits);
a source smaller than the whole ladder gets one rung at its own height.

Rotation: Debian's ffmpeg (5.1) turns the picture upright while decoding (``-autorotate``
is on by default, and ``package.hls`` passes no input options), before the scale filter
runs; MPEG-TS carries no display matrix. So the height compared and scaled to here is the
*display* height (``Video.display_size``), and the output is upright with no rotation
left for the player to apply.

The master playlist states what was made, not what was asked for: BANDWIDTH is the peak
segment bit rate measured from the published rendition's files, and RESOLUTION, CODECS
and FRAME-RATE come from ffprobe's reading of its first segment. A player that trusts
those numbers picks a rendition the network can actually carry.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

from . import probe
from .package import PackageFailed

MAX_FPS = 30
AUDIO_RATE = 48000
# x264 presets and their cost relative to "medium" (``probe.cost``'s preset factor); a
# preset not listed here is refused, so nothing else reaches ffmpeg's command line.
PRESET_FACTORS = {
    "ultrafast": 0.25,
    "superfast": 0.35,
    "veryfast": 0.5,
    "faster": 0.7,
    "fast": 0.85,
    "medium": 1.0,
    "slow": 1.6,
    "slower": 2.5,
    "veryslow": 4.0,
}
# Profile names as ffprobe spells them -> RFC 6381 profile_idc and constraint-flags bytes
# (as x264 sets them). The level byte comes from the stream.
_AVC_PROFILES = {"High": "6400", "Main": "4d40", "Constrained Baseline": "42c0", "Baseline": "4200"}
AAC_LC = "mp4a.40.2"
AUDIO_CODECS = {"aac": AAC_LC, "mp3": "mp4a.40.34"}  # the audio HLS renditions carry


@dataclass(frozen=True)
class Rung:
    """One rendition of the ladder: its name (``720p``, also its directory), the picture
    height, and the average bit rates it is encoded at."""

    name: str
    height: int
    video_kbps: int
    audio_kbps: int

    @property
    def maxrate_kbps(self) -> int:
        """The cap on the video's bit rate over a buffer's length (capped VBR)."""
        return math.ceil(self.video_kbps * 1.07)

    @property
    def bufsize_kbps(self) -> int:
        """The decoder buffer the cap is measured over: about 1.5 s of video."""
        return math.ceil(self.video_kbps * 1.5)


DEFAULT_LADDER: tuple[Rung, ...] = (
    Rung("1080p", 1080, 5000, 128),
    Rung("720p", 720, 2800, 128),
    Rung("480p", 480, 1400, 96),
    Rung("360p", 360, 800, 96),
)
# Rungs an app may ask for in its ladder but that no source gets by default.
ON_DEMAND_RUNGS: tuple[Rung, ...] = (
    Rung("1440p", 1440, 9000, 128),
    Rung("240p", 240, 400, 64),
)
RUNGS = {r.name: r for r in DEFAULT_LADDER + ON_DEMAND_RUNGS}


def parse_ladder(spec: str) -> tuple[Rung, ...]:
    """An app's ladder from its configuration (``"720p,480p,360p"``), tallest first."""
    names = [part.strip() for part in spec.split(",") if part.strip()]
    if not names:
        raise ValueError("the ladder names no rung")
    unknown = [n for n in names if n not in RUNGS]
    if unknown:
        raise ValueError(f"unknown rung {', '.join(unknown)} (known: {', '.join(RUNGS)})")
    return tuple(sorted({RUNGS[n] for n in names}, key=lambda r: -r.height))


def rungs_for(info: probe.Info, ladder: Sequence[Rung] = DEFAULT_LADDER) -> list[Rung]:
    """The rungs ``info``'s source gets, tallest first: none over its display height; one at
    its own (even) height if it is smaller than every rung; none for audio."""
    if info.video is None or not ladder:
        return []
    shown = info.video.display_size[1]
    chosen = sorted((r for r in ladder if r.height <= shown), key=lambda r: -r.height)
    if chosen:
        return chosen
    lowest = min(ladder, key=lambda r: r.height)
    height = max(2, shown - shown % 2)
    kbps = max(64, round(lowest.video_kbps * (height / lowest.height) ** 2))
    return [Rung(f"{height}p", height, kbps, lowest.audio_kbps)]


def frame_rate(info: probe.Info) -> Fraction:
    """The output frame rate every rung shares: the source's, or above 30 an even fraction
    of it (50 -> 25, 59.94 -> 29.97: every kept frame evenly spaced, no judder); NTSC rates
    kept exact (30000/1001)."""
    fps = info.video.fps if info.video else 0.0
    if fps <= 0:
        return Fraction(MAX_FPS)
    fps /= math.ceil(fps / MAX_FPS - 1e-6)
    for ntsc in (Fraction(24000, 1001), Fraction(30000, 1001)):
        if abs(fps - ntsc) < 0.005:
            return ntsc
    return Fraction(fps).limit_denominator(1000)


def _segment(segment_seconds: float) -> str:
    if not (math.isfinite(segment_seconds) and segment_seconds > 0):
        raise ValueError(f"segment length {segment_seconds!r} is not a positive number of seconds")
    return f"{segment_seconds:g}"


def _hls(segment_seconds: float) -> list[str]:
    return [
        "-f", "hls", "-hls_time", _segment(segment_seconds), "-hls_playlist_type", "vod",
        "-hls_flags", "independent_segments",
    ]  # fmt: skip


def _aac(kbps: int) -> list[str]:
    return ["-c:a", "aac", "-b:a", f"{kbps}k", "-ac", "2", "-ar", str(AUDIO_RATE)]


def transcode_args(
    info: probe.Info, rung: Rung, segment_seconds: float, preset: str = "veryfast"
) -> list[str]:
    """ffmpeg output arguments (for ``package.hls``) that encode ``rung`` of ``info``'s
    source as H.264/AAC HLS, keyframes aligned with every other rung of the same source."""
    if info.video is None:
        raise ValueError("an audio-only source has no video rungs")
    if preset not in PRESET_FACTORS:
        raise ValueError(f"unknown x264 preset {preset!r}")
    seg = _segment(segment_seconds)
    fps = frame_rate(info)
    gop = math.ceil(fps * Fraction(seg))  # frames per segment: never shorter than the forced ones
    # fps first (scaling fewer frames); autorotation has already turned the picture upright.
    vf = f"fps={fps.numerator}/{fps.denominator},scale=-2:{rung.height},format=yuv420p"
    args = [
        "-map", "0:v:0", "-vf", vf,
        "-c:v", "libx264", "-preset", preset, "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-b:v", f"{rung.video_kbps}k", "-maxrate", f"{rung.maxrate_kbps}k",
        "-bufsize", f"{rung.bufsize_kbps}k",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-force_key_frames", f"expr:gte(t,n_forced*{seg})", "-forced-idr", "1",
    ]  # fmt: skip
    if info.audio is not None:
        args += ["-map", "0:a:0", *_aac(rung.audio_kbps)]
    return [*args, "-map_metadata", "-1", *_hls(segment_seconds)]


def audio_args(segment_seconds: float, kbps: int = 128) -> list[str]:
    """ffmpeg output arguments for the audio-only rendition (AAC in MPEG-TS segments): the
    whole programme for a player on a poor link, or an audio source's only rendition."""
    return ["-map", "0:a:0", "-vn", *_aac(kbps), "-map_metadata", "-1", *_hls(segment_seconds)]


def cost(info: probe.Info, rung: Rung | None, preset: str = "veryfast") -> float:
    """The job's cost in CPU units (``probe.cost``): ``rung`` of the source at ``preset``,
    or (``rung`` None) its audio-only rendition, which AAC encodes at the audio rate."""
    if rung is None:
        return probe.cost(replace(info, video=None))
    if info.video is None:
        raise ValueError("an audio-only source has no video rungs")
    if preset not in PRESET_FACTORS:
        raise ValueError(f"unknown x264 preset {preset!r}")
    return probe.cost(info, PRESET_FACTORS[preset], rung.height)


@dataclass(frozen=True)
class Variant:
    """One line of the master playlist, as measured from a published rendition."""

    uri: str  # relative to the master playlist
    peak_bps: int
    average_bps: int
    codecs: str
    resolution: tuple[int, int] | None = None  # None: audio only
    frame_rate: float | None = None


def _segments(rendition_dir: Path) -> list[tuple[float, Path]]:
    """(duration, file) of each segment the rendition's playlist names, in order."""
    lines = (rendition_dir / "index.m3u8").read_text().splitlines()
    out: list[tuple[float, Path]] = []
    duration: float | None = None
    for line in (raw.strip() for raw in lines):
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:") :].split(",", 1)[0])
        elif line and not line.startswith("#"):
            if duration is None:
                raise PackageFailed("bad_playlist", f"segment {line} has no #EXTINF")
            out.append((duration, rendition_dir / line))
            duration = None
    if not out:
        raise PackageFailed("bad_playlist", f"{rendition_dir.name} names no segment")
    return out


def measure(rendition_dir: Path) -> tuple[int, int]:
    """(peak, average) bit rate of a rendition, in bits per second: the peak is the highest
    of its segments' (bits / duration), the average is all bits over all seconds."""
    segments = _segments(rendition_dir)
    rates = [seg.stat().st_size * 8 / secs for secs, seg in segments if secs > 0]
    seconds = sum(secs for secs, _ in segments)
    if not rates or seconds <= 0:
        raise PackageFailed("bad_playlist", f"{rendition_dir.name} has no segment with a duration")
    total = sum(seg.stat().st_size for _, seg in segments) * 8
    return math.ceil(max(rates)), math.ceil(total / seconds)


def _fraction(text: object) -> Fraction:
    try:
        value = Fraction(str(text or "0"))
    except (ValueError, ZeroDivisionError):
        return Fraction(0)
    return max(value, Fraction(0))


def _avc1(stream: dict[str, object]) -> str:
    prefix = _AVC_PROFILES.get(str(stream.get("profile", "")))
    level = stream.get("level")
    if prefix is None or not isinstance(level, int) or not 0 < level < 256:
        raise PackageFailed("unknown_profile", f"H.264 {stream.get('profile')} level {level}")
    return f"avc1.{prefix}{level:02x}"


def variant(rendition_dir: Path, uri: str | None = None, ffprobe: str = "ffprobe") -> Variant:
    """The master-playlist entry of the rendition published at ``rendition_dir``: its bit
    rates measured, its codecs, size and frame rate read by ffprobe from its first
    segment. ``uri`` defaults to ``<dir name>/index.m3u8``."""
    peak, average = measure(rendition_dir)
    first = _segments(rendition_dir)[0][1]
    argv = [ffprobe, "-v", "error", "-print_format", "json", "-show_streams", "--", os.fspath(first)]
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        raise PackageFailed("probe_timeout", f"ffprobe on {first.name} took too long") from None
    if run.returncode != 0:
        lines = run.stderr.strip().splitlines()
        raise PackageFailed(
            "probe_failed", (lines[-1] if lines else f"ffprobe exited {run.returncode}")[-200:]
        )
    streams = json.loads(run.stdout).get("streams") or []
    codecs: list[str] = []
    resolution: tuple[int, int] | None = None
    fps: float | None = None
    for stream in streams:
        name = stream.get("codec_name")
        if stream.get("codec_type") == "video" and name == "h264" and resolution is None:
            codecs.insert(0, _avc1(stream))
            resolution = (int(stream["width"]), int(stream["height"]))
            # MPEG-TS may not know the average ("0/0"): the stream's base rate then
            rate = _fraction(stream.get("avg_frame_rate")) or _fraction(stream.get("r_frame_rate"))
            fps = round(float(rate), 3) if rate > 0 else None
        elif stream.get("codec_type") == "audio" and name in AUDIO_CODECS and len(codecs) < 2:
            codecs.append(AUDIO_CODECS[str(name)])  # a copied source may carry MP3
    if not codecs:
        raise PackageFailed("unexpected_codec", f"{first.name} holds neither H.264 nor AAC")
    return Variant(
        uri=uri or f"{rendition_dir.name}/index.m3u8",
        peak_bps=peak,
        average_bps=average,
        codecs=",".join(codecs),
        resolution=resolution,
        frame_rate=fps,
    )


def copied_variant(info: probe.Info, rendition_dir: Path, uri: str) -> Variant | None:
    """The entry of a rendition that copies ``info``'s streams (the source's H.264 and AAC),
    from the probe's reading and the segments' sizes, with no ffprobe of its own; None if
    the reading does not name the codecs (no H.264 level, audio other than AAC): measure
    the rendition with :func:`variant` then."""
    video, audio = info.video, info.audio
    if video is None or video.codec != "h264" or video.level <= 0 or (audio and audio.codec != "aac"):
        return None
    try:
        codecs = [_avc1({"profile": video.profile, "level": video.level})]
    except PackageFailed:
        return None
    peak, average = measure(rendition_dir)
    return Variant(
        uri=uri,
        peak_bps=peak,
        average_bps=average,
        codecs=",".join([*codecs, *([AAC_LC] if audio else [])]),
        resolution=(video.width, video.height),
        frame_rate=round(video.fps, 3) if video.fps > 0 else None,
    )


def master_playlist(entries: Iterable[Variant]) -> str:
    """The HLS master playlist listing ``entries``, highest bandwidth first (the order a
    player without bandwidth estimates starts from)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    ordered = sorted(entries, key=lambda v: (-v.peak_bps, v.uri))
    if not ordered:
        raise ValueError("a master playlist needs at least one rendition")
    for v in ordered:
        if not v.uri or "\n" in v.uri or '"' in v.codecs:
            raise ValueError(f"bad variant {v!r}")
        attrs = [f"BANDWIDTH={v.peak_bps}", f"AVERAGE-BANDWIDTH={v.average_bps}"]
        if v.resolution is not None:
            attrs.append(f"RESOLUTION={v.resolution[0]}x{v.resolution[1]}")
        attrs.append(f'CODECS="{v.codecs}"')
        if v.frame_rate is not None:
            attrs.append(f"FRAME-RATE={v.frame_rate:.3f}")
        lines += ["#EXT-X-STREAM-INF:" + ",".join(attrs), v.uri]
    return "\n".join(lines) + "\n"


def place(tmp: Path, dest: Path) -> Path:
    """Publish the finished file ``tmp`` as ``dest`` (same directory): its bytes are on
    disk before the name points at them, and the rename itself is made durable."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dest)
    dir_fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return dest


def temp_beside(dest: Path, suffix: str = ".part") -> Path:
    """A new, empty temporary file in ``dest``'s directory (hidden, so nothing lists it),
    readable by all like any published file (mkstemp alone would make it 0600, and nginx
    serves as another user)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    try:
        os.fchmod(fd, 0o644)
    finally:
        os.close(fd)
    return Path(name)


def write_atomic(dest: Path, data: bytes) -> Path:
    """Write ``data`` as ``dest``: readers see the old file or the whole new one."""
    tmp = temp_beside(dest)
    try:
        tmp.write_bytes(data)
        return place(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def publish_master(hls_dir: Path, text: str, name: str = "master.m3u8") -> Path:
    """Publish the master playlist ``text`` in ``hls_dir`` (beside its renditions), whole."""
    return write_atomic(hls_dir / name, text.encode())
