"""Posters, thumbnails and sprite sheets (issue 12), made by Debian's ffmpeg from clips
made here (lavfi sources, a few seconds, small sizes) and read back with ffprobe."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import pytest

from mediagrid import package, probe, thumbs

from .media import H264_AAC, clip, ffmpeg


def jpeg_size(path: Path) -> tuple[int, int]:
    """A JPEG's picture size, as ffprobe reads it (and that it is a JPEG at all)."""
    assert path.read_bytes()[:3] == b"\xff\xd8\xff"
    run = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", str(path)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    (stream,) = json.loads(run.stdout)["streams"]
    assert stream["codec_name"] == "mjpeg"
    return int(stream["width"]), int(stream["height"])


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("thumbs")


@pytest.fixture(scope="module")
def movie(media_dir: Path) -> Path:
    return clip(media_dir / "movie.mp4", *H264_AAC, size="640x360", secs=3)


@pytest.fixture(scope="module")
def wide(media_dir: Path) -> Path:
    return clip(media_dir / "wide.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                size="1600x900", rate=5, secs=1)  # fmt: skip


@pytest.fixture(scope="module")
def rotated(media_dir: Path) -> Path:
    """Stored 320x240, shown 240x320: the ``rotate`` tag becomes a display matrix when the
    stream is copied (ffmpeg 5.1 drops it when encoding)."""
    plain = clip(media_dir / "plain.mp4", *H264_AAC, size="320x240", secs=2)
    return ffmpeg(media_dir / "rotated.mp4", "-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90")


def test_the_poster_is_a_jpeg_of_the_source_size(movie: Path, tmp_path: Path) -> None:
    dest = tmp_path / "poster.jpg"
    assert thumbs.poster(movie, dest, probe.read(movie)) == dest
    assert jpeg_size(dest) == (640, 360)
    assert dest.stat().st_mode & 0o044 == 0o044 and leftovers(tmp_path) == []


def test_a_wide_poster_is_scaled_to_1280(wide: Path, tmp_path: Path) -> None:
    dest = thumbs.poster(wide, tmp_path / "poster.jpg", probe.read(wide))
    assert jpeg_size(dest) == (1280, 720)


def test_the_poster_time() -> None:
    assert thumbs.poster_time(3.0) == 1.0  # a short clip: a second in
    assert thumbs.poster_time(1.0) == 0.5  # never past the middle
    assert thumbs.poster_time(600.0) == 60.0  # a tenth of the way


def test_a_rotated_source_gives_an_upright_poster(rotated: Path, tmp_path: Path) -> None:
    src = probe.read(rotated)
    assert src.video is not None and src.video.rotation == 90
    assert jpeg_size(thumbs.poster(rotated, tmp_path / "poster.jpg", src)) == (240, 320)


def test_a_thumbnail_at_a_time_is_made_once(movie: Path, tmp_path: Path) -> None:
    src = probe.read(movie)
    dest = tmp_path / "t1.jpg"
    assert thumbs.at(movie, dest, 1.0, src, width=160) == dest
    assert jpeg_size(dest) == (160, 90)
    made = dest.stat()
    assert thumbs.at(movie, dest, 1.0, src, width=160) == dest
    assert (dest.stat().st_ino, dest.stat().st_mtime_ns) == (made.st_ino, made.st_mtime_ns)
    # the very end still has a picture (the last frame's)
    assert jpeg_size(thumbs.at(movie, tmp_path / "end.jpg", src.duration, src)) == (640, 360)


def test_a_time_outside_the_video_is_refused(movie: Path, tmp_path: Path) -> None:
    src = probe.read(movie)
    for t in (src.duration + 0.5, -0.1, math.nan, math.inf):
        with pytest.raises(ValueError):
            thumbs.at(movie, tmp_path / "x.jpg", t, src)
    assert list(tmp_path.iterdir()) == []


def test_the_sprite_and_its_cues_match_the_jpeg(movie: Path, tmp_path: Path) -> None:
    src = probe.read(movie)
    jpg, vtt = tmp_path / "sprite.jpg", tmp_path / "sprite.vtt"
    out = thumbs.sprite(movie, jpg, vtt, src, interval=0.5, cols=4, tile_width=80)
    assert (out.tiles, out.cols, out.rows) == (6, 4, 2)
    width, height = jpeg_size(jpg)
    assert (width, height) == (4 * 80, 2 * out.tile_height)
    assert out.tile_height in (44, 46)  # 80 x 9/16 = 45, made even by ffmpeg
    text = vtt.read_text()
    assert text.startswith("WEBVTT\n\n")
    cues = re.findall(r"(\S+) --> (\S+)\n(\S+)#xywh=(\d+),(\d+),(\d+),(\d+)\n", text)
    assert len(cues) == out.tiles
    assert cues[0][:2] == ("00:00:00.000", "00:00:00.500")
    assert cues[-1][:2] == ("00:00:02.500", "00:00:03.000")
    for i, (_, _, uri, *xywh) in enumerate(cues):
        x, y, w, h = map(int, xywh)
        assert uri == "sprite.jpg"
        assert (x, y, w, h) == ((i % 4) * 80, (i // 4) * out.tile_height, 80, out.tile_height)
        assert x + w <= width and y + h <= height
    assert leftovers(tmp_path) == []


def test_a_long_interval_count_is_capped(movie: Path, tmp_path: Path) -> None:
    src = probe.read(movie)
    out = thumbs.sprite(
        movie, tmp_path / "img" / "s.jpg", tmp_path / "s.vtt", src, interval=0.25, cols=10, tile_width=64,
        max_tiles=4,
    )  # fmt: skip
    assert out.tiles <= 4 and out.interval == 1.0 and (out.cols, out.rows) == (3, 1)
    assert jpeg_size(out.jpg) == (3 * 64, out.tile_height)
    assert "img/s.jpg#xywh=128,0,64," in out.vtt.read_text()  # the URI relative to the VTT


def test_failures_leave_nothing(tmp_path: Path) -> None:
    garbage = tmp_path / "in" / "garbage.mp4"
    garbage.parent.mkdir()
    garbage.write_bytes(b"\x00" * 4096)
    fake = probe.Info("mov,mp4,m4a,3gp,3g2,mj2", 3.0, 4096, 0,
                      probe.Video("h264", "High", "yuv420p", 320, 240, 25.0, False, 0, 0), None)  # fmt: skip
    out = tmp_path / "out"
    with pytest.raises(package.PackageFailed) as err:
        thumbs.poster(garbage, out / "poster.jpg", fake)
    assert err.value.code == "ffmpeg_failed"
    with pytest.raises(package.PackageFailed) as err:
        thumbs.sprite(garbage, out / "s.jpg", out / "s.vtt", fake)
    assert err.value.code == "ffmpeg_failed"
    assert list(out.iterdir()) == []
    song = probe.Info("mp3", 3.0, 48_000, 128_000, None, probe.Audio("mp3", 2, 44100, 128_000))
    with pytest.raises(package.PackageFailed) as err:
        thumbs.poster(garbage, out / "poster.jpg", song)
    assert err.value.code == "no_video"
