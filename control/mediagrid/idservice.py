"""ID service: ``GET|POST /api/v1/ids?count=N`` hands out unique ids in batches."""

from __future__ import annotations

from typing import Any

import pymysql
from flask import Blueprint, Flask, current_app, jsonify
from flask.typing import ResponseReturnValue

from . import auth
from .contract import Ids, IdsQuery, answers, api, parse_query
from .errors import APIError
from .idalloc import SegmentAllocator, reserve_segment
from .web import create_service

bp = Blueprint("ids", __name__)


def _allocator() -> SegmentAllocator:
    return current_app.extensions["mediagrid_ids"]


@bp.route("/api/v1/ids", methods=["GET", "POST"])
@api.validate(query=IdsQuery, resp=answers(HTTP_200=Ids))
def ids() -> ResponseReturnValue:
    """Unique 63-bit ids (served by the id service)."""
    auth.authenticate_any()
    count = parse_query(IdsQuery).count
    try:
        batch = _allocator().take(count)
    except pymysql.MySQLError as err:
        raise APIError(503, "db_unavailable", "cannot reserve an id segment") from err
    return jsonify(ids=batch)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = create_service("idservice", [bp], test_config)
    conf = app.config
    name, step = conf["ID_SEGMENT_NAME"], conf["ID_SEGMENT_STEP"]
    app.extensions["mediagrid_ids"] = SegmentAllocator(lambda: reserve_segment(conf, name, step))
    return app
