"""OpenAPI 3 description of the HTTP API (served by the tracker at /api/v1/openapi.json)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_NAME = {"type": "string", "pattern": "^[A-Za-z0-9._~@+=-]+$", "maxLength": 200}


def _p(
    name: str, where: str = "path", schema: dict[str, Any] | None = None, required: bool = True
) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": schema or _NAME}


_APP = _p("app", schema={"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"})
_FILE_PARAMS = [_APP, _p("user"), _p("file_id")]
_FILE = {
    "type": "object",
    "properties": {
        "app": {"type": "string"},
        "user": {"type": "string"},
        "file_id": {"type": "string"},
        "group": {"type": "string"},
        "size": {"type": "integer"},
        "sha256": {"type": "string"},
        "content_type": {"type": "string"},
    },
}
_ERRORS = {"400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR, "503": _ERROR}

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "mediagrid",
        "version": "1",
        "description": (
            "Distributed media store. Apps authenticate with signed requests (X-MG-App, "
            "X-MG-Timestamp, X-MG-Signature) or a bearer token (mg1.<app>.<expires>.<sig>); "
            "playback URLs may carry ?expires=&sig=. Storage nodes sign with the cluster "
            'secret (X-MG-Node). Errors are {"error": {"code", "message"}}.'
        ),
    },
    "components": {
        "securitySchemes": {
            "token": {"type": "http", "scheme": "bearer"},
            "signedApp": {"type": "apiKey", "in": "header", "name": "X-MG-Signature"},
        },
        "responses": {
            "Error": {
                "description": "error",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["error"],
                            "properties": {
                                "error": {
                                    "type": "object",
                                    "required": ["code", "message"],
                                    "properties": {
                                        "code": {"type": "string"},
                                        "message": {"type": "string"},
                                    },
                                }
                            },
                        }
                    }
                },
            }
        },
    },
    "security": [{"token": []}, {"signedApp": []}],
    "paths": {
        "/api/v1/health": {
            "get": {
                "summary": "Service health",
                "security": [],
                "responses": {"200": {"description": "ok"}},
            }
        },
        "/api/v1/storages": {
            "get": {
                "summary": "The user's group and its ACTIVE storage servers, best first",
                "parameters": [_p("app", "query"), _p("user", "query")],
                "responses": {"200": {"description": "group and storages"}, **_ERRORS},
            }
        },
        "/api/v1/groups": {
            "get": {
                "summary": "Every group with members, states, capacity, heartbeat age",
                "responses": {"200": {"description": "groups"}, **_ERRORS},
            }
        },
        "/api/v1/ids": {
            "get": {
                "summary": "Unique 63-bit ids (served by the id service)",
                "parameters": [
                    _p("count", "query", {"type": "integer", "minimum": 1, "maximum": 1000}, False)
                ],
                "responses": {"200": {"description": "ids"}, **_ERRORS},
            },
        },
        "/api/v1/files/{app}/{user}": {
            "get": {
                "summary": "List a user's files (tracker)",
                "parameters": [
                    _APP,
                    _p("user"),
                    _p("after", "query", required=False),
                    _p("limit", "query", {"type": "integer", "minimum": 1, "maximum": 10000}, False),
                ],
                "responses": {"200": {"description": "files"}, **_ERRORS},
            },
            "post": {
                "summary": "Upload with a generated id: raw body or multipart 'file' (storage node)",
                "parameters": [
                    _APP,
                    _p("user"),
                    _p("file_id", "query", required=False),
                    _p("filename", "query", required=False),
                ],
                "requestBody": {
                    "content": {
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                    }
                },
                "responses": {
                    "201": {
                        "description": "stored",
                        "content": {"application/json": {"schema": _FILE}},
                    },
                    "409": _ERROR,
                    "507": _ERROR,
                    **_ERRORS,
                },
            },
        },
        "/api/v1/files/{app}/{user}/{file_id}": {
            "put": {
                "summary": "Upload by streaming PUT (storage node); overwrite=1 replaces",
                "parameters": [
                    *_FILE_PARAMS,
                    _p("overwrite", "query", {"type": "string", "enum": ["0", "1"]}, False),
                ],
                "requestBody": {
                    "content": {
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                    }
                },
                "responses": {
                    "201": {
                        "description": "stored",
                        "content": {"application/json": {"schema": _FILE}},
                    },
                    "409": _ERROR,
                    "507": _ERROR,
                    **_ERRORS,
                },
            },
            "get": {
                "summary": "Download (storage node, via nginx)",
                "parameters": _FILE_PARAMS,
                "responses": {
                    "200": {"description": "bytes"},
                    "206": {"description": "range"},
                    **_ERRORS,
                },
            },
            "delete": {
                "summary": "Delete row and file (storage node)",
                "parameters": _FILE_PARAMS,
                "responses": {"200": {"description": "deleted"}, **_ERRORS},
            },
        },
        "/files/{app}/{user}/{file_id}": {
            "get": {
                "summary": "Playback through the gateway; Range and mp4 ?start= supported",
                "parameters": [
                    *_FILE_PARAMS,
                    _p("expires", "query", {"type": "integer"}, False),
                    _p("sig", "query", required=False),
                    _p("token", "query", required=False),
                ],
                "responses": {
                    "200": {"description": "bytes"},
                    "206": {"description": "range"},
                    **_ERRORS,
                },
            }
        },
        "/api/v1/cluster/join": {
            "post": {
                "summary": "Storage node joins (cluster secret)",
                "responses": {"200": {"description": "joined"}, **_ERRORS},
            }
        },
        "/api/v1/cluster/heartbeat": {
            "post": {
                "summary": "Storage node heartbeat (cluster secret)",
                "responses": {"200": {"description": "ok"}, **_ERRORS},
            }
        },
    },
}
