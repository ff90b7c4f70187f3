"""Playback quality reports (issue 12): what the cluster's player page measured while a
viewer watched a video (first-frame time, stalls, quality switches, errors).

Viewers have no app credentials. The HLS URL the page played stands in for them: its token
(the link key's, checked as nginx checks it) names the video, so a report is taken only for
a video somebody was given the URL of, and is filed under that video's file and app. A page
reports when it goes away, maybe after the URL expired: a token that expired at most
``HLS_TTL`` ago is still taken. The front nginx bounds the body and the rate. A page sends
its view's random id with each report: a view is one row, its numbers the latest sent.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from flask import Blueprint, current_app, request
from flask.typing import ResponseReturnValue

from . import links, names
from .contract import QosReport, answers, api, parse_json
from .db import transaction
from .errors import APIError

bp = Blueprint("qos", __name__)

# The largest report body taken: a report is a few numbers and one URL (nginx has the same
# bound, front.conf.j2).
MAX_BODY = 4096


@bp.post("/api/v1/qos")
@api.validate(json=QosReport, resp=answers("HTTP_204", also=(411, 413, 429)), security={})
def report() -> ResponseReturnValue:
    """A player's measurements of one view (no credentials: the token in ``src`` is checked);
    204 once recorded, 403 ``bad_qos_source`` unless ``src`` is a rendition URL of this
    cluster whose token is valid or expired at most ``HLS_TTL`` ago."""
    if request.content_length is None:
        raise APIError(411, "length_required", "a QoS report carries Content-Length")
    if request.content_length > MAX_BODY:
        raise APIError(413, "payload_too_large", f"a QoS report is at most {MAX_BODY} bytes")
    body = parse_json(QosReport)
    conf = current_app.config
    path = urlsplit(body.src).path
    late = time.time() - conf["HLS_TTL"]
    video = links.verify_hls(conf["LINK_KEY"], conf["HLS_PREFIX"], path, late)
    sid = names.storage_sid(video[1]) if video else None
    if video is None or sid is None:
        raise APIError(403, "bad_qos_source", "src is not a valid HLS URL of this cluster")
    with transaction() as cur:
        cur.execute(
            "SELECT app FROM files WHERE sid = %s AND grp = %s AND path = %s", (sid, video[0], video[1])
        )
        row = cur.fetchone()
        if row is None:
            raise APIError(404, "file_not_found", "the video of this report is gone")
        # a view's later report replaces its numbers (they only grow); the first frame stays
        cur.execute(
            "INSERT INTO qos_reports"
            " (sid, app, view_id, event, first_frame_ms, stalls, stall_ms, switches, errors)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON DUPLICATE KEY UPDATE event = VALUES(event),"
            " first_frame_ms = COALESCE(first_frame_ms, VALUES(first_frame_ms)),"
            " stalls = GREATEST(stalls, VALUES(stalls)), stall_ms = GREATEST(stall_ms, VALUES(stall_ms)),"
            " switches = GREATEST(switches, VALUES(switches)), errors = GREATEST(errors, VALUES(errors)),"
            " updated = CURRENT_TIMESTAMP(3)",
            (
                sid, row["app"], body.view, body.event or "report", body.first_frame_ms,
                body.stalls, body.stall_ms, body.switches, body.errors,
            ),
        )  # fmt: skip
    return "", 204
