"""Live streaming on the trackers (issue 13): publishing keys, the registry, play decisions.

- ``POST /api/v1/live/{app}/{stream}?user=`` (app-signed): the stream is the user's (its
  name is taken for the app on first use); the answer holds RTMP publish URLs with a key
  each (``streamkeys``): a primary on the least loaded origin and a backup on the least
  loaded origin of another group, and the stream's play URL.
- The registry (``liveregistry``), fed by the origins' hook pushes
  (``POST /api/v1/cluster/live``) and heartbeats: ``GET /api/v1/live/{app}`` and
  ``GET /api/v1/live/{app}/{stream}`` from any tracker; ``.../events`` lists the publishes
  origins admitted and refused, with each refusal's code.
- Play: ``GET /live/{app}/{stream}.m3u8?token=`` answers 302 to the stream's HLS on an edge
  (a front node's nginx caching the origin's, ``/lhls/<token>/<expires>/<origin>/<name>/``,
  the link key's token in the path as for VOD) or a JSON error; ``GET /api/v1/play/...``
  gives the same decision to apps. RTMP players on an edge are sent to the origin by the
  edge nginx-rtmp's ``on_play`` hook (``/rtmp/edge_play``, loopback only), which answers
  302 to the origin's address: the edge pulls the stream once for all its players.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any
from urllib.parse import quote, urlsplit

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from . import auth, ladder, links, livesnaps, livestore, livetranscode, names, streamkeys
from .contract import (
    BanQuery,
    LiveEvent,
    PlayQuery,
    PublishQuery,
    RelayAsk,
    RelaySource,
    RenditionQuery,
    SnapshotsQuery,
    answers,
    api,
    parse_json,
    parse_query,
)
from .db import transaction
from .errors import APIError
from .liveregistry import Entry, LiveTable
from .livesessions import LOOPBACK
from .nodes import ACTIVE, OFFLINE, Node, NodeTable
from .signing import node_key

bp = Blueprint("live", __name__)

# How long the registry keeps an ended session (for "ended" answers and the last figures).
ENDED_KEPT = 86400.0


def _nodes() -> NodeTable:
    table: NodeTable = current_app.extensions["mediagrid_nodes"]
    return table


def _live() -> LiveTable:
    table: LiveTable = current_app.extensions["mediagrid_live"]
    return table


def _check_stream(stream: str) -> None:
    if not streamkeys.valid_stream(stream):
        raise APIError(
            400, "invalid_stream", "a stream name is 1-64 of A-Z a-z 0-9 _ - (not starting with _ or -)"
        )


@bp.after_request
def _cors(resp: Response) -> Response:
    # players on an app's own page follow the play redirect (MEDIA-NOTES §8: the 302 itself
    # needs the header); the token is the access control
    if request.path.startswith("/live/"):
        resp.headers["Access-Control-Allow-Origin"] = "*"
    return resp


# -- the origins' reports ----------------------------------------------------------------------


@bp.post("/api/v1/cluster/live")
@api.validate(json=LiveEvent, resp=answers(HTTP_200=None), security={"clusterNode": []})
def pushed() -> ResponseReturnValue:
    """An origin's publish hook: a session started or ended (node-signed)."""
    node = auth.authenticate_node()
    event = parse_json(LiveEvent)
    if event.node_id != node:
        raise APIError(403, "forbidden", "a node may only report for itself")
    if event.event == "start":
        _live().start(node, event.session)
    else:
        _live().end(node, event.session, event.at)
    return jsonify(status="ok")


@bp.post("/api/v1/cluster/live/relay")
@api.validate(json=RelayAsk, resp=answers(HTTP_200=RelaySource), security={"clusterNode": []})
def relay_source() -> ResponseReturnValue:
    """Dual hot streams (``liverelay``): an origin whose primary publisher ended asks where
    the stream's backup is live, to feed the stream from there (node-signed); 404
    ``no_backup`` when no other origin carries it."""
    node = auth.authenticate_node()
    ask = parse_json(RelayAsk)
    if ask.node_id != node:
        raise APIError(403, "forbidden", "a node may only ask for itself")
    nodes = _node_states()
    for entry in _live().entries(ask.app, ask.stream):
        origin = nodes.get(entry.node_id)
        elsewhere = entry.node_id != node and origin is not None and bool(origin.rtmp_url)
        if entry.role == "backup" and elsewhere and origin and _is_live(entry, nodes):
            name = streamkeys.rtmp_name(ask.app, ask.stream)
            return jsonify(source=f"{origin.rtmp_url.rstrip('/')}/live/{name}")
    raise APIError(404, "no_backup", "no other origin carries the stream's backup")


def beat(node_id: str, sessions: list[Any] | None) -> None:
    """A heartbeat's live sessions (None: the origin could not tell this time)."""
    if sessions is not None:
        now = time.time()
        _live().beat(node_id, sessions, now)
        _live().prune(now - ENDED_KEPT)


# -- the registry ------------------------------------------------------------------------------


def _node_states() -> dict[str, Node]:
    return {n.node_id: n for n in _nodes().nodes()}


def _is_live(entry: Entry, nodes: dict[str, Node]) -> bool:
    node = nodes.get(entry.node_id)
    return entry.ended is None and node is not None and node.state != OFFLINE


def _describe(
    app: str, stream: str, entries: list[Entry], nodes: dict[str, Node], owner: dict[str, Any] | None
) -> dict[str, Any]:
    live = [e for e in entries if _is_live(e, nodes)]
    publishers = [e.public(_is_live(e, nodes)) for e in entries]
    for pub, entry in zip(publishers, entries, strict=True):
        if pub["state"] == "ended" and pub["ended"] is None:  # its origin went silent
            node = nodes.get(entry.node_id)
            pub["ended"] = node.last_seen if node else entry.updated
    main = next((e for e in live if e.role == "primary"), live[0] if live else None)
    return {
        "app": app,
        "stream": stream,
        "user": owner["user"] if owner else None,
        "state": "live" if live else ("ended" if entries else "idle"),
        "origin": main.node_id if main else None,
        "backup": next((e.node_id for e in live if e is not main), None),
        "started": main.started if main else None,
        "ingest": main.public(True)["ingest"] if main else None,
        "viewers": sum(e.viewers for e in live),
        # where the stream is copied: the edges pulling it for their RTMP players
        "edges": sorted({edge for e in live for edge in e.pulled_by}),
        "recording": bool(owner and owner["record"]) and bool(live),
        "snapshot": _snapshot_url(app, stream) if owner else None,
        "publishers": publishers,
    }


@bp.get("/api/v1/live/<app>")
@api.validate(resp=answers("HTTP_200"))
def streams(app: str) -> ResponseReturnValue:
    """The app's streams the registry knows (live, or ended within a day), from any tracker."""
    names.check_app(app)
    auth.require_app(app)
    nodes = _node_states()
    by_stream: dict[str, list[Entry]] = {}
    for entry in _live().entries(app):
        by_stream.setdefault(entry.stream, []).append(entry)
    listed = [_describe(app, s, es, nodes, None) for s, es in sorted(by_stream.items())]
    for item in listed:
        item.pop("user")
    return jsonify(app=app, streams=listed)


@bp.get("/api/v1/live/<app>/<stream>")
@api.validate(resp=answers("HTTP_200"))
def stream_state(app: str, stream: str) -> ResponseReturnValue:
    """One stream: state (live, ended, idle), origin and backup, ingest fps and bitrate,
    viewers, start time, recording, the lower renditions being transcoded now."""
    names.check_app(app)
    _check_stream(stream)
    auth.require_app(app)
    owner = livestore.stream(app, stream)
    entries = _live().entries(app, stream)
    if owner is None and not entries:
        raise APIError(404, "unknown_stream", "no stream of that name in this app")
    with transaction() as cur:
        renditions = livetranscode.running(cur, app, stream)
    return jsonify({**_describe(app, stream, entries, _node_states(), owner), "renditions": renditions})


def _snapshot_link(row: dict[str, Any]) -> str:
    conf = current_app.config
    link = links.mint(conf["LINK_KEY"], conf["LINK_PREFIX"], row["grp"], row["path"], conf["LIVE_PLAY_TTL"])
    return request.host_url.rstrip("/") + str(link["path"])


def _snapshot_url(app: str, stream: str) -> str | None:
    if not current_app.config["LINK_KEY"]:
        return None
    row = livesnaps.newest(app, stream)
    return _snapshot_link(row) if row else None


@bp.get("/api/v1/live/<app>/<stream>/snapshots")
@api.validate(query=SnapshotsQuery, resp=answers("HTTP_200"))
def snapshots(app: str, stream: str) -> ResponseReturnValue:
    """The stream's snapshots (JPEG, at most 640 wide), newest first, each with a direct
    link valid LIVE_PLAY_TTL seconds; kept LIVE_SNAPSHOT_KEEP seconds."""
    names.check_app(app)
    _check_stream(stream)
    auth.require_app(app)
    if livestore.stream(app, stream) is None:
        raise APIError(404, "unknown_stream", "no stream of that name in this app")
    if not current_app.config["LINK_KEY"]:
        raise APIError(503, "links_disabled", "direct links are not configured on this cluster")
    rows = livesnaps.listing(app, stream, parse_query(SnapshotsQuery).limit)
    listed = [
        {"at": row["at"] / 1000, "node_id": row["node_id"], "size": row["size"], "url": _snapshot_link(row)}
        for row in rows
    ]
    return jsonify(app=app, stream=stream, snapshots=listed)


@bp.get("/api/v1/live/<app>/<stream>/events")
@api.validate(resp=answers("HTTP_200"))
def stream_events(app: str, stream: str) -> ResponseReturnValue:
    """The stream's latest publishes, ends and refusals (each refusal with its code), newest first."""
    names.check_app(app)
    _check_stream(stream)
    auth.require_app(app)
    return jsonify(app=app, stream=stream, events=livestore.events(app, stream))


@bp.post("/api/v1/live/<app>/<stream>/kick")
@api.validate(resp=answers("HTTP_200"))
def kick(app: str, stream: str) -> ResponseReturnValue:
    """Disconnect the stream's publishers: each origin's agent drops them at its next
    heartbeat; the keys still publish (``ban`` stops that)."""
    names.check_app(app)
    _check_stream(stream)
    auth.require_app(app)
    with transaction() as cur:
        kicked = livestore.kick(cur, app, stream)
    if not kicked:
        raise APIError(404, "unknown_stream", "no stream of that name in this app")
    return jsonify(app=app, stream=stream, kicked=True)


@bp.post("/api/v1/live/<app>/<stream>/ban")
@api.validate(query=BanQuery, resp=answers("HTTP_200"))
def ban(app: str, stream: str) -> ResponseReturnValue:
    """Ban the stream's keys (or one, ``kid=``): they never publish again; their publishers
    are dropped as for a kick."""
    names.check_app(app)
    _check_stream(stream)
    auth.require_app(app)
    kid = parse_query(BanQuery).kid or None
    with transaction() as cur:
        banned = livestore.ban(cur, app, stream, kid)
        livestore.kick(cur, app, stream)
    return jsonify(app=app, stream=stream, banned=banned)


# -- publishing --------------------------------------------------------------------------------


def _host(node: Node) -> str:
    return urlsplit(node.url).hostname or ""


def _origins() -> list[Node]:
    """ACTIVE origins, least loaded first: CPU load plus the live streams each carries."""
    carried: dict[str, int] = {}
    nodes = _node_states()
    for entry in _live().all_live():
        if _is_live(entry, nodes):
            carried[entry.node_id] = carried.get(entry.node_id, 0) + 1
    ready = [n for n in nodes.values() if n.state == ACTIVE and n.rtmp_url]
    return sorted(ready, key=lambda n: (n.load + 0.25 * carried.get(n.node_id, 0), n.node_id))


def _play_token(app: str, stream: str, expires: int) -> str:
    return f"{expires}-{links.token(current_app.config['LINK_KEY'], f'/live/{app}/{stream}', expires)}"


def _play_url(app: str, stream: str, base: str, ttl: int) -> dict[str, Any]:
    expires = int(time.time()) + ttl
    token = _play_token(app, stream, expires)
    return {
        "hls": f"{base}/live/{app}/{stream}.m3u8?token={quote(token)}",
        "token": token,
        "expires": expires,
    }


@bp.post("/api/v1/live/<app>/<stream>")
@api.validate(query=PublishQuery, resp=answers("HTTP_200", also=(409,)))
def publish(app: str, stream: str) -> ResponseReturnValue:
    """RTMP publish URLs for the user's stream: a primary and (another group's) backup
    origin, each with a key of its own valid ``LIVE_KEY_TTL`` seconds, and the play URL."""
    names.check_app(app)
    _check_stream(stream)
    query = parse_query(PublishQuery)
    auth.require_app(app, query.user)
    conf = current_app.config
    if not conf["LINK_KEY"] or not conf["CLUSTER_SECRET"]:
        raise APIError(503, "live_disabled", "live streaming is not configured on this cluster")
    origins = _origins()
    if not origins:
        raise APIError(503, "no_origin", "no live origin is ACTIVE")
    owner = livestore.claim(app, stream, query.user, query.record == "1", query.snapshot_every)
    primary = origins[0]
    backup = next((n for n in origins if n.group != primary.group), None)
    expires = int(time.time()) + conf["LIVE_KEY_TTL"]
    name = streamkeys.rtmp_name(app, stream)
    issued: list[tuple[str, str, str, int]] = []
    urls: dict[str, Any] = {}
    for role, node in (("primary", primary), ("backup", backup)):
        if node is None:
            urls[role] = None
            continue
        key = streamkeys.issue(
            node_key(conf["CLUSTER_SECRET"], node.node_id, _host(node)), app, stream, role, expires
        )
        issued.append((key.kid, role, node.node_id, expires))
        server = f"{node.rtmp_url.rstrip('/')}/live"
        urls[role] = {
            "node_id": node.node_id,
            "url": f"{server}/{name}?k={key}",
            "server": server,
            "stream_key": f"{name}?k={key}",
        }
    livestore.add_keys(app, stream, issued, record=owner["record"])
    base = request.host_url.rstrip("/")
    return jsonify(
        app=app,
        stream=stream,
        user=query.user,
        record=owner["record"],
        expires=expires,
        publish=urls,
        play=_play_url(app, stream, base, conf["LIVE_PLAY_TTL"]),
    )


# -- playing -----------------------------------------------------------------------------------


def _check_play_token(app: str, stream: str, token: str) -> None:
    expires_s, _, sig = token.partition("-")
    if not expires_s.isdigit() or len(expires_s) > 12 or not sig:
        raise APIError(403, "forbidden", "a play URL carries the token its API call gave (token=)")
    expires = int(expires_s)
    if not hmac.compare_digest(
        links.token(current_app.config["LINK_KEY"], f"/live/{app}/{stream}", expires), sig
    ):
        raise APIError(403, "forbidden", "the play token is not this stream's")
    if expires < time.time():
        raise APIError(403, "token_expired", "the play token has expired")


def _edge(app: str, stream: str) -> str:
    """The edge a stream's viewers are sent to: one per stream (rendezvous hashing over the
    edges, so a stream's segments sit in one edge cache), this node when none are set. A
    viewer who asked over HTTPS goes to an HTTPS edge (``LIVE_EDGES_TLS``): a page served
    over HTTPS may not fetch plain HTTP."""
    conf = current_app.config
    tls = request.scheme == "https" and conf["LIVE_EDGES_TLS"]
    edges = (conf["LIVE_EDGES_TLS"] if tls else conf["LIVE_EDGES"]) or [request.host_url]
    name = f"{app}.{stream}"
    return max(edges, key=lambda e: hashlib.sha256(f"{e}\n{name}".encode()).digest()).rstrip("/")


def decide(app: str, stream: str, avoid: str = "") -> tuple[Entry, Node]:
    """The live publisher a viewer of ``app``/``stream`` gets (the primary while it is live),
    or 404 ``unknown_stream`` / ``stream_offline``. ``avoid``: one on another origin than
    that, the registry's view of it notwithstanding (a player whose origin stopped
    answering asks this before the registry knows), or 404 ``no_backup``."""
    entries = _live().entries(app, stream)
    nodes = _node_states()
    live = [e for e in entries if _is_live(e, nodes)]
    if not live:
        if not entries and livestore.stream(app, stream) is None:
            raise APIError(404, "unknown_stream", "no stream of that name in this app")
        raise APIError(404, "stream_offline", "the stream is not live")
    if avoid:
        live = [e for e in live if e.node_id != avoid]
        if not live:
            raise APIError(404, "no_backup", "no other origin carries the stream live")
    entry = next((e for e in live if e.role == "primary"), live[0])
    return entry, nodes[entry.node_id]


def _rendition(app: str, stream: str, entry: Entry, name: str) -> str | None:
    """The name of the rendition ``name`` of the stream at ``entry``'s origin once it plays
    (``livetranscode``): asked for, then waited for up to LIVE_TRANSCODE_WAIT seconds. None
    for the stream as published; 503 ``no_capacity`` when the origin has no room for it."""
    if not name:
        return None
    try:
        rung = livetranscode.rung_of(name)
    except ValueError:
        raise APIError(
            400, "unknown_rendition", f"no rendition {name!r} (known: {', '.join(ladder.RUNGS)})"
        ) from None
    if entry.height and rung.height >= entry.height:
        return None  # not lower than the stream as published: that is what plays
    deadline = time.monotonic() + current_app.config["LIVE_TRANSCODE_WAIT"]
    with transaction() as cur:
        row = livetranscode.want(cur, app, stream, rung, entry.node_id)
    while True:
        if row.get("state") == "refused":
            code = str(row.get("code") or "no_capacity")
            if code == "stream_offline":
                raise APIError(404, "stream_offline", "the stream is not live")
            raise APIError(503, "no_capacity", "the stream's origin has no room for another transcode now")
        if row.get("state") == "running" and row.get("ready"):
            return livetranscode.rendition_name(app, stream, rung.name)
        if time.monotonic() >= deadline:
            raise APIError(503, "rendition_starting", "the rendition is still starting: ask again")
        time.sleep(0.2)
        with transaction() as cur:
            row = livetranscode.state(cur, app, stream, rung.name) or {}


def _hls_url(app: str, stream: str, entry: Entry, rendition: str | None = None) -> dict[str, Any]:
    conf = current_app.config
    expires = int(time.time()) + conf["LIVE_PLAY_TTL"]
    obj = f"/{entry.node_id}/{rendition or streamkeys.rtmp_name(app, stream)}"
    prefix = conf["LIVE_HLS_PREFIX"]
    token = links.token(conf["LINK_KEY"], prefix + obj, expires)
    # v=: this play's viewer session, which the player keeps on its playlist reloads and
    # the edges report to the origin, where distinct ones are counted (``liveviews``)
    session = secrets.token_urlsafe(12)
    return {
        "url": f"{_edge(app, stream)}{prefix}/{token}/{expires}{obj}/index.m3u8?v={session}",
        "expires": expires,
    }


@bp.get("/live/<app>/<path:leaf>")
@api.validate(query=PlayQuery, resp=answers(also=(302,)), security={})
def play_redirect(app: str, leaf: str) -> ResponseReturnValue:
    """A viewer's play URL: 302 to the stream's HLS on an edge, or a JSON error."""
    stream, dot, ext = leaf.rpartition(".")
    if not dot or ext != "m3u8":
        raise APIError(404, "not_found", "a live play URL is /live/<app>/<stream>.m3u8")
    names.check_app(app)
    _check_stream(stream)
    query = parse_query(PlayQuery)
    _check_play_token(app, stream, query.token)
    entry, _ = decide(app, stream, query.avoid)
    rendition = _rendition(app, stream, entry, query.rendition)
    resp = Response(status=302)
    resp.headers["Location"] = _hls_url(app, stream, entry, rendition)["url"]
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/api/v1/play/<app>/<stream>")
@api.validate(query=RenditionQuery, resp=answers("HTTP_200"))
def play(app: str, stream: str) -> ResponseReturnValue:
    """The play decision for apps: the edge HLS URL (of a lower rendition with
    ``rendition=``) and the RTMP URL of the stream, or the error a viewer would get."""
    names.check_app(app)
    _check_stream(stream)
    auth.require_app(app)
    query = parse_query(RenditionQuery)
    entry, node = decide(app, stream, query.avoid)
    asked = query.rendition
    rendition = _rendition(app, stream, entry, asked)
    hls = _hls_url(app, stream, entry, rendition)
    cluster = request.host_url.rstrip("/")
    play_url = _play_url(app, stream, cluster, current_app.config["LIVE_PLAY_TTL"])
    return jsonify(
        app=app,
        stream=stream,
        state="live",
        origin=node.node_id,
        role=entry.role,
        hls=hls["url"],
        expires=hls["expires"],
        rtmp=f"rtmp://{urlsplit(cluster).hostname}/live/{streamkeys.rtmp_name(app, stream)}"
        f"?token={quote(play_url['token'])}",
        play=play_url["hls"] + (f"&rendition={asked}" if asked else ""),
        rendition=asked or None,
    )


@bp.post("/rtmp/edge_play")
@api.validate(resp=answers(also=(302,)), security={})
def edge_play() -> ResponseReturnValue:
    """The edge nginx-rtmp's ``on_play``: 302 to the origin's RTMP address (an IP: nginx-rtmp
    relays to no host name), where the edge pulls the stream once for all its players; 404
    when the stream is not live, so the player is not left waiting."""
    if request.remote_addr not in LOOPBACK or "X-Forwarded-For" in request.headers:
        raise APIError(403, "forbidden", "nginx-rtmp hooks are answered on loopback only")
    parsed = streamkeys.split_rtmp_name(request.form.get("name", ""))
    if parsed is None:
        raise APIError(404, "unknown_stream", "not a stream name of this cluster")
    app, stream = parsed
    _check_play_token(app, stream, request.form.get("token", ""))
    _, node = decide(app, stream)
    resp = Response(status=302)
    resp.headers["Location"] = f"{node.rtmp_url.rstrip('/')}/live/{streamkeys.rtmp_name(app, stream)}"
    return resp


@bp.post("/rtmp/edge_play_done")
@api.validate(resp=answers("HTTP_200"), security={})
def edge_play_done() -> ResponseReturnValue:
    """The edge nginx-rtmp's ``on_play_done``: nothing to do (nginx-rtmp closes the pull
    when its last player leaves); answered so the edge logs no failed hook."""
    if request.remote_addr not in LOOPBACK or "X-Forwarded-For" in request.headers:
        raise APIError(403, "forbidden", "nginx-rtmp hooks are answered on loopback only")
    return jsonify(status="ok")
