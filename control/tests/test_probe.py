"""The VOD pipeline's first look at a file (issue 12): ffprobe's reading, checked against
the policy limits before anything decodes it. Every file here is made with Debian's ffmpeg
(lavfi sources, a second or two) or written byte by byte; nothing is downloaded."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import pytest

from mediagrid import probe

from . import media
from .media import ffmpeg


def clip(tmp: Path, name: str, *codec: str, size: str = "320x240", rate: int = 25, secs: float = 1.0) -> Path:
    return media.clip(tmp / name, *codec, size=size, rate=rate, secs=secs)


def refused(path: Path, **limits: float) -> probe.MediaRefused:
    with pytest.raises(probe.MediaRefused) as err:
        probe.read(path, probe.Limits(**limits))  # type: ignore[arg-type]
    return err.value


def test_h264_aac_is_copied_into_hls(tmp_path: Path) -> None:
    info = probe.read(clip(tmp_path, "a.mp4", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"))
    assert info.kind == "video" and info.copyable
    assert info.video is not None and info.audio is not None
    assert (info.video.codec, info.video.width, info.video.height, info.video.fps) == ("h264", 320, 240, 25.0)
    assert not info.video.vfr and info.video.rotation == 0
    assert info.audio.codec == "aac" and info.audio.sample_rate > 0
    assert abs(info.duration - 1.0) < 0.1
    assert info.as_dict()["kind"] == "video"


@pytest.mark.parametrize(
    ("name", "codec", "want"),
    [
        ("hevc.mp4", ("-c:v", "libx265", "-x265-params", "log-level=error", "-c:a", "aac"), "hevc"),
        ("vp9.webm", ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-c:a", "libopus"), "vp9"),
        ("mpeg2.ts", ("-c:v", "mpeg2video", "-c:a", "mp2"), "mpeg2video"),
    ],
)
def test_other_codecs_need_a_transcoded_first_rendition(
    tmp_path: Path, name: str, codec: tuple[str, ...], want: str
) -> None:
    info = probe.read(clip(tmp_path, name, *codec))
    assert info.video is not None and info.video.codec == want
    assert not info.copyable


def test_audio_only(tmp_path: Path) -> None:
    path = ffmpeg(tmp_path / "a.m4a", "-f", "lavfi", "-i", "sine=frequency=440", "-t", "2", "-c:a", "aac")
    info = probe.read(path)
    assert info.kind == "audio" and info.video is None and info.audio is not None
    assert probe.cost(info) < probe.cost(probe.read(clip(tmp_path, "v.mp4", "-c:v", "libx264", secs=2)))


def test_rotation_is_read_and_swaps_the_display_size(tmp_path: Path) -> None:
    src = clip(tmp_path, "a.mp4", "-c:v", "libx264", "-pix_fmt", "yuv420p")
    info = probe.read(
        ffmpeg(tmp_path / "r.mp4", "-i", str(src), "-c", "copy", "-metadata:s:v:0", "rotate=90")
    )
    assert info.video is not None and info.video.rotation in (90, 270)
    assert info.video.display_size == (240, 320)
    assert not info.copyable  # the picture is turned when transcoded, not copied sideways


def test_variable_frame_rate_is_flagged(tmp_path: Path) -> None:
    path = ffmpeg(
        tmp_path / "vfr.mp4",
        "-f", "lavfi", "-i", "testsrc=size=160x120:rate=30", "-t", "2",
        "-vf", "select='lt(n\\,20)+not(mod(n\\,3))'", "-fps_mode", "vfr", "-c:v", "libx264",
    )  # fmt: skip
    info = probe.read(path)
    assert info.video is not None and info.video.vfr and 0 < info.video.fps < 30


def test_random_bytes_named_mp4_are_not_media(tmp_path: Path) -> None:
    path = tmp_path / "random.mp4"
    path.write_bytes(os.urandom(64 << 10))
    err = refused(path)
    assert (err.state, err.code) == ("not_media", "not_media")


def test_zero_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    err = refused(path)
    assert (err.state, err.code) == ("not_media", "empty")


def test_truncated_mp4_without_its_index(tmp_path: Path) -> None:
    whole = clip(tmp_path, "a.mp4", "-c:v", "libx264", "-c:a", "aac", secs=2)  # moov at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    err = refused(cut)
    assert (err.state, err.code) == ("failed", "truncated")


def test_a_header_claiming_16000x16000_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.y4m"
    path.write_bytes(b"YUV4MPEG2 W16000 H16000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(4096))
    err = refused(path)
    assert (err.state, err.code) == ("failed", "too_large")


def test_ten_hours_in_a_few_kilobytes_is_refused(tmp_path: Path) -> None:
    # A one-second MP4 whose movie header (mvhd) is rewritten to claim ten hours.
    data = bytearray(clip(tmp_path, "a.mp4", "-c:v", "libx264", "-an", size="160x120").read_bytes())
    at = data.index(b"mvhd") + 4
    assert data[at] == 0  # version 0: 32-bit times
    timescale = struct.unpack(">I", data[at + 12 : at + 16])[0]
    data[at + 16 : at + 20] = struct.pack(">I", timescale * 36000)
    path = tmp_path / "long.mp4"
    path.write_bytes(bytes(data))
    assert refused(path).code == "too_long"  # over the 6 h limit
    assert refused(path, max_duration=48 * 3600).code == "implausible"  # not what a few KB hold


def test_limits_are_policy(tmp_path: Path) -> None:
    path = clip(tmp_path, "a.mp4", "-c:v", "libx264", size="640x360")
    assert refused(path, max_width=320).code == "too_large"
    assert refused(path, max_fps=24).code == "bad_frame_rate"


def test_an_unsupported_codec_is_refused() -> None:
    doc = {
        "format": {"format_name": "avi", "duration": "2.0"},
        "streams": [{"codec_type": "video", "codec_name": "cinepak", "width": 320, "height": 240}],
    }
    with pytest.raises(probe.MediaRefused) as err:
        probe.parse(doc, 100_000, probe.Limits())
    assert (err.value.state, err.value.code) == ("failed", "unsupported_codec")


def test_cost_scales_with_pixels_rate_duration_and_preset(tmp_path: Path) -> None:
    info = probe.read(clip(tmp_path, "hd.mp4", "-c:v", "libx264", size="1280x720", rate=30, secs=1))
    assert probe.cost(info) == pytest.approx(1.0, rel=0.05)  # one 720p30 second
    assert probe.cost(info, height=360) == pytest.approx(0.25, rel=0.05)
    assert probe.cost(info, preset_factor=2.0) == pytest.approx(2.0, rel=0.05)
    assert probe.cost(info, height=1080) == probe.cost(info)  # never above the source


def test_bytes_that_ffprobe_guesses_are_raw_h263_are_not_media(tmp_path: Path) -> None:
    # These seeded bytes are one of the ~1 in 300 random files ffprobe takes for a raw H.263
    # stream (probe score 25, a picture with no size): a guess, not a recognised container.
    path = tmp_path / "random.mp4"
    path.write_bytes(random.Random(1297).randbytes(64 << 10))
    err = refused(path)
    assert (err.state, err.code) == ("not_media", "not_media")
