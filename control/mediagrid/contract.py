"""The HTTP API contract: the models requests are validated with, and the OpenAPI document
generated from them (spectree), served by the tracker at ``/api/v1/openapi.json``.

Each route declares its query, body and answers with ``@api.validate(...)``; the view
validates with the same models (``parse_query``, ``parse_json``) at the point where the
check belongs, so credentials are still checked before a cluster report or a listing's
``limit``. spectree's own request wrapper is left out (``_DocumentOnly``): it costs about
60 µs a request, a fifth of the tracker's lookup, and it would answer before the view's
authentication. Names are checked by :mod:`mediagrid.names`, whose patterns the document
shows; every refusal is an :class:`~mediagrid.errors.APIError` with a registered code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from flask import Flask, current_app, request
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from spectree import Response, SecurityScheme, SecuritySchemeData, SpecTree
from spectree.models import InType, SecureType
from spectree.plugins.flask_plugin import FlaskPlugin

from . import names
from .errors import APIError


def _int_check(low: int, high: int | str, code: str, what: str) -> Callable[[object], int]:
    """names.check_int for a query argument; ``high`` may name the setting that bounds it."""

    def check(raw: object) -> int:
        top = current_app.config[high] if isinstance(high, str) else high
        return names.check_int(str(raw), low, top, code, what)

    return check


def _integer(low: int, high: int) -> WithJsonSchema:
    return WithJsonSchema({"type": "integer", "minimum": low, "maximum": high})


def _name(max_len: int) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "pattern": names.NAME_RE.pattern, "minLength": 1, "maxLength": max_len}
    )


# Names are checked by mediagrid.names (codes and messages), and documented with its patterns.
AppName = Annotated[
    str, AfterValidator(names.check_app), WithJsonSchema({"type": "string", "pattern": names.APP_RE.pattern})
]
UserName = Annotated[str, AfterValidator(names.check_user), _name(names.USER_MAX)]
FileId = Annotated[str, AfterValidator(names.check_file_id), _name(names.FILE_ID_MAX)]
GroupName = Annotated[str, WithJsonSchema({"type": "string", "pattern": names.GROUP_RE.pattern})]
Binary = Annotated[bytes, WithJsonSchema({"type": "string", "format": "binary"})]
# The documented maxima of count and ttl are the defaults of ID_MAX_BATCH and LINK_MAX_TTL.
Limit = Annotated[int, BeforeValidator(_int_check(1, 10000, "invalid_limit", "limit")), _integer(1, 10000)]
Count = Annotated[
    int, BeforeValidator(_int_check(1, "ID_MAX_BATCH", "invalid_count", "count")), _integer(1, 1000)
]
Ttl = Annotated[
    int, BeforeValidator(_int_check(1, "LINK_MAX_TTL", "invalid_ttl", "ttl")), _integer(1, 604800)
]

# Path parameters take their schema from here (spectree documents them as plain strings).
PATH_PARAMETERS: dict[str, Any] = {"app": AppName, "user": UserName, "file_id": FileId}

M = TypeVar("M", bound=BaseModel)


# -- requests -------------------------------------------------------------------------------


class StoragesQuery(BaseModel):
    app: AppName
    user: UserName


class ListQuery(BaseModel):
    after: str = ""
    limit: Limit = 1000


class IdsQuery(BaseModel):
    count: Count = 1


class LinkQuery(BaseModel):
    ttl: Ttl = 3600


class PutQuery(BaseModel):
    filename: str = Field("", description="the client's file name: extension and content type")
    overwrite: str = Field("0", json_schema_extra={"enum": ["0", "1"]})


class PostQuery(PutQuery):
    file_id: FileId | None = Field(None, description="the id to store under; generated if absent")


class UploadForm(BaseModel):
    file: Binary
    file_id: FileId | None = None


class PlaybackQuery(BaseModel):
    expires: int | None = None
    sig: str | None = None
    token: str | None = None


class HealthQuery(BaseModel):
    strict: str | None = Field(None, description="answer 503 while MariaDB is down")


class Body(BaseModel):
    """A JSON request body; ``invalid_code`` is the error code of a missing or mistyped field."""

    invalid_code: ClassVar[str]


B = TypeVar("B", bound=Body)


class LiveSession(BaseModel):
    """One publisher on an origin, as its hooks admitted it and nginx-rtmp measures it."""

    model_config = ConfigDict(strict=True)

    app: str
    stream: str
    role: Literal["primary", "backup"]
    client: str = Field(description="nginx-rtmp's client id on the origin")
    started: float
    bw_in: int = Field(default=0, description="ingest bits per second")
    fps: float = 0.0
    width: int = 0
    height: int = 0
    viewers: int = Field(
        default=0,
        description="HLS viewers through the edges (play sessions that fetched a playlist in"
        " the last 5 s) and RTMP players on the edges that pull the stream from this origin",
    )
    edges: list[str] = Field(
        default_factory=list,
        description="the edges (their addresses) that pull an RTMP copy of the stream from this origin",
    )


class LiveEvent(Body):
    """An origin's hook, pushed to every tracker at once: a publisher started or ended."""

    model_config = ConfigDict(strict=True)
    invalid_code: ClassVar[str] = "invalid_report"

    node_id: str
    event: Literal["start", "end"]
    at: float
    session: LiveSession


class RelayAsk(Body):
    """An origin whose primary publisher ended asks where the stream's backup is live."""

    model_config = ConfigDict(strict=True)
    invalid_code: ClassVar[str] = "invalid_report"

    node_id: str
    app: str = Field(max_length=64)
    stream: str = Field(max_length=64)


class RelaySource(BaseModel):
    source: str = Field(description="the backup's RTMP URL, for the origin's relay to play")


class PublishQuery(BaseModel):
    user: UserName
    record: str = Field("0", json_schema_extra={"enum": ["0", "1"]})
    snapshot_every: int | None = Field(
        None, ge=0, le=86400, description="seconds between snapshots (0: none; unset: the app's)"
    )


class SnapshotsQuery(BaseModel):
    limit: int = Field(100, ge=1, le=1000)


class BanQuery(BaseModel):
    kid: str = Field("", description="only this key (its id, as the stream's events list it)")


RENDITION = Field(
    "",
    pattern=r"^([0-9]{3,4}p)?$",
    description="a lower rendition (a ladder rung, e.g. 480p) transcoded while it is watched;"
    " unset: the stream as published",
)


class RenditionQuery(BaseModel):
    rendition: str = RENDITION
    avoid: str = Field(
        "",
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]*$",
        description="an origin (node id) not to play from: the stream's other live publisher"
        " (dual hot streams), for a player whose origin stopped answering; 404 no_backup"
        " when no other origin carries the stream live",
    )


class PlayQuery(RenditionQuery):
    token: str = ""


class Report(Body):
    """A storage node's join or heartbeat. ``heal_source`` came after the first agents,
    so a report without it is still valid."""

    model_config = ConfigDict(strict=True)
    invalid_code: ClassVar[str] = "invalid_report"

    node_id: str
    group: GroupName
    url: str
    free: int
    total: int
    reserve: int
    load: float
    heal_pending: int
    heal_source: int = Field(0, description="heals this node owes its group peers")
    seq: int = Field(
        description="the node's report counter (its clock in ns): a tracker takes only newer reports"
    )
    rtmp_url: str = Field("", description="the node's RTMP origin (rtmp://address:port), if it is one")
    live: list[LiveSession] | None = Field(
        None, description="the live streams the node carries; null: unknown this time (keep the last)"
    )

    @model_validator(mode="after")
    def _group_and_url(self) -> Report:
        names.check_group(self.group)
        if not self.url.startswith(("http://", "https://")):
            raise APIError(400, "invalid_report", "url must be an http(s) URL")
        return self


class QosReport(Body):
    """What the player page measured while it played a video (``POST /api/v1/qos``): sent
    once after the first frame and once when the page goes away, both under the view's id,
    so a view is one row holding its latest numbers."""

    model_config = ConfigDict(strict=True)
    invalid_code: ClassVar[str] = "invalid_qos"

    src: str = Field(
        min_length=1,
        max_length=2048,
        description="the HLS URL (or its path) the player played, as the media API gave it: its token"
        " stands for the viewer's right to report",
    )
    first_frame_ms: float | None = Field(
        default=None, ge=0, le=600_000, description="navigation start to the first frame shown; null if none"
    )
    stalls: int = Field(default=0, ge=0, le=100_000, description="times playback waited for data")
    stall_ms: float = Field(default=0, ge=0, le=86_400_000, description="the stalls' total length")
    switches: int = Field(default=0, ge=0, le=100_000, description="quality (rendition) switches")
    errors: int = Field(default=0, ge=0, le=100_000, description="player errors, fatal or not")
    view: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{16,64}$",
        description="the view's random id (one per page load): a view's later reports update its"
        " row instead of adding one; without it each report is a row of its own",
    )
    event: Literal["first_frame", "end"] | None = Field(
        default=None, description="what made the player report: the first frame shown, or the page going away"
    )


@functools.cache
def _query_fields(model: type[BaseModel]) -> tuple[tuple[str, bool], ...]:
    return tuple((name, field.is_required()) for name, field in model.model_fields.items())


def parse_query(model: type[M]) -> M:
    """The query arguments as ``model``; a missing required name is checked as empty."""
    args = request.args
    data = {}
    for name, required in _query_fields(model):
        value = args.get(name)
        if value is not None:
            data[name] = value
        elif required:
            data[name] = ""
    return model.model_validate(data)


def parse_json(model: type[B]) -> B:
    """The JSON object body as ``model``: ``invalid_json`` if it is not an object, else the
    model's ``invalid_code`` for a missing or mistyped field."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser's stack: still the caller's error
        body = None
    if not isinstance(body, dict):
        raise APIError(400, "invalid_json", "body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as err:
        field = ".".join(str(p) for p in err.errors()[0]["loc"])
        raise APIError(400, model.invalid_code, f"field {field!r} is missing or of the wrong type") from None


# -- answers --------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class FileInfo(BaseModel):
    app: str = ""
    user: str = ""
    file_id: str = ""
    group: str = ""
    size: int = 0
    sha256: str = ""
    content_type: str = ""


class Stored(FileInfo):
    file_id: str
    size: int
    sha256: str


class Listed(FileInfo):
    file_id: str
    size: int


class Listing(BaseModel):
    app: str
    user: str
    files: list[Listed]


class Storage(BaseModel):
    node_id: str
    url: str


class Storages(BaseModel):
    app: str
    user: str
    group: str
    storages: list[Storage]


class Ids(BaseModel):
    ids: list[Annotated[int, Field(ge=1)]]


class Link(FileInfo):
    url: str
    path: str
    expires: int
    file_id: str
    group: str
    size: int


class MediaJob(BaseModel):
    kind: str = Field(description="probe, hls:source, ...")
    state: str = Field(json_schema_extra={"enum": ["queued", "running", "done", "failed", "cancelled"]})
    progress: float
    attempts: int
    node_id: str | None
    code: str | None
    waiting: str | None = Field(
        default=None,
        description="why a queued job waits: queue (jobs before it), app_max_jobs or app_cpu_day"
        " (its app is at a media quota)",
    )


class Pending(BaseModel):
    state: str = Field(json_schema_extra={"enum": ["queued"]})
    name: str = Field(description="the file asked for, relative to the video's renditions")
    retry_after: int = Field(description="seconds to wait before asking again (also Retry-After)")


class Rendition(BaseModel):
    name: str = Field(description="source (the upload's streams, copied) or a rung such as 720p")
    state: str = Field(json_schema_extra={"enum": ["queued", "running", "done", "failed", "cancelled"]})
    progress: float
    code: str | None


class Media(BaseModel):
    app: str
    user: str
    file_id: str
    state: str = Field(
        description="none: the file has no media processing (uploaded before the pipeline)",
        json_schema_extra={"enum": ["none", "queued", "processing", "ready", "failed", "not_media"]},
    )
    code: str | None = Field(description="why the file failed or is not media (a stable code)")
    message: str | None
    info: dict[str, Any] | None = Field(description="ffprobe's reading: container, duration, video, audio")
    renditions: list[Rendition] = Field(description="HLS renditions: source (copied) and the ladder's rungs")
    jobs: list[MediaJob]
    hls: str | None = Field(
        description="the master playlist's URL (token in the path), once a rendition plays"
    )
    poster: str | None
    sprite: str | None
    thumbnails_vtt: str | None = Field(description="a WebVTT track of sprite tiles, for scrubbing previews")
    expires: int | None = Field(default=None, description="when the URLs stop working (Unix time)")
    player: str | None = Field(
        default=None,
        description="the cluster's player page for this video (/player/#src=<hls>, the URL in the fragment,"
        " which never reaches a server log)",
    )


class GroupState(BaseModel):
    name: str
    state: str = Field(json_schema_extra={"enum": ["ok", "degraded", "down"]})
    members: list[dict[str, Any]]


class Groups(BaseModel):
    offline_after: float = 0
    groups: list[GroupState]


class Health(BaseModel):
    service: str
    version: str
    status: str
    db: str


class Accepted(BaseModel):
    """A join ("joined", with the heartbeat period) or a heartbeat ("ok")."""

    status: str
    heartbeat_interval: float = 0


def answers(*bare: str, also: tuple[int, ...] = (), common: bool = True, **models: Any) -> Response:
    """A route's answers: ``bare`` statuses without a JSON body, ``models`` as
    ``HTTP_200=Model``, and the error body for ``also`` and (``common``) 400, 401, 403,
    404 and 503."""
    statuses = (*((400, 401, 403, 404, 503) if common else ()), *also)
    return Response(*bare, **{**{f"HTTP_{s}": ErrorBody for s in statuses}, **models})


# -- the document ---------------------------------------------------------------------------


class _DocumentOnly(FlaskPlugin):
    """spectree's Flask backend for documents only: the views validate (see above), and the
    routes documented are those of every service (``document`` sets ``spectree.app``)."""

    def get_current_app(self) -> Flask:
        return self.spectree.app

    def validate(self, func: Callable[..., Any], *spec: Any, **kwargs: Any) -> Any:
        return func(**kwargs)


def _header_key(header: str) -> SecuritySchemeData:
    return SecuritySchemeData(type=SecureType.API_KEY, name=header, field_in=InType.HEADER)


api = SpecTree(
    backend=_DocumentOnly,
    title="mediagrid",
    version="1",
    openapi_version="3.1.0",
    description=(
        "Distributed media store. Apps authenticate with signed requests (X-MG-App, "
        "X-MG-Timestamp, X-MG-Nonce, X-MG-Content-SHA256, X-MG-Signature) or a bearer "
        "token (mg2.<app>.<expires>.<scope>.<sig>); "
        "playback URLs may carry ?expires=&sig=. Storage nodes sign with the cluster "
        'secret (X-MG-Node). Errors are {"error": {"code", "message"}}.'
    ),
    security_schemes=[
        SecurityScheme(name="token", data=SecuritySchemeData(type=SecureType.HTTP, scheme="bearer")),
        SecurityScheme(name="signedApp", data=_header_key("X-MG-Signature")),
        SecurityScheme(name="clusterNode", data=_header_key("X-MG-Node")),
    ],
    security={"token": [], "signedApp": []},
    validation_error_status=400,
    validation_error_model=ErrorBody,
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
)


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI document of every service's routes."""
    from . import gateway, idservice, live, livehooks, ondemand, qos, storage, tracker, web

    whole = Flask("mediagrid.contract")
    blueprints = (
        tracker.bp,
        ondemand.bp,
        qos.bp,
        live.bp,
        idservice.bp,
        storage.bp,
        livehooks.bp,
        gateway.bp,
    )
    for bp in (web.health_blueprint("contract"), *blueprints):
        whole.register_blueprint(bp)
    api.app = whole
    spec: dict[str, Any] = api.spec
    for item in spec["paths"].values():
        for op in item.values():
            for param in op.get("parameters", []):
                if param["in"] == "path" and param["name"] in PATH_PARAMETERS:
                    param["schema"] = TypeAdapter(PATH_PARAMETERS[param["name"]]).json_schema()
            if op["operationId"].startswith(("put__api_v1_files", "post__api_v1_files")):
                # uploads take the raw bytes as the body too (spectree has no model for those)
                body = op.setdefault("requestBody", {}).setdefault("content", {})
                body["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    # an app proves itself with a token or a signature: either one (spectree writes both)
    spec["security"] = [{name: []} for name in spec["security"][0]]
    return spec
