"""A file's media state as the API shows it (issue 12): what the worker recorded
(``media``) and where each of its jobs stands (``media_jobs``)."""

from __future__ import annotations

import json
from typing import Any

from .db import get_db


def status(sid: int) -> dict[str, Any]:
    """State, refusal code, probe info and jobs of the upload with storage id ``sid``."""
    with get_db().cursor() as cur:
        cur.execute("SELECT state, code, message, info FROM media WHERE sid = %s", (sid,))
        row = cur.fetchone()
        cur.execute(
            "SELECT kind, state, progress, attempts, node_id, code FROM media_jobs"
            " WHERE sid = %s ORDER BY id",
            (sid,),
        )
        jobs = [dict(j) for j in cur.fetchall()]
    if row is None:
        return {"state": "none", "code": None, "message": None, "info": None, "jobs": jobs}
    return {
        "state": row["state"],
        "code": row["code"],
        "message": row["message"],
        "info": json.loads(row["info"]) if row["info"] else None,
        "jobs": jobs,
    }
