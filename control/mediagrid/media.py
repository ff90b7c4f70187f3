"""A file's media state (issue 12): queued with the upload's row, forgotten with it, and
shown by the API as the workers recorded it (``media``) with where each of its jobs
stands (``media_jobs``).

Both ends ride the ``files`` row's own transaction: a committed upload always has its
probe queued, and a deleted or replaced file's jobs are cancelled in the commit that
removes its row (a running worker learns it at its next lease renewal, stops, and
publishes nothing)."""

from __future__ import annotations

import json
from typing import Any

from . import jobs
from .db import get_db

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
            "SELECT kind, state, progress, attempts, node_id, code FROM media_jobs"
            " WHERE sid = %s ORDER BY id",
            (sid,),
        )
        jobs_ = [dict(j) for j in cur.fetchall()]
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
