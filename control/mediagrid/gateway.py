"""Gateway: ``GET|HEAD /files/<app>/<user>/<file_id>`` for wget, curl and players.

It only resolves and authorises; nginx sends the bytes from the front node's mounts of the
group volumes (Range, HEAD, mp4 ``?start=``) after the X-Accel-Redirect answer.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask
from flask.typing import ResponseReturnValue

from . import auth, files
from .contract import PlaybackQuery, answers, api
from .web import create_service

bp = Blueprint("gateway", __name__)


@bp.route("/files/<app>/<user>/<file_id>", methods=["GET", "HEAD"])
@api.validate(query=PlaybackQuery, resp=answers("HTTP_200", "HTTP_206"))
def playback(app: str, user: str, file_id: str) -> ResponseReturnValue:
    """Playback through the gateway; Range and mp4 ?start= supported."""
    files.check_ref(app, user, file_id)
    auth.require_app(app, user, file_id, playback=True)
    return files.accel_response(files.get(app, user, file_id))


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    return create_service("gateway", [bp], test_config)
