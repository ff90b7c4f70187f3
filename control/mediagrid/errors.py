"""The project's error codes, its error type and the JSON error handlers every service installs.

Every error body is ``{"error": {"code": ..., "message": ...}}`` with a stable code that
clients and tests match on; the HTTP status carries the class of failure. ``REGISTRY`` is
the one list of codes: each with its status and meaning (the README's error table is
checked against it). An :class:`APIError` with a code and status not registered fails
where it is raised.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int  # ANY_STATUS: the status of the HTTP exception it stands for
    meaning: str
    # "service": raised by the services; "http": what the services answer for a Werkzeug
    # HTTP exception of that status; "nginx": nginx's own JSON error pages
    origin: str = "service"


ANY_STATUS = 0

REGISTRY: tuple[ErrorCode, ...] = (
    # names and request values (mediagrid.names, mediagrid.contract)
    ErrorCode("invalid_app", 400, "an app name that is not [a-z0-9][a-z0-9_-]{0,63}"),
    ErrorCode("invalid_user", 400, "a user with `/`, `..`, NUL, spaces, too long or empty"),
    ErrorCode("invalid_file_id", 400, "a file id with `/`, `..`, NUL, spaces, too long or empty"),
    ErrorCode("invalid_group", 400, "a group name that is not [a-z0-9][a-z0-9_-]{0,31}"),
    ErrorCode("invalid_limit", 400, "`limit` of a listing is not an integer from 1 to 10000"),
    ErrorCode("invalid_count", 400, "`count` of ids is not an integer from 1 to `ID_MAX_BATCH`"),
    ErrorCode("invalid_ttl", 400, "`ttl` of a direct link is not an integer from 1 to `LINK_MAX_TTL`"),
    ErrorCode("invalid_json", 400, "a cluster request body that is not a JSON object"),
    ErrorCode("invalid_report", 400, "a join or heartbeat report with a missing or mistyped field"),
    ErrorCode("invalid_qos", 400, "a QoS report with a missing, mistyped or out-of-range field"),
    # uploads
    ErrorCode("incomplete_body", 400, "the body is shorter than Content-Length, or the client went away"),
    ErrorCode("missing_file", 400, "a multipart upload without a `file` part"),
    ErrorCode("content_mismatch", 400, "an upload whose bytes are not what X-MG-Content-SHA256 declares"),
    ErrorCode("file_exists", 409, "the file id is taken and `overwrite=1` was not asked"),
    ErrorCode("wrong_group", 409, "an overwrite of a file that lives in another group"),
    ErrorCode("wrong_group", 421, "a download or delete sent to a node of another group"),
    ErrorCode("insufficient_storage", 507, "the group is at its free-space reserve"),
    ErrorCode("quota_exceeded", 507, "the upload would take the app past its quota of bytes or files"),
    ErrorCode("file_too_large", 413, "an upload body larger than `MAX_UPLOAD_BYTES`"),
    ErrorCode("storage_unavailable", 503, "the storage node cannot write to its group volume"),
    # authentication (mediagrid.auth)
    ErrorCode("missing_credentials", 401, "neither a signature nor a token"),
    ErrorCode("bad_signature", 401, "a request or URL signature that does not match"),
    ErrorCode("bad_token", 401, "a malformed or forged token"),
    ErrorCode(
        "expired_signature", 401, "a signature outside the allowed clock skew, or a URL past its expiry"
    ),
    ErrorCode("expired_token", 401, "a token past its expiry"),
    ErrorCode("token_too_long", 401, "a token expiring more than `TOKEN_MAX_TTL` ahead"),
    ErrorCode("replayed_signature", 401, "a signed request sent again (each signature is accepted once)"),
    ErrorCode(
        "bad_cluster_signature", 401, "a node request not signed with that node's own key, from its address"
    ),
    ErrorCode("node_removed", 403, "a node an operator removed (`mediagrid-admin node remove`)"),
    ErrorCode("stale_report", 409, "a node report not newer than the last one taken (a replay)"),
    ErrorCode(
        "out_of_scope",
        403,
        "credentials used beyond their scope: a playback URL or read-only token for a method other than"
        " GET/HEAD, a token for another user or file-id prefix",
    ),
    ErrorCode("forbidden", 403, "credentials of another app or node (tenants never see each other)", "http"),
    ErrorCode("not_configured", 503, "the server has no cluster secret configured"),
    ErrorCode(
        "bad_qos_source",
        403,
        "a QoS report whose `src` is not an HLS URL of this cluster with a valid token (or one expired"
        " at most `HLS_TTL` ago)",
    ),
    # lookups and state
    ErrorCode("file_not_found", 404, "no such file for this app and user"),
    ErrorCode("unknown_node", 404, "a heartbeat from a node that has not joined"),
    ErrorCode("links_disabled", 503, "the cluster has no direct-link key (`LINK_KEY`)"),
    ErrorCode("bad_link", 403, "an HLS URL whose token does not match or has expired (checked again)"),
    ErrorCode("no_such_rendition", 404, "a rendition file that is not there and is nothing made on demand"),
    ErrorCode("no_such_rung", 404, "an HLS rendition asked for that no source of this size gets"),
    ErrorCode("no_such_time", 404, "a thumbnail asked for past the video's end, or of audio"),
    ErrorCode("bad_time", 400, "a thumbnail asked for without a time in seconds: thumb.jpg?t=12.5"),
    ErrorCode("rendition_failed", 404, "an on-demand rendition or thumbnail that could not be made"),
    ErrorCode("too_many_thumbnails", 429, "a video already has its most thumbnails made on demand"),
    ErrorCode("db_unavailable", 503, "MariaDB is down; nothing was written"),
    ErrorCode("id_service_unavailable", 503, "no id server answered; nothing was written"),
    ErrorCode("no_active_storage", 503, "the user's group has no ACTIVE storage server"),
    ErrorCode("no_writable_group", 503, "no group can take new users now"),
    ErrorCode("internal_error", 500, "a bug: the traceback is in the service's log"),
    # live streaming (mediagrid.live, the origins' publish hooks in mediagrid.livehooks)
    ErrorCode("invalid_stream", 400, "a stream name that is not [A-Za-z0-9][A-Za-z0-9_-]{0,63}"),
    ErrorCode("stream_taken", 409, "a stream name another user of the app publishes under"),
    ErrorCode("live_disabled", 503, "live streaming is not configured (no link key or cluster secret)"),
    ErrorCode("no_origin", 503, "no live origin (storage node with RTMP) is ACTIVE"),
    ErrorCode("unknown_stream", 404, "a play of a stream nobody ever published in this app"),
    ErrorCode("stream_offline", 404, "a play of a stream that is not live now"),
    ErrorCode("token_expired", 403, "a live play URL whose token has expired"),
    ErrorCode("missing_key", 403, "a publish without a stream key (`k=`)"),
    ErrorCode("malformed_key", 403, "a publish with something that is not a stream key"),
    ErrorCode("bad_key", 403, "a publish whose key does not match the stream at that origin"),
    ErrorCode("key_expired", 403, "a publish with a stream key past its expiry"),
    ErrorCode("key_for_other_stream", 403, "a publish with a key issued for another stream"),
    ErrorCode("key_for_other_origin", 403, "a publish with a key issued for another origin"),
    ErrorCode("unknown_key", 403, "a publish with a well-formed key no tracker recorded"),
    ErrorCode("key_banned", 403, "a publish with a key an operator banned"),
    ErrorCode("already_live", 409, "a second publisher of the same stream and role on an origin"),
    ErrorCode("bad_relay", 403, "a relay publish an origin's agent did not start (dual hot streams)"),
    ErrorCode("no_backup", 404, "another origin of a stream was asked for (relay, avoid=) and none is live"),
    ErrorCode("unknown_rendition", 400, "a live rendition that is no ladder rung (`480p`, `360p`, ...)"),
    ErrorCode("no_capacity", 503, "a live rendition its origin has no room to transcode now (media budget)"),
    ErrorCode("rendition_starting", 503, "a live rendition whose first segment is not out yet: ask again"),
    # HTTP errors raised by Flask/Werkzeug, under a code named for their status
    ErrorCode(
        "bad_request", 400, "a malformed request (nginx too: a bad target, `..` above the root)", "http"
    ),
    ErrorCode("unauthorized", 401, "HTTP 401 outside the authentication above", "http"),
    ErrorCode("not_found", 404, "no such route", "http"),
    ErrorCode("method_not_allowed", 405, "the route does not take this method", "http"),
    ErrorCode("request_timeout", 408, "the client was too slow to send its request", "http"),
    ErrorCode("length_required", 411, "a body without a length", "http"),
    ErrorCode("payload_too_large", 413, "a request body too large", "http"),
    ErrorCode("uri_too_long", 414, "a request URI too long", "http"),
    ErrorCode("unsupported_media_type", 415, "a body of a type the route does not take", "http"),
    ErrorCode("headers_too_large", 431, "request headers too large", "http"),
    ErrorCode("http_error", ANY_STATUS, "any other HTTP error Werkzeug raises, with its status", "http"),
    # nginx's own JSON error pages (front and storage nodes)
    ErrorCode("headers_too_large", 400, "request headers over nginx's buffers", "nginx"),
    ErrorCode("https_required", 400, "a plain HTTP request sent to an HTTPS port", "nginx"),
    ErrorCode("link_expired", 410, "a direct link past its expiry", "nginx"),
    ErrorCode("too_many_requests", 429, "more player QoS reports from one address than nginx takes", "nginx"),
    ErrorCode("upstream_unavailable", 502, "the service behind this node is not answering", "nginx"),
    ErrorCode("unavailable", 503, "nginx answers for a service unavailable", "nginx"),
    ErrorCode("upstream_timeout", 504, "the service behind this node timed out", "nginx"),
)

_REGISTERED = {(e.code, e.status) for e in REGISTRY}
_HTTP_CODES = {e.status: e.code for e in REGISTRY if e.origin == "http" and e.status != ANY_STATUS}


class APIError(Exception):
    """An error meant for the caller: HTTP status, stable code, human message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        if (code, status) not in _REGISTERED:
            raise ValueError(f"error code {code!r} with status {status} is not in errors.REGISTRY")
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> tuple[Response, int]:
    return jsonify(error={"code": code, "message": message}), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(err: APIError) -> tuple[Response, int]:
        return error_response(err.status, err.code, err.message)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> tuple[Response, int]:
        status = err.code or 500
        return error_response(status, _HTTP_CODES.get(status, "http_error"), err.description or "")

    @app.errorhandler(Exception)
    def _internal(err: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
