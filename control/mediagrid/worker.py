"""``mediagrid-worker``: the media jobs of one storage node's group, run near the data
(issue 12). It claims jobs from the queue (``jobs``), runs ffprobe and ffmpeg on the
group volume (``probe``, ``package``), renews its lease as ffmpeg reports progress, and
records each file's media state. Python decides and records; ffmpeg does the media work.

Job kinds so far: ``probe`` (what the file is; refusals become the file's state) and
``package:source`` (HLS without re-encoding, the first rendition in seconds, for H.264/AAC
sources).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import jobs, package, probe
from .db import Connection

log = logging.getLogger("mediagrid.worker")

# Cost factors (``probe.cost``'s preset): packaging copies bytes, it decodes nothing.
COPY_FACTOR = 0.02
PROBE_COST = 0.01
SEGMENT_SECONDS = 4.0


@dataclass(frozen=True)
class Node:
    node_id: str
    group: str
    data_dir: Path
    budget: float  # CPU units this node's jobs may use at once
    lease: float = 30.0  # seconds a claim holds without renewal
    limits: probe.Limits = field(default_factory=probe.Limits)


def queue_upload(cur: Any, sid: int, app: str, grp: str) -> None:
    """A new upload's media state and its probe (inside the upload's transaction)."""
    cur.execute("INSERT IGNORE INTO media (sid) VALUES (%s)", (sid,))
    jobs.enqueue(cur, sid, app, grp, "probe", jobs.FIRST_PLAYABLE, PROBE_COST)


def hls_dir(data_dir: Path, rel: str) -> Path:
    """Where a stored file's renditions live: beside it, ``<storage path>.hls/``."""
    return data_dir / f"{rel}.hls"


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
        if info.copyable:
            jobs.enqueue(
                cur,
                job.sid,
                job.app,
                job.grp,
                "package:source",
                jobs.FIRST_PLAYABLE,
                probe.cost(info, COPY_FACTOR),
            )
        else:  # transcoded renditions: the ladder's job kinds come next
            cur.execute(
                "UPDATE media SET state = 'failed', code = 'needs_transcode',"
                " message = 'only H.264/AAC sources are packaged so far' WHERE sid = %s",
                (job.sid,),
            )
    conn.commit()
    jobs.finish(conn, job, node.node_id)


def _package_source(conn: Connection, node: Node, job: jobs.Job) -> None:
    found = _source(conn, node, job.sid)
    if found is None:
        jobs.finish(conn, job, node.node_id, "file_deleted", "the file is gone")
        return
    rel, src = found
    with conn.cursor() as cur:
        cur.execute("SELECT info FROM media WHERE sid = %s", (job.sid,))
        row = cur.fetchone()
    conn.commit()
    duration = float(json.loads(row["info"])["duration"]) if row and row["info"] else 0.0

    def progress(done: float) -> bool:
        return jobs.renew(conn, job, node.node_id, node.lease, done)

    try:
        package.hls(
            src,
            hls_dir(node.data_dir, rel) / "source",
            package.copy_args(SEGMENT_SECONDS),
            duration,
            progress,
        )
    except package.PackageFailed as err:
        if err.code == "stopped":
            return  # the job is another node's now, or cancelled: nothing to record
        if jobs.finish(conn, job, node.node_id, err.code, err.message):
            _set_state(conn, job.sid, "failed", err.code, err.message)
        return
    if jobs.finish(conn, job, node.node_id):
        _set_state(conn, job.sid, "ready")


HANDLERS = {"probe": _probe, "package:source": _package_source}


def run_once(conn: Connection, node: Node) -> jobs.Job | None:
    """Claim and run one job; None when nothing fits this node now."""
    job = jobs.claim(conn, node.node_id, node.group, node.budget, node.lease)
    if job is None:
        return None
    handler = HANDLERS.get(job.kind)
    if handler is None:
        jobs.finish(conn, job, node.node_id, "unknown_kind", f"no worker handles {job.kind}")
        return job
    log.info("job %d: %s of %d (cost %.2f, attempt %d)", job.id, job.kind, job.sid, job.cost, job.attempts)
    handler(conn, node, job)
    return job
