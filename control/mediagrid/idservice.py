"""ID service: ``GET|POST /api/v1/ids?count=N`` hands out unique ids in batches."""

from __future__ import annotations

from typing import Any

import pymysql
from flask import Blueprint, Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from . import auth, names
from .errors import APIError
from .idalloc import SegmentAllocator, reserve_segment
from .web import create_service

bp = Blueprint("ids", __name__)


def _allocator() -> SegmentAllocator:
    return current_app.extensions["mediagrid_ids"]


@bp.route("/api/v1/ids", methods=["GET", "POST"])
def ids() -> ResponseReturnValue:
    auth.authenticate_any()
    limit = int(current_app.config["ID_MAX_BATCH"])
    count = names.check_int(request.args.get("count", "1"), 1, limit, "invalid_count", "count")
    try:
        batch = _allocator().take(count)
    except pymysql.MySQLError as err:
        raise APIError(503, "db_unavailable", "cannot reserve an id segment") from err
    return jsonify(ids=batch)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = create_service("idservice", [bp], test_config)
    conf = app.config
    name, step = conf["ID_SEGMENT_NAME"], int(conf["ID_SEGMENT_STEP"])
    app.extensions["mediagrid_ids"] = SegmentAllocator(lambda: reserve_segment(conf, name, step))
    return app
