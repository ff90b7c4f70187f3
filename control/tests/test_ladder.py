"""The ABR ladder (issue 12): which rungs a source gets, renditions encoded by Debian's
ffmpeg with keyframes aligned across rungs, rotation turned upright, and a master playlist
ffprobe can play. Clips are made here (lavfi sources, a few seconds, small sizes)."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mediagrid import ladder, package, probe

from .media import H264_AAC, clip, ffmpeg

SEG = 1.0


def info(width: int, height: int, rotation: int = 0, fps: float = 25.0, secs: float = 10.0) -> probe.Info:
    video = probe.Video("h264", "High", "yuv420p", width, height, fps, False, rotation, 1_000_000)
    audio = probe.Audio("aac", 2, 48000, 128_000)
    return probe.Info("mov,mp4,m4a,3gp,3g2,mj2", secs, 2_000_000, 1_200_000, video, audio)


def names(rungs: list[ladder.Rung]) -> list[str]:
    return [r.name for r in rungs]


def ffprobe(path: Path, *args: str) -> dict[str, Any]:
    run = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", *args, str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    doc: dict[str, Any] = json.loads(run.stdout)
    return doc


def keyframes(playlist: Path) -> list[float]:
    packets = ffprobe(
        playlist, "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags", "-show_packets"
    )["packets"]
    return [float(p["pts_time"]) for p in packets if "K" in p["flags"]]


def extinf(playlist: Path) -> list[str]:
    return [line for line in playlist.read_text().splitlines() if line.startswith("#EXTINF")]


# --- rung choice (no ffmpeg) ---


def test_a_720p_source_gets_the_rungs_up_to_its_height() -> None:
    assert names(ladder.rungs_for(info(1280, 720))) == ["720p", "480p", "360p"]
    assert names(ladder.rungs_for(info(1920, 1080))) == ["1080p", "720p", "480p", "360p"]
    assert names(ladder.rungs_for(info(1280, 718))) == ["480p", "360p"]  # never upscaled


def test_a_4_3_source_is_ranked_by_its_height() -> None:
    assert names(ladder.rungs_for(info(640, 480))) == ["480p", "360p"]
    assert names(ladder.rungs_for(info(1440, 1080))) == ["1080p", "720p", "480p", "360p"]


def test_portrait_and_rotated_sources_use_the_display_height() -> None:
    portrait = ladder.rungs_for(info(720, 1280))
    assert names(portrait) == ["1080p", "720p", "480p", "360p"]
    # stored landscape, shown portrait: the same rungs as the portrait file
    assert ladder.rungs_for(info(1280, 720, rotation=90)) == portrait
    assert ladder.rungs_for(info(1280, 720, rotation=270)) == portrait
    # stored portrait, turned to landscape for display
    assert names(ladder.rungs_for(info(720, 1280, rotation=90))) == ["720p", "480p", "360p"]
    assert names(ladder.rungs_for(info(1280, 720, rotation=180))) == ["720p", "480p", "360p"]


def test_a_tiny_source_gets_one_rung_at_its_own_even_height() -> None:
    (rung,) = ladder.rungs_for(info(160, 120))
    assert (rung.name, rung.height) == ("120p", 120)
    assert 64 <= rung.video_kbps < ladder.RUNGS["360p"].video_kbps
    (odd,) = ladder.rungs_for(info(175, 131))
    assert (odd.name, odd.height) == ("130p", 130)
    # smaller than the app's ladder (but not the default one)
    assert names(ladder.rungs_for(info(640, 360), ladder.parse_ladder("720p,480p"))) == ["360p"]


def test_an_audio_source_has_no_video_rungs() -> None:
    audio_only = probe.Info("mp3", 60.0, 960_000, 128_000, None, probe.Audio("mp3", 2, 44100, 128_000))
    assert ladder.rungs_for(audio_only) == []
    with pytest.raises(ValueError):
        ladder.transcode_args(audio_only, ladder.RUNGS["360p"], SEG)
    assert ladder.cost(audio_only, None) == probe.cost(audio_only)


def test_an_app_ladder_is_parsed_and_checked() -> None:
    assert names(list(ladder.parse_ladder("360p, 720p,480p"))) == ["720p", "480p", "360p"]
    assert names(list(ladder.parse_ladder("480p,240p,480p"))) == ["480p", "240p"]
    for bad in ("", " , ", "720p,4k", "720"):
        with pytest.raises(ValueError):
            ladder.parse_ladder(bad)
    rung = ladder.RUNGS["720p"]
    assert rung.video_kbps < rung.maxrate_kbps < rung.bufsize_kbps


def test_arguments_fix_the_frame_rate_and_the_keyframes() -> None:
    fast = ladder.transcode_args(info(1920, 1080, fps=60), ladder.RUNGS["720p"], 2)
    assert "fps=30/1,scale=-2:720,format=yuv420p" in fast
    assert fast[fast.index("-g") + 1] == fast[fast.index("-keyint_min") + 1] == "60"
    assert fast[fast.index("-force_key_frames") + 1] == "expr:gte(t,n_forced*2)"
    assert fast[fast.index("-sc_threshold") + 1] == "0"
    assert fast[fast.index("-preset") + 1] == "veryfast"
    ntsc = ladder.transcode_args(info(1280, 720, fps=29.97), ladder.RUNGS["480p"], 4, preset="slow")
    assert "fps=30000/1001,scale=-2:480,format=yuv420p" in ntsc
    assert ntsc[ntsc.index("-g") + 1] == "120"  # ceil(4 x 29.97): no forced keyframe is further apart
    for source, out in (
        (50, "25/1"),
        (59.94, "30000/1001"),
        (120, "30/1"),
        (24, "24/1"),
        (23.976, "24000/1001"),
    ):
        assert f"fps={out},scale=-2:480,format=yuv420p" in ladder.transcode_args(
            info(1280, 720, fps=source), ladder.RUNGS["480p"], 4
        )
    with pytest.raises(ValueError):
        ladder.transcode_args(info(1280, 720), ladder.RUNGS["480p"], 4, preset="-vf")
    with pytest.raises(ValueError):
        ladder.transcode_args(info(1280, 720), ladder.RUNGS["480p"], 0)


def test_cost_follows_the_rung_and_the_preset() -> None:
    src = info(1920, 1080, secs=60)
    hd, sd = ladder.RUNGS["1080p"], ladder.RUNGS["360p"]
    assert ladder.cost(src, sd) < ladder.cost(src, hd)
    assert (
        ladder.cost(src, hd, "veryfast") < ladder.cost(src, hd, "medium") < ladder.cost(src, hd, "veryslow")
    )
    assert ladder.cost(src, hd, "medium") == probe.cost(src, 1.0, 1080)
    assert 0 < ladder.cost(src, None) < ladder.cost(src, sd)  # the audio rendition
    with pytest.raises(ValueError):
        ladder.cost(src, hd, "placebo2")


def test_measure_takes_the_peak_segment_and_the_average(tmp_path: Path) -> None:
    (tmp_path / "a.ts").write_bytes(b"x" * 1000)  # 8000 bits in 2 s: 4000 b/s
    (tmp_path / "b.ts").write_bytes(b"x" * 1500)  # 12000 bits in 1 s: the peak
    (tmp_path / "index.m3u8").write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000000,\na.ts\n#EXTINF:1.0,\nb.ts\n#EXT-X-ENDLIST\n"
    )
    assert ladder.measure(tmp_path) == (12000, 6667)


def test_master_playlist_lists_variants_by_bandwidth() -> None:
    text = ladder.master_playlist(
        [
            ladder.Variant("audio/index.m3u8", 130_000, 128_000, "mp4a.40.2"),
            ladder.Variant("360p/index.m3u8", 900_000, 800_000, "avc1.64001e,mp4a.40.2", (640, 360), 25.0),
            ladder.Variant(
                "720p/index.m3u8", 3_000_000, 2_800_000, "avc1.64001f,mp4a.40.2", (1280, 720), 25.0
            ),
        ]
    )
    assert text.splitlines() == [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        '#EXT-X-STREAM-INF:BANDWIDTH=3000000,AVERAGE-BANDWIDTH=2800000,RESOLUTION=1280x720,CODECS="avc1.64001f,mp4a.40.2",FRAME-RATE=25.000',
        "720p/index.m3u8",
        '#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=800000,RESOLUTION=640x360,CODECS="avc1.64001e,mp4a.40.2",FRAME-RATE=25.000',
        "360p/index.m3u8",
        '#EXT-X-STREAM-INF:BANDWIDTH=130000,AVERAGE-BANDWIDTH=128000,CODECS="mp4a.40.2"',
        "audio/index.m3u8",
    ]
    with pytest.raises(ValueError):
        ladder.master_playlist([])


# --- real renditions (Debian's ffmpeg) ---


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ladder")


@pytest.fixture(scope="module")
def movie(media_dir: Path) -> Path:
    # keyframes every 7 frames: nothing lines up with the segments unless the encoder is told
    return clip(media_dir / "movie.mp4", "-c:v", "libx264", "-g", "7", "-pix_fmt", "yuv420p",
                "-c:a", "aac", size="640x360", secs=3)  # fmt: skip


@pytest.fixture(scope="module")
def rotated(media_dir: Path) -> Path:
    """320x240 stored, a display matrix turning it a quarter (shown 240x320). ffmpeg 5.1
    sets the matrix from ``rotate`` only when copying the stream, so: encode, then copy."""
    plain = clip(media_dir / "plain.mp4", *H264_AAC, size="320x240", secs=2)
    return ffmpeg(media_dir / "rotated.mp4", "-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90")


@pytest.fixture(scope="module")
def published(movie: Path, media_dir: Path) -> dict[str, Path]:
    """The 360p and 240p rungs of ``movie`` and its audio rendition, published."""
    src = probe.read(movie)
    out = media_dir / "movie.hls"
    dirs = {}
    for rung in ladder.rungs_for(src, ladder.parse_ladder("360p,240p")):
        dirs[rung.name] = package.hls(
            movie, out / rung.name, ladder.transcode_args(src, rung, SEG), src.duration
        ).path
    dirs["audio"] = package.hls(movie, out / "audio", ladder.audio_args(SEG, 64), src.duration).path
    return dirs


def test_two_rungs_have_keyframes_and_segments_at_the_same_times(published: dict[str, Path]) -> None:
    high, low = published["360p"] / "index.m3u8", published["240p"] / "index.m3u8"
    assert keyframes(high) == keyframes(low)
    times = keyframes(high)
    assert [round(b - a, 3) for a, b in itertools.pairwise(times)] == [SEG, SEG]
    assert extinf(high) == extinf(low) and len(extinf(high)) == 3
    for name, size in (("360p", (640, 360)), ("240p", (426, 240))):
        (video,) = ffprobe(published[name] / "seg_00000.ts", "-select_streams", "v", "-show_streams")[
            "streams"
        ]
        assert (video["width"], video["height"], video["profile"]) == (*size, "High")
        assert video["pix_fmt"] == "yuv420p" and video["r_frame_rate"] == "25/1"


def test_the_master_playlist_plays(published: dict[str, Path]) -> None:
    variants = [ladder.variant(path) for path in published.values()]
    by_uri = {v.uri: v for v in variants}
    assert by_uri["360p/index.m3u8"].resolution == (640, 360)
    assert by_uri["360p/index.m3u8"].codecs.startswith("avc1.6400")
    assert by_uri["360p/index.m3u8"].codecs.endswith(",mp4a.40.2")
    assert by_uri["audio/index.m3u8"].codecs == "mp4a.40.2" and by_uri["audio/index.m3u8"].resolution is None
    for v in variants:
        assert v.peak_bps >= v.average_bps > 0
    hls_dir = published["360p"].parent
    master = ladder.publish_master(hls_dir, ladder.master_playlist(variants))
    assert master == hls_dir / "master.m3u8"
    assert not [p for p in hls_dir.iterdir() if p.name.startswith(".")]  # no temporary left
    assert master.stat().st_mode & 0o044 == 0o044  # nginx reads it
    uris = [line for line in master.read_text().splitlines() if line and not line.startswith("#")]
    assert uris == ["360p/index.m3u8", "240p/index.m3u8", "audio/index.m3u8"]
    programs = ffprobe(master, "-show_programs")["programs"]
    rates = sorted(int(p["tags"]["variant_bitrate"]) for p in programs)
    assert rates == sorted(v.peak_bps for v in variants)
    kinds = [sorted(s["codec_name"] for s in p["streams"]) for p in programs]
    assert sorted(kinds) == [["aac"], ["aac", "h264"], ["aac", "h264"]]


def test_the_audio_rendition_of_an_audio_source(media_dir: Path, tmp_path: Path) -> None:
    song = ffmpeg(media_dir / "song.m4a", "-f", "lavfi", "-i", "sine=frequency=330", "-t", "2", "-c:a", "aac")
    src = probe.read(song)
    assert src.video is None and ladder.rungs_for(src) == []
    out = package.hls(song, tmp_path / "song.hls" / "audio", ladder.audio_args(SEG), src.duration)
    (stream,) = ffprobe(out.path / "index.m3u8", "-show_streams")["streams"]
    assert (stream["codec_name"], stream["channels"], stream["sample_rate"]) == ("aac", 2, "48000")
    v = ladder.variant(out.path)
    assert v.codecs == "mp4a.40.2" and v.resolution is None and v.frame_rate is None


def test_a_rotated_source_comes_out_upright(rotated: Path, tmp_path: Path) -> None:
    src = probe.read(rotated)
    assert src.video is not None and src.video.rotation == 90 and src.video.display_size == (240, 320)
    (rung,) = ladder.rungs_for(src)  # smaller than every rung: its own height, as shown
    assert (rung.name, rung.height) == ("320p", 320)
    out = package.hls(
        rotated, tmp_path / "r.hls" / rung.name, ladder.transcode_args(src, rung, SEG), src.duration
    )
    (video,) = ffprobe(out.path / "seg_00000.ts", "-select_streams", "v", "-show_streams")["streams"]
    assert (video["width"], video["height"]) == src.video.display_size
    assert not video.get("side_data_list")  # nothing left for a player to turn again
    assert ladder.variant(out.path).resolution == (240, 320)


def test_a_copied_source_s_entry_needs_no_ffprobe_and_matches_one(tmp_path: Path) -> None:
    src = clip(tmp_path / "src.mp4", *H264_AAC, size="640x360", secs=3)
    info = probe.read(src)
    assert info.video is not None and info.video.level > 0
    made = package.hls(src, tmp_path / "hls" / "source", package.copy_args(1), info.duration)
    assert ladder.copied_variant(info, made.path, "source/index.m3u8") == ladder.variant(made.path)
    # what the reading cannot name (audio other than AAC) is measured instead
    mp3 = probe.Info(**{**info.__dict__, "audio": probe.Audio("mp3", 2, 44100, 128000)})
    assert ladder.copied_variant(mp3, made.path, "source/index.m3u8") is None
