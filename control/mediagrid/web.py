"""The application factory every mediagrid service is built with.

Configuration comes from :mod:`mediagrid.config` (defaults, file, ``MEDIAGRID_*`` env), then
``test_config``, and is checked before the app exists (a bad value fails the start with a
message naming the setting); requests read it typed through :func:`settings`, and Flask's
``app.config`` holds the same checked values. JSON error handlers, the database teardown
and ``/api/v1/health`` are the same everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pymysql
from flask import Blueprint, Flask, current_app, jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask.typing import ResponseReturnValue
from spectree import Response
from werkzeug.middleware.proxy_fix import ProxyFix

from . import __version__, config, db
from .contract import Health, HealthQuery, api
from .errors import register_error_handlers

_SETTINGS = "mediagrid_settings"


def settings(app: Flask | None = None) -> config.Settings:
    """The settings of ``app`` (by default the current one), checked when it was created."""
    checked: config.Settings = (current_app if app is None else app).extensions[_SETTINGS]
    return checked


def health_blueprint(service: str) -> Blueprint:
    bp = Blueprint(f"health_{service}", __name__)

    @bp.get("/api/v1/health")
    @api.validate(query=HealthQuery, resp=Response(HTTP_200=Health, HTTP_503=Health), security={})
    def health() -> ResponseReturnValue:
        """Service health; with ?strict=1, 503 while MariaDB is down."""
        body: dict[str, Any] = {"service": service, "version": __version__, "status": "ok"}
        try:
            with db.get_db().cursor() as cur:
                cur.execute("SELECT 1")
            body["db"] = "ok"
        except pymysql.MySQLError:
            db.discard()
            body["db"] = "unavailable"
            if request.args.get("strict"):
                body["status"] = "degraded"
                return jsonify(body), 503
        return jsonify(body)

    return bp


def create_service(
    service: str, blueprints: Iterable[Blueprint], test_config: dict[str, Any] | None = None
) -> Flask:
    app = Flask(f"mediagrid.{service}")
    app.config.update(config.read())
    if test_config:
        app.config.update(test_config)
    checked = config.Settings.from_mapping(app.config)
    app.config.update(checked.as_config())
    app.extensions[_SETTINGS] = checked
    app.config["SERVICE"] = service
    # The services listen on loopback behind the node's nginx, which sets X-Forwarded-Proto
    # to the scheme the client used (any value the client sent is replaced): URLs the
    # services build (request.host_url) keep https when the client came over TLS.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=0, x_proto=1, x_host=0, x_port=0, x_prefix=0)  # type: ignore[method-assign]
    assert isinstance(app.json, DefaultJSONProvider)  # Flask's own, unless an app sets another
    app.json.sort_keys = False
    if not app.debug:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    register_error_handlers(app)
    db.init_app(app)
    app.register_blueprint(health_blueprint(service))
    for bp in blueprints:
        app.register_blueprint(bp)
    return app
