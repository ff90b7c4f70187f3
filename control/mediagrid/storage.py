"""Storage shim: atomic uploads into the group volume, downloads via nginx, deletes.

Every upload gets a fresh storage id, and its path in the group volume derives from it. A
raw-body upload (PUT, or POST of the bytes) streams straight to that path, recorded as in
flight in MariaDB first (``inflight``); a multipart upload, whose name arrives inside the
body, streams into a temporary file renamed into place. Either way the file is hashed and
counted as it arrives, fsynced, and only then recorded in ``files``; nothing refers to its
path before that. Any failure removes the file, so an upload is either complete and
recorded or absent (and what a killed shim leaves, the agents remove).
"""

from __future__ import annotations

import mimetypes
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
from flask import Blueprint, Flask, Request, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import ClientDisconnected

from . import auth, files, identity, inflight, livehooks, media, names, quotas, volume
from .contract import FileInfo, PostQuery, PutQuery, Stored, UploadForm, answers, api
from .db import CommitUnknown, get_db, transaction
from .errors import APIError
from .idclient import IdClient
from .schema import FILE_ID_LENGTH
from .spool import Spool
from .web import create_service, settings

bp = Blueprint("storage", __name__)
_GENERIC_TYPES = {"", "application/octet-stream", "application/x-www-form-urlencoded"}


def _data_dir() -> Path:
    return Path(settings().data_dir)


_free: dict[Path, tuple[float, int]] = {}
FREE_TTL = 0.5  # seconds a statvfs of the group volume (a round trip to every brick) is reused


def free_bytes(path: Path) -> int:
    now = time.monotonic()
    cached = _free.get(path)
    if cached is not None and now - cached[0] < FREE_TTL:
        return cached[1]
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    _free[path] = (now, free)
    return free


class ShimRequest(Request):
    """Spools multipart file parts straight onto the group volume, not into /tmp."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> Any:
        spool = _new_spool(total_content_length)
        self.environ.setdefault("mediagrid.spools", []).append(spool)
        return spool


def _check_size(declared: int | None) -> None:
    """413 for a body declared larger than MAX_UPLOAD_BYTES, before any of it is read."""
    largest = settings().max_upload_bytes
    if declared is not None and declared > largest:
        _drain_body()
        raise APIError(413, "file_too_large", f"an upload may hold at most {largest} bytes")


def _new_spool(expected: int | None, final: Path | None = None) -> Spool:
    """A spool for the body: at ``final`` itself when given, else a temporary file."""
    root = _data_dir()
    room = free_bytes(root) - settings().reserve_bytes
    if room <= 0 or (expected is not None and expected > room):
        raise APIError(507, "insufficient_storage", "the group is at its space reserve")
    largest = settings().max_upload_bytes
    try:
        return (
            Spool(final, room, in_place=True, max_size=largest)
            if final
            else Spool.temporary(root, room, max_size=largest)
        )
    except OSError as err:
        current_app.logger.error("cannot write to the group volume %s: %s", root, err)
        raise APIError(503, "storage_unavailable", "this node cannot write to its group volume") from err


def _content_type(declared: str | None, *names_: str) -> str:
    declared = (declared or "").split(";")[0].strip().lower()
    if declared not in _GENERIC_TYPES and "/" in declared and not declared.startswith("multipart/"):
        return declared[:127]
    for name in names_:
        guess = mimetypes.guess_type(name)[0] if name else None
        if guess:
            return guess
    return "application/octet-stream"


def _stream_body(spool: Spool) -> None:
    chunk = settings().upload_chunk
    stream = request.stream
    try:
        while True:
            data = stream.read(chunk)
            if not data:
                break
            spool.write(data)
    except ClientDisconnected:
        raise APIError(400, "incomplete_body", "the client sent less than Content-Length") from None
    except OSError as err:  # connection reset mid-body
        raise APIError(400, "incomplete_body", f"reading the body failed: {err}") from None
    expected = request.content_length
    if expected is not None and spool.size != expected:
        raise APIError(400, "incomplete_body", "the client sent less than Content-Length")


DRAIN_SECONDS = 20.0


def _drain_body() -> None:
    """Read and drop the rest of a refused body, for at most DRAIN_SECONDS, so the error
    answer reaches the client. A shim that closes with body unread resets the connection,
    and nginx, still sending the body, then answers 502 instead of our 507: with the first
    64 MiB drained, a refused 256 MiB PUT got 502 in 6 of 30 tries."""
    end = time.monotonic() + DRAIN_SECONDS
    try:
        while time.monotonic() < end and request.stream.read(1 << 20):
            pass
    except (OSError, ClientDisconnected):
        pass


def _remove_stored(rel: str, sid: int) -> None:
    """Remove a stored object a row named (replaced or deleted) and its renditions: only
    ever a storage path under the volume (``volume``); anything else is logged and left
    alone."""
    try:
        volume.remove(_data_dir(), rel, sid)
        volume.remove_renditions(_data_dir(), rel, sid)
    except (volume.UnsafePath, OSError) as err:
        current_app.logger.error("not removing %r: %s", rel, err)


def _check_new_id(app: str, user: str, file_id: str, overwrite: bool, taken: str) -> str:
    names.check_file_id(file_id, FILE_ID_LENGTH)
    if not overwrite and files.exists(app, user, file_id):
        raise APIError(409, "file_exists", taken)
    return file_id


@dataclass
class _Upload:
    """One upload as it goes, and what to undo if it fails."""

    sid: int
    file_id: str = ""
    rel: str = ""  # its path in the group volume
    ctype: str = ""
    spool: Spool | None = None
    in_flight: bool = False  # recorded in ``uploads`` (a raw body written in place)
    final: Path | None = None  # once set, the file may be at its place in the group volume

    def keep(self) -> None:
        """Leave the file and its in-flight row as they are: it may be recorded."""
        self.spool, self.final, self.in_flight = None, None, False

    def name(self, file_id: str | None, filename: str, declared: str | None) -> None:
        """The file id (generated from the storage id if none was given), the stored
        object's path (from its storage id and extension) and its content type."""
        self.file_id = file_id or f"{self.sid:016x}"
        ext = names.extension(self.file_id) or names.extension(filename)
        self.ctype = _content_type(declared, self.file_id, filename)
        if not ext and self.ctype != "application/octet-stream":
            ext = names.extension("x" + (mimetypes.guess_extension(self.ctype) or ""))
        self.rel = names.storage_path(self.sid, ext)


def _receive_multipart(up: _Upload, app: str, user: str, file_id: str | None, overwrite: bool) -> None:
    """A multipart body: ShimRequest spooled its file part into a temporary file; its
    name and its file id may arrive inside the body."""
    upload = request.files.get("file")
    for extra in request.environ.get("mediagrid.spools", []):
        if upload is None or extra is not upload.stream:
            extra.discard()
    if upload is None:
        raise APIError(400, "missing_file", "multipart upload needs a 'file' part")
    stream: object = upload.stream
    assert isinstance(stream, Spool)  # ShimRequest spools every file part
    up.spool = stream
    if file_id is None and request.form.get("file_id"):
        file_id = _check_new_id(app, user, request.form["file_id"], overwrite, "a file with this id exists")
    up.name(file_id, request.args.get("filename", "") or upload.filename or "", upload.mimetype)


def _receive_raw(up: _Upload, file_id: str | None) -> None:
    """A raw body: its path is known before the body, so it is written in place, recorded
    as in flight."""
    up.name(file_id, request.args.get("filename", ""), request.headers.get("Content-Type"))
    conf = settings()
    with get_db().cursor() as cur:
        inflight.begin(cur, up.sid, conf.group, up.rel, conf.node_id)
    up.in_flight = True
    up.spool = _new_spool(request.content_length, _data_dir() / up.rel)
    _stream_body(up.spool)


def _identity(app: str, user: str, up: _Upload, spool: Spool) -> identity.Identity:
    """Who the stored object is, kept with it (``identity``): what rebuilds its row."""
    conf = settings()
    sha = spool.sha.hexdigest()
    return identity.Identity(app, user, up.file_id, up.sid, conf.group, spool.size, sha, up.ctype)


def _record(app: str, user: str, up: _Upload, spool: Spool, overwrite: bool) -> dict[str, Any] | None:
    """Insert the row and queue its media probe; on overwrite replace it. Returns the
    replaced file's ``sid`` and ``path`` if any.

    A commit whose answer is lost may have happened: the row is re-read before anything is
    undone. If it committed, the upload succeeded; if it cannot be told now, the file
    stays (the client's retry finds it; an upload that did not commit is an orphan that
    an agent removes later, see ``orphans``) and the answer is 503."""
    group = settings().group
    old: dict[str, Any] | None = None
    try:
        with transaction() as cur:
            if up.in_flight:
                inflight.finish(cur, up.sid)
            old = files.take_over(cur, app, user, up.file_id, group) if overwrite else None
            files.insert(
                cur, app, user, up.file_id, up.sid, group, up.rel, spool.size, spool.sha.hexdigest(), up.ctype
            )
            media.queue(cur, up.sid, app, group)
            quotas.enforce(cur, app)
    except CommitUnknown as lost:
        try:
            committed = files.recorded(app, user, up.file_id, up.sid)
        except pymysql.MySQLError as err:
            up.keep()
            current_app.logger.warning("upload %d: commit outcome unknown (%s); file kept", up.sid, err)
            raise APIError(503, "db_unavailable", "the database did not confirm the upload; retry") from lost
        if not committed:
            raise
        current_app.logger.warning("upload %d: the commit's answer was lost (%s); it committed", up.sid, lost)
    return old


def _abandon(sid: int) -> None:
    """Forget a failed upload whose file is removed; if MariaDB cannot take even that, the
    row stays and an agent's sweep removes it later."""
    try:
        with get_db().cursor() as cur:
            inflight.finish(cur, sid)
    except Exception as err:  # the answer the caller gets is the original error
        current_app.logger.warning("upload %d stays recorded as in flight: %s", sid, err)


def _clean_up(up: _Upload, err: BaseException) -> None:
    """Undo a failed upload at whatever step it failed: no file, no temporary, no in-flight
    row left; a refused body is read so the error answer reaches the client."""
    if up.spool is not None:
        up.spool.discard()
    if up.final is not None:
        up.final.unlink(missing_ok=True)
    for extra in request.environ.get("mediagrid.spools", []):
        extra.discard()
    if up.in_flight:
        _abandon(up.sid)
    if isinstance(err, APIError) and err.status in (413, 507):
        _drain_body()


def _upload(app: str, user: str, file_id: str | None) -> ResponseReturnValue:
    names.check_app(app)
    names.check_user(user)
    if file_id is None and request.args.get("file_id"):
        file_id = request.args["file_id"]
    auth.require_app(app, user, file_id, streamed_body=True)
    overwrite = request.args.get("overwrite", "") in ("1", "true", "yes")
    _check_size(request.content_length)
    if file_id is not None:
        _check_new_id(app, user, file_id, overwrite, "a file with this id exists; pass overwrite=1")
    try:
        replaces = files.size_of(app, user, file_id) if overwrite and file_id is not None else None
        quotas.precheck(app, request.content_length, replaces)
    except APIError:
        _drain_body()  # so the refusal reaches a client still sending
        raise
    ids: IdClient = current_app.extensions["mediagrid_idclient"]
    up = _Upload(ids.take())
    try:
        if request.mimetype == "multipart/form-data":
            _receive_multipart(up, app, user, file_id, overwrite)
        else:
            _receive_raw(up, file_id)
        assert up.spool is not None  # both receivers set it or raise
        spool = up.spool
        up.final = _data_dir() / up.rel
        spool.commit(up.final, lambda: identity.attrs(_identity(app, user, up, spool)))
        auth.check_content(spool.sha.hexdigest())  # complete once committed; before any row
        replaced = _record(app, user, up, spool, overwrite)
    except BaseException as err:
        _clean_up(up, err)
        raise
    if replaced:
        _remove_stored(replaced["path"], replaced["sid"])
    conf = settings()
    body = {
        "app": app,
        "user": user,
        "file_id": up.file_id,
        "group": conf.group,
        "node_id": conf.node_id,
        "size": spool.size,
        "sha256": spool.sha.hexdigest(),
        "content_type": up.ctype,
        "path": f"/files/{app}/{user}/{up.file_id}",
        "replaced": replaced is not None,
    }
    return jsonify(body), 201


@bp.put("/api/v1/files/<app>/<user>/<file_id>")
@api.validate(query=PutQuery, resp=answers(HTTP_201=Stored, also=(409, 507)))
def put_file(app: str, user: str, file_id: str) -> ResponseReturnValue:
    """Upload by streaming PUT (storage node); overwrite=1 replaces."""
    return _upload(app, user, file_id)


@bp.post("/api/v1/files/<app>/<user>")
@api.validate(query=PostQuery, form=UploadForm, resp=answers(HTTP_201=Stored, also=(409, 507)))
def post_file(app: str, user: str) -> ResponseReturnValue:
    """Upload with a generated id: raw body or multipart 'file' (storage node)."""
    return _upload(app, user, None)


def _own(app: str, user: str, file_id: str) -> dict[str, Any]:
    files.check_ref(app, user, file_id)
    auth.require_app(app, user, file_id, playback=True)
    row = files.get(app, user, file_id)
    if row["grp"] != settings().group:
        raise APIError(421, "wrong_group", f"the file lives in group {row['grp']}")
    return row


@bp.route("/api/v1/files/<app>/<user>/<file_id>", methods=["GET", "HEAD"])
@api.validate(resp=answers("HTTP_200", "HTTP_206", also=(421,)))
def get_file(app: str, user: str, file_id: str) -> ResponseReturnValue:
    """Download (storage node, via nginx)."""
    return files.accel_response(_own(app, user, file_id))


@bp.delete("/api/v1/files/<app>/<user>/<file_id>")
@api.validate(resp=answers(HTTP_200=FileInfo, also=(421,)))
def delete_file(app: str, user: str, file_id: str) -> ResponseReturnValue:
    """Delete row and file (storage node); 421 if the file lives in another group."""
    row = _own(app, user, file_id)
    if not files.delete(app, user, file_id, row["sid"]):
        raise APIError(404, "file_not_found", "no such file")
    _remove_stored(row["path"], row["sid"])
    return jsonify(deleted=True, **files.describe(row, app, user))


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = create_service("storage", [bp, livehooks.bp], test_config)
    app.request_class = ShimRequest
    conf = settings(app)
    for key in ("group", "node_id", "data_dir"):
        if not getattr(conf, key):
            raise RuntimeError(f"storage shim needs MEDIAGRID_{key.upper()}")
    names.check_group(conf.group)
    app.extensions["mediagrid_idclient"] = IdClient(
        conf.id_service_urls, conf.node_id, conf.node_key, conf.id_prefetch
    )
    return app
