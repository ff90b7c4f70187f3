"""Tracker: storage join/heartbeat, group lookup for (app, user), cluster state, listings."""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from . import auth, files, links, live, media, names, ondemand, qos
from .contract import (
    Accepted,
    Groups,
    Link,
    LinkQuery,
    Listing,
    ListQuery,
    Media,
    Report,
    Storages,
    StoragesQuery,
    answers,
    api,
    document,
    parse_json,
    parse_query,
)
from .errors import APIError
from .liveregistry import LiveTable
from .nodes import NodeTable
from .removed import removed_nodes
from .routes import RouteCache, group_for
from .web import create_service

bp = Blueprint("tracker", __name__)


def _table() -> NodeTable:
    """The node table, without the nodes an operator removed (``removed``)."""
    table: NodeTable = current_app.extensions["mediagrid_nodes"]
    for node_id in removed_nodes.ids():
        if table.known(node_id):
            table.forget(node_id)
            current_app.logger.warning("node %s was removed by an operator: dropped", node_id)
    return table


def _node_report() -> Report:
    node = auth.authenticate_node()
    report = parse_json(Report)
    if report.node_id != node:
        raise APIError(403, "forbidden", "a node may only report for itself")
    return report


@bp.post("/api/v1/cluster/join")
@api.validate(json=Report, resp=answers(HTTP_200=Accepted), security={"clusterNode": []})
def join() -> ResponseReturnValue:
    """Storage node joins (cluster secret, signed over the body too)."""
    report = _node_report()
    if not _table().record(report, join=True):
        raise APIError(409, "stale_report", "not newer than the last report taken from this node")
    live.beat(report.node_id, report.live)
    current_app.logger.info("node %s joined group %s", report.node_id, report.group)
    return jsonify(status="joined", heartbeat_interval=current_app.config["HEARTBEAT_INTERVAL"])


@bp.post("/api/v1/cluster/heartbeat")
@api.validate(json=Report, resp=answers(HTTP_200=Accepted), security={"clusterNode": []})
def heartbeat() -> ResponseReturnValue:
    """Storage node heartbeat (cluster secret); 404 before a join."""
    report = _node_report()
    table = _table()
    if not table.known(report.node_id):
        raise APIError(404, "unknown_node", "join before sending heartbeats")
    if not table.record(report, join=False):
        raise APIError(409, "stale_report", "not newer than the last report taken from this node")
    live.beat(report.node_id, report.live)
    return jsonify(status="ok")


@bp.get("/api/v1/storages")
@api.validate(query=StoragesQuery, resp=answers(HTTP_200=Storages))
def storages() -> ResponseReturnValue:
    """The user's group and its ACTIVE storage servers, best first.

    The hot path of the tracker: every upload starts here, so it touches no database
    once the route and the app secret are cached, and reuses the group's serialised list."""
    query = parse_query(StoragesQuery)
    app, user = query.app, query.user
    auth.require_app(app, user)
    table = _table()
    routes = current_app.extensions["mediagrid_routes"]
    groups = table.groups()
    try:
        group = group_for(app, user, list(groups.values()), routes)
    except APIError as err:
        if err.code != "no_writable_group":
            raise
        groups = table.groups(fresh=True)  # a refusal is worth one re-read of the table
        group = group_for(app, user, list(groups.values()), routes)
    members = groups.get(group)
    if members is None or not members.active:
        members = table.groups(fresh=True).get(group)
    if members is None or not members.active:
        raise APIError(503, "no_active_storage", f"group {group} has no ACTIVE storage server")
    head = json.dumps({"app": app, "user": user, "group": group})
    body = f'{head[:-1]}, "storages": {members.storages_json}}}'
    return Response(body, mimetype="application/json")


@bp.get("/api/v1/groups")
@api.validate(resp=answers(HTTP_200=Groups))
def groups() -> ResponseReturnValue:
    """Every group with members, states, capacity, heartbeat age (admin credentials)."""
    auth.require_admin()
    now = time.time()
    table = _table()
    return jsonify(
        offline_after=table.offline_after,
        groups=[g.public(now) for _, g in sorted(table.groups(fresh=True).items())],
    )


@bp.get("/api/v1/files/<app>/<user>")
@api.validate(query=ListQuery, resp=answers(HTTP_200=Listing))
def list_files(app: str, user: str) -> ResponseReturnValue:
    """List a user's files (tracker)."""
    names.check_app(app)
    names.check_user(user)
    auth.require_app(app, user)
    query = parse_query(ListQuery)
    listed = files.listing(app, user, query.after, query.limit)
    return jsonify(app=app, user=user, files=listed)


@bp.get("/api/v1/links/<app>/<user>/<file_id>")
@api.validate(query=LinkQuery, resp=answers(HTTP_200=Link))
def direct_link(app: str, user: str, file_id: str) -> ResponseReturnValue:
    """A direct link to a file: <prefix>/<group>/<path>?e=<expires>&t=<token>, checked and
    served by nginx alone with no service in the path; 403 if tampered, 410 once expired."""
    conf = current_app.config
    files.check_ref(app, user, file_id)
    auth.require_app(app, user, file_id)
    ttl = parse_query(LinkQuery).ttl
    if not conf["LINK_KEY"]:
        raise APIError(503, "links_disabled", "direct links are not configured on this cluster")
    row = files.get(app, user, file_id)
    link = links.mint(conf["LINK_KEY"], conf["LINK_PREFIX"], row["grp"], row["path"], ttl)
    return jsonify(
        url=request.host_url.rstrip("/") + link["path"],
        path=link["path"],
        expires=link["expires"],
        **files.describe(row, app, user),
    )


@bp.get("/api/v1/media/<app>/<user>/<file_id>")
@api.validate(resp=answers(HTTP_200=Media))
def media_status(app: str, user: str, file_id: str) -> ResponseReturnValue:
    """A file's media processing: state (queued, processing, ready, failed, not_media),
    the code of a refusal, ffprobe's reading, each rendition and job with its progress,
    and the signed URLs of what is published (HLS master playlist, poster, thumbnails)."""
    conf = current_app.config
    files.check_ref(app, user, file_id)
    auth.require_app(app, user, file_id)
    row = files.get(app, user, file_id)
    state = media.status(int(row["sid"]))
    published = state.pop("published")
    base = None
    if conf["LINK_KEY"] and published:
        ttl = conf["HLS_TTL"] + int((state["info"] or {}).get("duration") or 0)
        link = links.hls(conf["LINK_KEY"], conf["HLS_PREFIX"], row["grp"], row["path"], ttl)
        base = request.host_url.rstrip("/") + link["base"]
        state["expires"] = link["expires"]
    urls = media.urls(base, published)
    # the cluster's player page (roles/nginx/files/player/), the HLS URL in its fragment
    hls = urls["hls"]
    urls["player"] = request.host_url + "player/#src=" + quote(hls, safe="") if hls else None
    return jsonify(app=app, user=user, file_id=file_id, **state, **urls)


@bp.get("/api/v1/openapi.json")
@api.validate(resp=answers("HTTP_200", common=False), security={})
def openapi() -> ResponseReturnValue:
    """This document: every service's routes (spectree, from mediagrid.contract)."""
    return jsonify(document())


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = create_service("tracker", [bp, ondemand.bp, qos.bp, live.bp], test_config)
    conf = app.config
    path = conf["TRACKER_STATE_PATH"] or os.path.join(tempfile.gettempdir(), "mediagrid-tracker.sqlite")
    app.extensions["mediagrid_nodes"] = NodeTable(path, conf["OFFLINE_AFTER"], conf["TRACKER_SNAPSHOT_TTL"])
    app.extensions["mediagrid_live"] = LiveTable(path)
    app.extensions["mediagrid_routes"] = RouteCache(conf["ROUTE_CACHE_SIZE"])
    return app
