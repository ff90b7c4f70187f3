"""What a player asks for before it is made (issue 12, on demand): a rung outside the
ladder (``240p/index.m3u8``) or a thumbnail at a time (``thumb/12.5.jpg``).

nginx serves everything under the HLS prefix itself; only a request for a file that is
not there (its 404) reaches the tracker, by an internal redirect to
``/api/v1/ondemand<the request's path>``. The
tracker checks the token again (the same key and signed prefix as nginx), queues the job
that makes the file at on-demand priority (``media.request``), and answers ``202`` with
``Retry-After``: the player asks again and nginx serves the file once it is published.
Nothing is made that nobody asked for beyond the ladder, and a bound per video
(``media.MAX_THUMBS``) keeps a player from making the cluster draw pictures for ever.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from . import links, media, names
from .contract import Pending, answers, api
from .db import transaction
from .errors import APIError

bp = Blueprint("ondemand", __name__)


@bp.get("/api/v1/ondemand/<path:rest>")
@api.validate(resp=answers(HTTP_202=Pending, also=(429,)), security={})
def missing(rest: str) -> ResponseReturnValue:
    """A rendition file a player asked for under the HLS prefix and nginx did not find
    (``<prefix>/<token>/<expires>/<group>/<path>.hls/<name>``): 202 and Retry-After while
    what makes it is queued; 404 if it is nothing that can be made (nginx only)."""
    conf = current_app.config
    path = "/" + rest
    # nginx checked the token before its 404 brought the request here: this is the second check
    video = links.verify_hls(conf["LINK_KEY"], conf["HLS_PREFIX"], path)
    if video is None:
        raise APIError(403, "bad_link", "the link's token does not match or has expired")
    grp, rel = video
    name = path.split(".hls/", 1)[1]
    sid = names.storage_sid(rel)
    assert sid is not None  # verify_hls takes storage paths only
    with transaction() as cur:
        cur.execute("SELECT app FROM files WHERE sid = %s AND grp = %s", (sid, grp))
        row = cur.fetchone()
        if row is None:
            raise APIError(404, "file_not_found", "the video is gone")
        retry = media.request(cur, sid, str(row["app"]), grp, name)
    resp = jsonify(state="queued", name=name, retry_after=retry)
    resp.status_code = 202
    resp.headers["Retry-After"] = str(retry)
    resp.headers["Cache-Control"] = "no-store"
    return resp
