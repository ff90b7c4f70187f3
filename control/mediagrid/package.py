"""HLS renditions made by ffmpeg, published atomically (issue 12, VOD pipeline).

ffmpeg does all the media work; this module builds its command line, follows its progress
(``-progress``, for the job's lease and the API), stops it when the job is lost or
cancelled, and publishes the output only when it is whole: ffmpeg writes into a temporary
directory beside the rendition's place, the playlist is checked (it must end with
``#EXT-X-ENDLIST`` and name only segments that are there), every file is fsynced, and the
directory is renamed into place. A player, nginx or the API never sees a partial
rendition; a failed or stopped run leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# Called with the share done (0..1); returning False stops the run (the job was lost).
Progress = Callable[[float], bool]
FSYNC_THREADS = 8


class PackageFailed(Exception):
    """ffmpeg could not make the rendition: a stable ``code`` and ffmpeg's last words."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Rendition:
    path: Path  # the published directory
    playlist: str  # its playlist's file name
    segments: int
    bytes: int


def copy_args(segment_seconds: float) -> list[str]:
    """Packaging without re-encoding: the source's first video and audio streams copied
    into MPEG-TS segments cut at keyframes, about ``segment_seconds`` long."""
    return [
        "-map", "0:v:0", "-map", "0:a:0?", "-c", "copy",
        "-f", "hls", "-hls_time", f"{segment_seconds:g}", "-hls_playlist_type", "vod",
        "-hls_flags", "independent_segments",
    ]  # fmt: skip


def hls(
    src: Path,
    dest: Path,
    output_args: Sequence[str],
    duration: float,
    progress: Progress | None = None,
    ffmpeg: str = "ffmpeg",
    timeout: float = 3600.0,
    before_publish: Callable[[Path], None] | None = None,
) -> Rendition:
    """Run ffmpeg on ``src`` with ``output_args`` (an HLS muxer's) and publish the result
    at ``dest`` (a directory holding ``index.m3u8`` and its segments). ``before_publish``
    may add files to the checked output (its directory) before it is made durable."""
    if dest.exists():
        raise PackageFailed("exists", f"{dest.name} is published already")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        os.chmod(work, 0o755)  # mkdtemp's 0700 would hide it from nginx, which serves it
        argv = [
            ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-y",
            "-progress", "pipe:1", "-nostats",
            "-i", os.fspath(src),
            *output_args,
            "-hls_segment_filename", os.fspath(work / "seg_%05d.ts"),
            os.fspath(work / "index.m3u8"),
        ]  # fmt: skip
        with _Syncer(work) as syncer:
            _run(argv, duration, progress, timeout)
            segments, size = _check(work)
            if before_publish is not None:
                before_publish(work)
            syncer.rest()
        _fsync(work)
        os.rename(work, dest)  # the rendition appears whole, or not at all
        _fsync(dest.parent)
        return Rendition(dest, "index.m3u8", segments, size)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(argv: list[str], duration: float, progress: Progress | None, timeout: float) -> None:
    errors: list[str] = []
    stopped = False
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        stdout, stderr = proc.stdout, proc.stderr
        assert stdout is not None and stderr is not None
        reader = threading.Thread(target=lambda: errors.extend(stderr.readlines()))
        reader.start()
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            for line in stdout:
                key, _, value = line.strip().partition("=")
                if key != "out_time_us" or progress is None or duration <= 0:
                    continue
                try:
                    done = max(0.0, min(int(value) / 1e6 / duration, 1.0))
                except ValueError:
                    continue
                if not progress(done):
                    stopped = True
                    break
        except BaseException:
            stopped = True
            raise
        finally:
            timer.cancel()
            if stopped:
                proc.kill()
            rc = proc.wait()
            reader.join(5)
    if stopped:
        raise PackageFailed("stopped", "the job was cancelled or taken over")
    if rc != 0:
        last = errors[-1].strip() if errors else f"ffmpeg exited {rc}"
        raise PackageFailed("ffmpeg_failed", last[-200:])


def _check(work: Path) -> tuple[int, int]:
    """The playlist is complete and every segment it names is there: (segments, bytes)."""
    playlist = work / "index.m3u8"
    if not playlist.is_file():
        raise PackageFailed("no_output", "ffmpeg wrote no playlist")
    lines = playlist.read_text().splitlines()
    if "#EXT-X-ENDLIST" not in lines:
        raise PackageFailed("incomplete", "the playlist does not end")
    names = [line for line in lines if line and not line.startswith("#")]
    if not names:
        raise PackageFailed("no_output", "the playlist names no segment")
    size = 0
    for name in names:
        seg = work / name
        if "/" in name or not seg.is_file() or seg.stat().st_size == 0:
            raise PackageFailed("incomplete", f"segment {name} is missing")
        size += seg.stat().st_size
    return len(names), size + playlist.stat().st_size


class _Syncer:
    """Makes a rendition's files durable while ffmpeg still writes it: a segment is whole
    once the next one exists (the HLS muxer writes one at a time), and it is fsynced then,
    in the background, so at the end only the last segment and the playlists are left. One
    fsync after another costs a network round trip each on GlusterFS: they run at once."""

    PERIOD = 0.2

    def __init__(self, work: Path) -> None:
        self.work = work
        self.done: set[str] = set()
        self.pool = ThreadPoolExecutor(FSYNC_THREADS)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, name="fsync", daemon=True)

    def __enter__(self) -> _Syncer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.pool.shutdown(wait=True)

    def _sync(self, names: list[str]) -> None:
        fresh = [n for n in names if n not in self.done]
        list(self.pool.map(_fsync, [self.work / n for n in fresh]))
        self.done.update(fresh)

    def _follow(self) -> None:
        while not self.stop.wait(self.PERIOD):
            try:
                segments = sorted(p.name for p in self.work.glob("seg_*.ts"))
                self._sync(segments[:-1])  # every one but the one being written
            except OSError:
                return  # the run failed or stopped: rest() or the cleanup says so

    def rest(self) -> None:
        """After ffmpeg: every file not synced yet (the whole output once it is checked)."""
        self.stop.set()
        self.thread.join()
        self._sync(sorted(p.name for p in self.work.iterdir()))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
