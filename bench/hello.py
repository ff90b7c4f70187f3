"""Baseline endpoints for the benchmarks: the least a Flask app under gunicorn can do."""

from __future__ import annotations

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue


def create_app() -> Flask:
    app = Flask("hello")

    @app.get("/")
    def hello() -> ResponseReturnValue:
        return jsonify(hello="world")

    @app.get("/ids1000")
    def ids() -> ResponseReturnValue:
        return jsonify(ids=list(range(1, 1001)))

    return app
