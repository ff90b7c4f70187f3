"""A file's media state (issue 12): queued with the upload's row, forgotten with it, and
shown by the API as the workers recorded it (``media``) with where each of its jobs
stands (``media_jobs``).

Both ends ride the ``files`` row's own transaction: a committed upload always has its
probe queued, and a deleted or replaced file's jobs are cancelled in the commit that
removes its row (a running worker learns it at its next lease renewal, stops, and
publishes nothing)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from . import jobs, ladder, probe
from .db import get_db
from .errors import APIError

PROBE_COST = 0.01  # CPU units: ffprobe reads headers, it decodes nothing


def queue(cur: Any, sid: int, app: str, grp: str) -> None:
    """A new upload's media state and its probe (inside the upload's transaction)."""
    cur.execute("INSERT IGNORE INTO media (sid) VALUES (%s)", (sid,))
    jobs.enqueue(cur, sid, app, grp, "probe", jobs.FIRST_PLAYABLE, PROBE_COST)


def forget(cur: Any, sid: int) -> None:
    """The file's row is going (inside that transaction): cancel its jobs, drop its state."""
    jobs.cancel_file(cur, sid)
    cur.execute("DELETE FROM media WHERE sid = %s", (sid,))


# What a finished job leaves under the video's renditions directory (besides the
# ``hls:<name>`` renditions, each listed in ``master.m3u8``).
ASSETS = {
    "poster": ("poster", "poster.jpg"),
    "sprite": ("sprite", "sprite.jpg"),
    "thumbnails_vtt": ("sprite", "thumbs.vtt"),
}


def status(sid: int) -> dict[str, Any]:
    """State, refusal code, probe info, renditions and jobs of the upload ``sid``; which
    of its published files exist (``published``: names relative to its HLS base)."""
    with get_db().cursor() as cur:
        cur.execute("SELECT state, code, message, info FROM media WHERE sid = %s", (sid,))
        row = cur.fetchone()
        cur.execute(
            "SELECT kind, state, progress, attempts, node_id, code, app FROM media_jobs"
            " WHERE sid = %s ORDER BY id",
            (sid,),
        )
        jobs_ = [dict(j) for j in cur.fetchall()]
        queued = [j for j in jobs_ if j["state"] == "queued"]
        held = jobs.blocked_apps(cur, queued[0]["app"]) if queued else {}
    for j in jobs_:  # why a queued job waits: its app's quota, or other jobs before it
        app = j.pop("app")
        j["waiting"] = (held.get(app) or "queue") if j["state"] == "queued" else None
    done = {j["kind"] for j in jobs_ if j["state"] == "done"}
    renditions = [
        {"name": j["kind"][4:], "state": j["state"], "progress": j["progress"], "code": j["code"]}
        for j in jobs_
        if j["kind"].startswith("hls:")
    ]
    published = [f for _, (kind, f) in ASSETS.items() if kind in done]
    if any(r["state"] == "done" for r in renditions):
        published.insert(0, "master.m3u8")
    base: dict[str, Any] = {"renditions": renditions, "jobs": jobs_, "published": published}
    if row is None:
        return {"state": "none", "code": None, "message": None, "info": None, **base}
    return {
        "state": row["state"],
        "code": row["code"],
        "message": row["message"],
        "info": json.loads(row["info"]) if row["info"] else None,
        **base,
    }


def urls(base: str | None, published: list[str]) -> dict[str, str | None]:
    """The API's URLs of a video's published files under its signed HLS ``base``."""
    have = set(published) if base else set()
    out: dict[str, str | None] = {"hls": f"{base}master.m3u8" if "master.m3u8" in have else None}
    for key, (_, name) in ASSETS.items():
        out[key] = f"{base}{name}" if name in have else None
    return out


# On demand (a player asks for what is not made yet): a rung outside the ladder, or a
# thumbnail at a time, as paths under the video's renditions directory.
ON_DEMAND_RE = re.compile(r"(?:(?P<rung>[0-9]{3,4}p)/index\.m3u8|thumb/(?P<t>[0-9]{1,6}\.[0-9])\.jpg)")
THUMB_AT = "thumb.jpg"  # a thumbnail at a time: thumb.jpg?t=12.5 (front.conf.j2 maps it)
MAX_THUMBS = 200  # thumbnails one video may be asked for: a bound on what a player can make us do
THUMB_COST = 0.001
SECONDS_PER_UNIT = 0.3  # about how long one CPU unit (a 720p30 second) takes at veryfast, one core


def request(cur: Any, sid: int, app: str, grp: str, name: str) -> int:
    """A player asked for ``name`` (under the video's renditions directory), which nginx
    did not find: queue what makes it (on-demand class, or promote a queued ladder job) and
    return the seconds to retry after. An ``APIError`` if it is nothing that can be made."""
    match = ON_DEMAND_RE.fullmatch(name)
    if name == THUMB_AT:  # nginx maps thumb.jpg?t=<seconds> to thumb/<t>.jpg; no usable t here
        raise APIError(400, "bad_time", "ask for a thumbnail as thumb.jpg?t=<seconds>, e.g. ?t=12.5")
    if match is None:
        raise APIError(404, "no_such_rendition", "no such rendition file")
    cur.execute("SELECT state, info FROM media WHERE sid = %s", (sid,))
    row = cur.fetchone()
    if row is None or not row["info"]:
        raise APIError(404, "no_such_rendition", "the video has no renditions")
    info = probe.Info.from_dict(json.loads(row["info"]))
    if match["rung"]:
        kind, klass = f"hls:{match['rung']}", jobs.ON_DEMAND
        rung = next(
            (r for r in ladder.rungs_for(info, tuple(ladder.RUNGS.values())) if r.name == match["rung"]), None
        )
        if rung is None:
            raise APIError(404, "no_such_rung", f"no {match['rung']} rendition for a source of this size")
        cost, cores = ladder.cost(info, rung), float(min(4, max(1, math.ceil(rung.height / 720))))
    else:
        t = float(match["t"])
        if info.video is None or t > info.duration:
            raise APIError(404, "no_such_time", "no picture at that time")
        kind, klass, cost, cores = f"thumb:{match['t']}", jobs.ON_DEMAND, THUMB_COST, 0.5
        cur.execute("SELECT COUNT(*) AS n FROM media_jobs WHERE sid = %s AND kind LIKE 'thumb:%%'", (sid,))
        if int(cur.fetchone()["n"]) >= MAX_THUMBS and not _known(cur, sid, kind):
            raise APIError(429, "too_many_thumbnails", f"at most {MAX_THUMBS} thumbnails per video")
    if not jobs.enqueue(cur, sid, app, grp, kind, klass, cost, cores):
        # queued already (a ladder rung a player wants now goes ahead of the ladder), or
        # done a moment ago, or failed for good
        cur.execute(
            "UPDATE media_jobs SET class = LEAST(class, %s)"
            " WHERE sid = %s AND kind = %s AND state = 'queued'",
            (klass, sid, kind),
        )
        cur.execute(
            "SELECT state, progress, cost, cores FROM media_jobs WHERE sid = %s AND kind = %s", (sid, kind)
        )
        job = cur.fetchone()
        if job["state"] in ("failed", "cancelled"):
            raise APIError(404, "rendition_failed", f"{name} could not be made")
        remaining = float(job["cost"]) * (1 - float(job["progress"])) / max(float(job["cores"]), 0.1)
        return max(1, min(30, math.ceil(remaining * SECONDS_PER_UNIT)))
    return max(1, min(30, math.ceil(cost * SECONDS_PER_UNIT / cores) + 1))


def _known(cur: Any, sid: int, kind: str) -> bool:
    cur.execute("SELECT 1 FROM media_jobs WHERE sid = %s AND kind = %s", (sid, kind))
    return cur.fetchone() is not None
