"""HLS packaging by ffmpeg, published whole or not at all (issue 12). Clips are made here
with Debian's ffmpeg (lavfi sources, a few seconds)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mediagrid import package, probe

from .media import H264_AAC, clip


@pytest.fixture(scope="module")
def movie(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clip(tmp_path_factory.mktemp("media") / "movie.mp4", *H264_AAC, secs=6)


def test_copy_packaging_publishes_a_playable_rendition(movie: Path, tmp_path: Path) -> None:
    seen: list[float] = []

    def progress(done: float) -> bool:
        seen.append(done)
        return True

    dest = tmp_path / "0000000000000001.hls" / "source"
    out = package.hls(movie, dest, package.copy_args(2), 6.0, progress)
    assert out.path == dest and out.segments >= 3
    assert sorted(p.name for p in dest.parent.iterdir()) == ["source"]  # no temporary left
    playlist = (dest / "index.m3u8").read_text()
    assert "#EXT-X-ENDLIST" in playlist and "#EXT-X-PLAYLIST-TYPE:VOD" in playlist
    # ffprobe plays the HLS back: both streams, the whole length, the codecs copied
    info = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
             str(dest / "index.m3u8")],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert {s["codec_name"] for s in info["streams"]} == {"h264", "aac"}
    assert abs(float(info["format"]["duration"]) - 6.0) < 0.5
    assert seen and max(seen) <= 1.0


def test_a_failed_run_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "garbage.mp4"
    src.write_bytes(b"\x00" * 4096)
    dest = tmp_path / "x.hls" / "source"
    with pytest.raises(package.PackageFailed) as err:
        package.hls(src, dest, package.copy_args(2), 6.0)
    assert err.value.code == "ffmpeg_failed"
    assert list(dest.parent.iterdir()) == []


def test_a_lost_job_stops_ffmpeg_and_leaves_nothing(movie: Path, tmp_path: Path) -> None:
    dest = tmp_path / "y.hls" / "720p"
    args = ["-map", "0:v:0", "-c:v", "libx264", "-preset", "veryslow", "-f", "hls", "-hls_time", "2"]
    with pytest.raises(package.PackageFailed) as err:
        package.hls(movie, dest, args, 6.0, lambda p: False)  # the lease is lost at once
    assert err.value.code == "stopped"
    assert list(dest.parent.iterdir()) == []


def test_a_published_rendition_is_never_overwritten(movie: Path, tmp_path: Path) -> None:
    dest = tmp_path / "z.hls" / "source"
    package.hls(movie, dest, package.copy_args(2), 6.0)
    before = (dest / "index.m3u8").read_bytes()
    with pytest.raises(package.PackageFailed) as err:
        package.hls(movie, dest, package.copy_args(4), 6.0)
    assert err.value.code == "exists" and (dest / "index.m3u8").read_bytes() == before


def test_probe_says_copy_for_this_source(movie: Path) -> None:
    assert probe.read(movie).copyable
