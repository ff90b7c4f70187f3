"""The origin's nginx-rtmp hooks, answered by the storage shim on loopback (``/rtmp/...``).

nginx-rtmp does the media work; the shim decides. ``on_publish`` admits a publisher when
its key (``streamkeys``, the ``k`` argument of its URL) is this origin's for that stream,
has not expired, is one the trackers issued and nobody banned, and no other publisher holds
the stream's role here; it then records the session (``livesessions``) and tells every
tracker. ``on_record_done`` hands a closed recording part to the agent (``liverecord``).
``on_publish_done`` (nginx-rtmp dropped or lost the publisher; after 5 s without
data, ``drop_idle_publisher``) ends it the same way. Refusals answer 4xx, which nginx-rtmp
turns into a refused publish, and are logged with their code in ``live_events``.

Only nginx-rtmp on this node calls these: the shim listens on loopback and the storage
nginx proxies ``/api/`` only, so a request here with a forwarded address is refused.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pymysql
import requests
from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from . import liverecord, liverelay, livesessions, livestore, nodeclient, streamkeys
from .contract import LiveEvent, LiveSession, answers, api
from .errors import APIError
from .livesessions import LOOPBACK
from .web import settings

bp = Blueprint("livehooks", __name__)


def _from_nginx() -> None:
    if request.remote_addr not in LOOPBACK or "X-Forwarded-For" in request.headers:
        raise APIError(403, "forbidden", "nginx-rtmp hooks are answered on loopback only")


def _sessions_dir() -> Path:
    root = settings().live_sessions_dir
    if not root:
        raise APIError(503, "live_disabled", "this node is not a live origin (no LIVE_SESSIONS_DIR)")
    return Path(root)


def _push(event: str, session: livesessions.Session) -> None:
    conf = settings()
    body = LiveEvent(
        node_id=conf.node_id,
        event="start" if event == "start" else "end",
        at=time.time(),
        session=LiveSession(
            app=session.app,
            stream=session.stream,
            role="primary" if session.role == "primary" else "backup",
            client=session.client,
            started=session.started,
        ),
    )
    nodeclient.post_all(conf, "/api/v1/cluster/live", body.model_dump_json().encode())


def _check(app: str, stream: str, raw: str | None, client: str, root: Path) -> streamkeys.Key:
    """The key that admits this publish, or the refusal (an APIError)."""
    conf = settings()
    key, code = streamkeys.check(conf.node_key, app, stream, raw, time.time())
    issued = livestore.key(key.kid) if key is not None else None
    if code == "missing_key":
        raise APIError(403, "missing_key", "the publish URL has no key (k=)")
    if code == "malformed_key" or key is None:
        raise APIError(403, "malformed_key", "the key is not one this cluster issues")
    if code == "bad_key":
        if issued is not None and (issued["app"], issued["stream"]) != (app, stream):
            raise APIError(403, "key_for_other_stream", "this key was issued for another stream")
        if issued is not None and issued["node_id"] != conf.node_id:
            raise APIError(403, "key_for_other_origin", "this key publishes at another origin")
        raise APIError(403, "bad_key", "the key does not match this stream at this origin")
    if code == "key_expired":
        raise APIError(403, "key_expired", "the key has expired")
    if issued is None:
        raise APIError(403, "unknown_key", "no tracker issued this key")
    if issued["banned"] is not None:
        raise APIError(403, "key_banned", "an operator banned this key")
    holder = livesessions.holder(root, app, stream, key.role)
    if holder is not None and holder.client != client and not holder.relay:
        raise APIError(409, "already_live", "the stream's publisher of this role is live already")
    return key


def _relay(app: str, stream: str, nonce: str, client: str, root: Path) -> livesessions.Session:
    """The session of the agent's relay (``liverelay``) publishing for a primary that ended,
    or the refusal."""
    request = liverelay.admits(root, streamkeys.rtmp_name(app, stream), nonce)
    if request is None:
        raise APIError(403, "bad_relay", "not a relay this origin started")
    issued = livestore.key(request.kid)
    if issued is None:
        raise APIError(403, "unknown_key", "no tracker issued this key")
    if issued["banned"] is not None:
        raise APIError(403, "key_banned", "an operator banned this key")
    holder = livesessions.holder(root, app, stream, "primary")
    if holder is not None and holder.client != client:
        raise APIError(409, "already_live", "the stream's primary is live again")
    liverelay.write(root, replace(request, nonce=""))  # used: it admits no other publish
    # a session of its own (its start now): a heartbeat collected before it must not end it
    return livesessions.Session(app, stream, "primary", request.kid, client, time.time(), relay=True)


def _take_back(root: Path, app: str, stream: str, client: str) -> None:
    """A primary publishes again: its stream's relay is cancelled (asked for or running),
    a running one's publisher dropped, and the primary gets the stream (at its first
    keyframe, nginx-rtmp's HLS opening a fragment there)."""
    liverelay.cancel(root, streamkeys.rtmp_name(app, stream))
    holder = livesessions.holder(root, app, stream, "primary")
    if holder is None or not holder.relay or holder.client == client:
        return
    livesessions.drop(root, holder.client)  # its on_publish_done then finds no session
    http, stat_url = requests.Session(), settings().rtmp_stat_url
    try:
        livesessions.drop_publisher(http, stat_url, holder)
    except requests.RequestException as err:
        current_app.logger.warning("cannot drop the relay of %s: %s", holder.name, err)
    # the primary is admitted once the relay is closed: nginx-rtmp closes a dropped
    # publisher at the end of its event cycle, which may come after this answer, and its
    # live module would then refuse the primary as a second publisher. (Its HLS module
    # has restored the stream's numbering for the primary already, before this hook: the
    # relay's last fragment and the primary's first share a media sequence number, which
    # the player page lets hls.js go past.)
    if not livesessions.wait_gone(http, stat_url, holder.client):
        current_app.logger.warning("the relay of %s is still listed after its drop", holder.name)
    current_app.logger.info("%s: the primary takes the stream back from its relay", holder.name)


@bp.post("/rtmp/publish")
@api.validate(resp=answers("HTTP_200", also=(409,)), security={})
def on_publish() -> ResponseReturnValue:
    """nginx-rtmp's ``on_publish``: 200 admits the publisher, 4xx refuses it."""
    _from_nginx()
    root = _sessions_dir()
    conf = settings()
    form = request.form
    name, client = form.get("name", ""), form.get("clientid", "")
    parsed = streamkeys.split_rtmp_name(name)
    app, stream = parsed or (name.partition(".")[0][:64], name.partition(".")[2][:64])
    try:
        if parsed is None or not livesessions.valid_client(client):
            raise APIError(400, "invalid_stream", "not a stream name of this cluster (<app>.<stream>)")
        nonce = form.get("relay")
        if nonce is not None:
            session = _relay(app, stream, nonce, client, root)
        else:
            key = _check(app, stream, form.get("k"), client, root)
            session = livesessions.Session(app, stream, key.role, key.kid, client, time.time())
    except APIError as refusal:
        current_app.logger.warning(
            "refused publish of %r from %s: %s", name[:140], form.get("addr", "?"), refusal.code
        )
        try:
            livestore.log(app, stream, conf.node_id, "refused", refusal.code, client=client[:64])
        except pymysql.MySQLError as err:
            current_app.logger.error("cannot log a refused publish: %s", err)
        raise
    if session.role == "primary" and not session.relay:
        _take_back(root, app, stream, client)
    livesessions.save(root, session)
    event = "relay" if session.relay else "publish"
    livestore.log(app, stream, conf.node_id, event, kid=session.kid, role=session.role, client=client)
    _push("start", session)
    current_app.logger.info("%s %s as %s (client %s)", event, session.name, session.role, client)
    return jsonify(status="ok")


@bp.post("/rtmp/publish_done")
@api.validate(resp=answers("HTTP_200"), security={})
def on_publish_done() -> ResponseReturnValue:
    """nginx-rtmp's ``on_publish_done``: the publisher left or was dropped. Also sent for a
    publisher nginx refused after ``on_publish`` admitted it; its client id has no session
    unless it is the one admitted."""
    _from_nginx()
    root = _sessions_dir()
    session = livesessions.drop(root, request.form.get("clientid", ""))
    if session is not None:
        if session.role == "primary" and not session.relay:
            liverelay.ask(root, session)  # dual hot: fed from the backup while it is away
        _push("end", session)
        try:
            livestore.log(
                session.app,
                session.stream,
                settings().node_id,
                "end",
                role=session.role,
                client=session.client,
            )
        except pymysql.MySQLError as err:
            current_app.logger.error("cannot log the end of %s: %s", session.name, err)
        current_app.logger.info("end of %s (%s, client %s)", session.name, session.role, session.client)
    return jsonify(status="ok")


@bp.post("/rtmp/record_done")
@api.validate(resp=answers("HTTP_200"), security={})
def on_record_done() -> ResponseReturnValue:
    """nginx-rtmp's ``on_record_done``: a part is closed (cut, or its publisher left). It is
    moved into the agent's ``ready/`` under its publisher's key id (a relay's: its
    primary's); the agent keeps it or not (``liverecord``). Nothing here waits on the
    database."""
    _from_nginx()
    root = settings().live_record_dir
    if not root:
        raise APIError(503, "live_disabled", "this node does not record (no LIVE_RECORD_DIR)")
    form = request.form
    path = Path(form.get("path", ""))
    key = streamkeys.parse(form.get("k"))
    # a relay (dual hot) records the span it feeds under its primary's key id: only a
    # publisher on_publish admitted with a relay nonce carries relay= (others are refused)
    relayed = form.get("kid", "") if "relay" in form and key is None else ""
    kid = key.kid if key is not None else relayed
    if path.parent != Path(root) or liverecord.PART.fullmatch(path.name) is None:
        current_app.logger.warning("record_done for a path that is no part here: %r", str(path)[:200])
        return jsonify(status="ignored")
    if streamkeys.KID_RE.fullmatch(kid) is None:  # not a publisher the shim admitted
        path.unlink(missing_ok=True)
        return jsonify(status="dropped")
    ready = liverecord.ready_dir(root)
    ready.mkdir(mode=0o770, exist_ok=True)
    try:
        os.replace(path, ready / f"{kid}.{path.name}")
    except FileNotFoundError:
        return jsonify(status="gone")
    return jsonify(status="ok")
