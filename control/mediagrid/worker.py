"""``mediagrid-worker``: the media jobs of one storage node's group, run near the data
(issue 12). It claims jobs from the queue (``jobs``), runs ffprobe and ffmpeg on the
group volume (``probe``, ``package``, ``ladder``, ``thumbs``), renews its lease as ffmpeg
reports progress, and records each file's media state. Python decides and records;
ffmpeg does the media work.

What an upload goes through (each a job, most expensive first within its class):

- ``probe`` (first-playable): what the file is. A refusal becomes the file's state
  (``not_media``, or ``failed`` with its code); media gets the jobs below.
- ``hls:source`` (first-playable): an H.264 source packaged to HLS without re-encoding,
  playable seconds after the upload. Any other codec gets its first rung transcoded at
  first-playable priority instead; an audio-only file gets ``hls:audio`` (AAC).
- ``hls:<rung>`` (ladder): the ABR ladder's rungs under the source's height, keyframes
  aligned across rungs. The ladder is the app's own (``mediagrid-admin app ladder``), else
  the node's ``MEDIA_LADDER``; it is read when the file is probed.
- ``poster`` (first-playable, one frame) and ``sprite`` (backfill: the scrubbing
  previews' sheet and its WebVTT track).

Each rendition is published whole (``package``), and the master playlist is rewritten
under the file's ``media`` row lock in the transaction that marks the job done: a rung
is listed once all its segments are in place, and a job that lost its lease or whose
file was deleted publishes nothing.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from . import apps, daemon, jobs, ladder, package, probe, thumbs, volume
from .config import Settings
from .db import Connection, connect

log = logging.getLogger("mediagrid.worker")

# Cost factors (``probe.cost``'s preset): packaging copies bytes, it decodes nothing.
COPY_FACTOR = 0.02
POSTER_COST, SPRITE_FACTOR = 0.001, 0.05  # the poster: after the first rendition
# Cores a job holds while it runs (``jobs``): packaging and pictures are light.
COPY_CORES, LIGHT_CORES = 0.25, 0.5
MAX_JOB_CORES = 4
MASTER = "master.m3u8"


@dataclass(frozen=True)
class Node:
    node_id: str
    group: str
    data_dir: Path
    budget: float  # cores this node's jobs may hold at once
    lease: float = 30.0  # seconds a claim holds without renewal
    limits: probe.Limits = field(default_factory=probe.Limits)
    ladder: tuple[ladder.Rung, ...] = ladder.DEFAULT_LADDER
    segment_seconds: float = 4.0
    stop: threading.Event = field(default_factory=threading.Event, compare=False)


def hls_dir(data_dir: Path, rel: str) -> Path:
    """Where a stored file's renditions live: beside it, ``<storage path>.hls/``."""
    return data_dir / volume.renditions_of(rel)


def _set_state(conn: Connection, sid: int, state: str, code: str | None = None, message: str = "") -> None:
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE media SET state = %s, code = %s, message = %s WHERE sid = %s",
            (state, code, message[:255] or None, sid),
        )
    conn.commit()


def _source(conn: Connection, node: Node, sid: int) -> tuple[str, Path] | None:
    """The file's storage path and its place on this node's volume; None if it is gone."""
    with conn.cursor() as cur:
        cur.execute("SELECT path FROM files WHERE sid = %s AND grp = %s", (sid, node.group))
        row = cur.fetchone()
    conn.commit()
    return None if row is None else (str(row["path"]), node.data_dir / str(row["path"]))


def _info(conn: Connection, sid: int) -> probe.Info | None:
    """The probe's reading of the file, as recorded (the jobs after the probe need not run
    ffprobe again)."""
    with conn.cursor() as cur:
        cur.execute("SELECT info FROM media WHERE sid = %s", (sid,))
        row = cur.fetchone()
    conn.commit()
    return probe.Info.from_dict(json.loads(row["info"])) if row and row["info"] else None


def transcode_cores(info: probe.Info, rung: ladder.Rung) -> float:
    """Threads (cores) an x264 encode of ``rung`` is given: one per 720p30 of pixel rate."""
    if info.video is None:
        return 1.0
    width, height = info.video.display_size
    return encode_cores(width / max(height, 1), rung.height, info.video.fps)


def encode_cores(aspect: float, height: int, fps: float | None) -> float:
    """Cores for an x264 encode at ``height`` (the width from the picture's ``aspect``):
    one per 720p30 of pixel rate, at most MAX_JOB_CORES."""
    rate = aspect * height * height * min(fps or 30, 30)
    return float(min(MAX_JOB_CORES, max(1, math.ceil(rate / (1280 * 720 * 30)))))


def _plan(cur: Any, job: jobs.Job, info: probe.Info, rungs: tuple[ladder.Rung, ...]) -> None:
    """Queue a probed file's renditions and pictures (inside the probe's transaction)."""

    def add(kind: str, klass: int, cost: float, cores: float) -> None:
        jobs.enqueue(cur, job.sid, job.app, job.grp, kind, klass, cost, cores)

    if info.video is None:
        add("hls:audio", jobs.FIRST_PLAYABLE, ladder.cost(info, None), COPY_CORES)
        return
    chosen = ladder.rungs_for(info, rungs)
    if info.copyable:
        add("hls:source", jobs.FIRST_PLAYABLE, probe.cost(info, COPY_FACTOR), COPY_CORES)
        shown = info.video.display_size[1]
        ladder_rungs = [r for r in chosen if r.height < shown]  # the source plays its own height
    else:  # the first rendition is transcoded: a modest rung, quickly (480p or below)
        first = next((r for r in chosen if r.height <= 480), chosen[-1])
        add(f"hls:{first.name}", jobs.FIRST_PLAYABLE, ladder.cost(info, first), transcode_cores(info, first))
        ladder_rungs = [r for r in chosen if r != first]
    for rung in ladder_rungs:
        add(f"hls:{rung.name}", jobs.LADDER, ladder.cost(info, rung), transcode_cores(info, rung))
    add("poster", jobs.FIRST_PLAYABLE, POSTER_COST, LIGHT_CORES)
    add("sprite", jobs.BACKFILL, probe.cost(info, SPRITE_FACTOR), 1.0)


def _ladder(cur: Any, node: Node, app: str) -> tuple[ladder.Rung, ...]:
    """The app's own ladder (``mediagrid-admin app ladder``), else this node's default."""
    spec = apps.media_ladder(cur, app)
    if spec is None:
        return node.ladder
    try:
        return ladder.parse_ladder(spec)
    except ValueError as err:  # written by hand into the table: the default, and say so
        log.warning("app %s: ladder %r refused (%s): the default is used", app, spec, err)
        return node.ladder


def _probe(conn: Connection, node: Node, job: jobs.Job) -> None:
    found = _source(conn, node, job.sid)
    if found is None:
        jobs.finish(conn, job, node.node_id, "file_deleted", "the file is gone")
        return
    try:
        info = probe.read(found[1], node.limits)
    except probe.MediaRefused as refused:
        _set_state(conn, job.sid, refused.state, refused.code, refused.message)
        jobs.finish(conn, job, node.node_id)  # the probe did its work: the file is not media
        return
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE media SET state = 'processing', code = NULL, message = NULL, info = %s WHERE sid = %s",
            (json.dumps(info.as_dict()), job.sid),
        )
        _plan(cur, job, info, _ladder(cur, node, job.app))
        jobs.mark_finished(cur, job, node.node_id)
    conn.commit()


def _rung(info: probe.Info, name: str, rungs: tuple[ladder.Rung, ...]) -> ladder.Rung:
    for rung in ladder.rungs_for(info, rungs):
        if rung.name == name:
            return rung
    if name in ladder.RUNGS:
        return ladder.RUNGS[name]
    raise ValueError(f"no rung {name}")


def _output_args(node: Node, info: probe.Info, name: str, rungs: tuple[ladder.Rung, ...]) -> list[str]:
    if name == "source":
        return package.copy_args(node.segment_seconds)
    if name == "audio":
        return ladder.audio_args(node.segment_seconds)
    rung = _rung(info, name, rungs)
    threads = int(transcode_cores(info, rung))
    return [*ladder.transcode_args(info, rung, node.segment_seconds), "-threads", str(threads)]


def _renditions(folder: Path) -> list[Path]:
    """The published renditions in a file's HLS directory (temporaries start with a dot)."""
    if not folder.is_dir():
        return []
    return sorted(d for d in folder.iterdir() if not d.name.startswith(".") and (d / "index.m3u8").is_file())


VARIANT = "variant.json"  # a rendition's master-playlist entry, measured when it was made


def _measure(name: str, info: probe.Info) -> Callable[[Path], None]:
    """A ``before_publish`` step: the rendition's master-playlist entry, kept beside it, so a
    master is rebuilt from files, not from one ffprobe per rendition. The copied source's
    is read from the probe's reading of it, with no ffprobe at all."""

    def write(work: Path) -> None:
        uri = f"{name}/index.m3u8"
        entry = (ladder.copied_variant(info, work, uri) if name == "source" else None) or ladder.variant(
            work, uri=uri
        )
        (work / VARIANT).write_text(json.dumps(asdict(entry)))

    return write


def _variant(rendition: Path) -> ladder.Variant:
    try:
        doc = json.loads((rendition / VARIANT).read_text())
        doc["resolution"] = tuple(doc["resolution"]) if doc.get("resolution") else None
        return ladder.Variant(**doc)
    except (OSError, ValueError, TypeError):  # made before the entries were kept: measure it
        return ladder.variant(rendition)


def _publish(conn: Connection, node: Node, job: jobs.Job, folder: Path, playable: bool) -> bool:
    """Mark the job done and, for a rendition, list every published rendition in the
    master playlist, under the file's ``media`` row lock; False (nothing marked) if the
    job is not this node's any more or the file is gone."""
    try:
        conn.begin()
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM media_jobs WHERE id = %s FOR UPDATE", (job.id,))
            cur.execute("SELECT state FROM media WHERE sid = %s FOR UPDATE", (job.sid,))
            if cur.fetchone() is None or not jobs.mark_finished(cur, job, node.node_id):
                conn.rollback()
                return False
            if playable:
                variants = [_variant(d) for d in _renditions(folder)]
                ladder.publish_master(folder, ladder.master_playlist(variants), MASTER)
                cur.execute(
                    "UPDATE media SET state = 'ready', code = NULL, message = NULL WHERE sid = %s",
                    (job.sid,),
                )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return True


def _make(
    conn: Connection,
    node: Node,
    job: jobs.Job,
    work: Callable[[Path, Path, probe.Info, package.Progress], object],
) -> None:
    """Run ``work(source, hls directory, info, progress)`` for the job and publish what it
    made; a failure is the job's (and, for the first-playable rendition, the file's)."""
    found = _source(conn, node, job.sid)
    if found is None:
        jobs.finish(conn, job, node.node_id, "file_deleted", "the file is gone")
        return
    rel, src = found
    folder = hls_dir(node.data_dir, rel)

    def progress(done: float) -> bool:
        return not node.stop.is_set() and jobs.renew(conn, job, node.node_id, node.lease, done)

    began = time.monotonic()
    try:
        info = _info(conn, job.sid) or probe.read(src, node.limits)
        worked = time.monotonic()
        work(src, folder, info, progress)
    except (package.PackageFailed, probe.MediaRefused) as err:
        if isinstance(err, package.PackageFailed) and err.code == "exists":
            pass  # an earlier attempt published it whole: publish the job
        elif isinstance(err, package.PackageFailed) and err.code == "stopped":
            if node.stop.is_set():
                jobs.release(conn, job, node.node_id)  # the service stops: another node takes it
            elif _source(conn, node, job.sid) is None:
                # cancelled by the file's deletion: the directory this run made for its
                # output goes too (the shim removed the renditions before it was made)
                volume.remove_renditions(node.data_dir, rel)
            return  # else the job is another node's now: nothing to record
        else:
            code, message = err.code, err.message
            if jobs.finish(conn, job, node.node_id, code, message) and job.klass == jobs.FIRST_PLAYABLE:
                _set_state(conn, job.sid, "failed", code, message)
            return
    made = time.monotonic()
    published = _publish(conn, node, job, folder, job.kind.startswith("hls:"))
    # where a job's time goes (the benchmarks compare it with the same ffmpeg by hand)
    log.info(
        "job %d: %s %s in %.2f s (setup %.2f, work %.2f, publish %.2f)",
        job.id, job.kind, "published" if published else "not published", time.monotonic() - began,
        worked - began, made - worked, time.monotonic() - made,
    )  # fmt: skip
    if not published and _source(conn, node, job.sid) is None:  # deleted while it ran
        volume.remove_renditions(node.data_dir, rel)


def _hls(conn: Connection, node: Node, job: jobs.Job) -> None:
    name = job.kind.split(":", 1)[1]
    with conn.cursor() as cur:
        rungs = _ladder(cur, node, job.app)
    conn.commit()

    def work(src: Path, folder: Path, info: probe.Info, progress: package.Progress) -> None:
        package.hls(
            src, folder / name, _output_args(node, info, name, rungs), info.duration, progress,
            before_publish=_measure(name, info),
        )  # fmt: skip

    _make(conn, node, job, work)


def _poster(conn: Connection, node: Node, job: jobs.Job) -> None:
    _make(conn, node, job, lambda src, folder, info, _: thumbs.poster(src, folder / "poster.jpg", info))


def _sprite(conn: Connection, node: Node, job: jobs.Job) -> None:
    def work(src: Path, folder: Path, info: probe.Info, _: package.Progress) -> None:
        thumbs.sprite(src, folder / "sprite.jpg", folder / "thumbs.vtt", info)

    _make(conn, node, job, work)


def _thumb(conn: Connection, node: Node, job: jobs.Job) -> None:
    """A thumbnail a player asked for (``thumb:<seconds>``), made once."""
    t = job.kind.split(":", 1)[1]

    def work(src: Path, folder: Path, info: probe.Info, _: package.Progress) -> None:
        try:
            thumbs.at(src, folder / "thumb" / f"{t}.jpg", float(t), info)
        except ValueError as err:
            raise package.PackageFailed("no_such_time", str(err)) from None

    _make(conn, node, job, work)


HANDLERS = {"probe": _probe, "hls": _hls, "poster": _poster, "sprite": _sprite, "thumb": _thumb}


def run(conn: Connection, node: Node, job: jobs.Job) -> None:
    """Run a claimed job. A failure of the job's own (a bug, a volume error) is the job's
    ``worker_error``, never the worker's end: the other jobs go on."""
    handler = HANDLERS.get(job.kind.partition(":")[0])
    if handler is None:
        jobs.finish(conn, job, node.node_id, "unknown_kind", f"no worker handles {job.kind}")
        return
    log.info("job %d: %s of %d (cost %.2f, attempt %d)", job.id, job.kind, job.sid, job.cost, job.attempts)
    try:
        handler(conn, node, job)
    except pymysql.MySQLError:
        conn.close()  # the lease runs out and the job is retried, up to its attempts
        raise
    except (OSError, RuntimeError, ValueError, KeyError) as err:
        log.exception("job %d (%s of %d) failed", job.id, job.kind, job.sid)
        if (
            jobs.finish(conn, job, node.node_id, "worker_error", str(err))
            and job.klass == jobs.FIRST_PLAYABLE
        ):
            _set_state(conn, job.sid, "failed", "worker_error", str(err))


def run_once(conn: Connection, node: Node) -> jobs.Job | None:
    """Claim and run one job; None when nothing fits this node now."""
    job = jobs.claim(conn, node.node_id, node.group, node.budget, node.lease)
    if job is not None:
        run(conn, node, job)
    return job


def node_of(conf: Settings, stop: threading.Event | None = None) -> Node:
    """This node as the worker service runs it; ``stop`` set makes running jobs give up."""
    budget = jobs.node_budget(conf.worker_budget)
    return Node(
        conf.node_id,
        conf.group,
        Path(conf.data_dir),
        budget,
        conf.worker_lease,
        ladder=ladder.parse_ladder(",".join(conf.media_ladder)),
        segment_seconds=conf.hls_segment_seconds,
        stop=stop or threading.Event(),
    )


def serve(conf: Settings, stop: threading.Event) -> None:
    """The service: ``WORKER_SLOTS`` threads, each claiming and running jobs on its own
    connection; claims are serialised so the node's budget check sees its own running
    jobs. MariaDB being away only pauses the slots: they reconnect with a backoff."""
    node = node_of(conf, stop)
    claiming = threading.Lock()
    log.info(
        "worker %s of group %s: budget %.1f cores, %d slots",
        node.node_id, node.group, node.budget, conf.worker_slots,
    )  # fmt: skip

    def slot() -> None:
        conn: Connection | None = None
        pause = conf.worker_poll
        while not stop.is_set():
            try:
                if conn is None or not conn.open:
                    conn = connect(conf.as_config())
                with claiming:
                    job = jobs.claim(conn, node.node_id, node.group, node.budget, node.lease)
                if job is None:
                    stop.wait(conf.worker_poll)
                else:
                    run(conn, node, job)
                pause = conf.worker_poll
            except pymysql.MySQLError as err:
                log.warning("database: %s; retrying in %.0f s", err, pause)
                if conn is not None:
                    conn.close()
                conn = None
                stop.wait(pause)
                pause = min(pause * 2, 30.0)
            except Exception:  # a bug: the slot goes on; the job's lease runs out and it is retried
                log.exception("slot error")
                stop.wait(conf.worker_poll)
        if conn is not None and conn.open:
            conn.close()

    threads = [threading.Thread(target=slot, name=f"slot-{i}") for i in range(conf.worker_slots)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main(argv: list[str] | None = None) -> None:
    daemon.main(
        "mediagrid-worker",
        "mediagrid media worker (storage nodes)",
        ("node_id", "group", "data_dir"),
        serve,
        argv,
    )


if __name__ == "__main__":
    main()
