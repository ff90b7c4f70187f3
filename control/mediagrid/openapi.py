"""OpenAPI 3 description of the HTTP API (served by the tracker at /api/v1/openapi.json)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
# File ids and users: these characters, no "..", bounded length (mediagrid.names).
_NAME = {"type": "string", "pattern": "^[A-Za-z0-9._~@+=-]+$", "minLength": 1, "maxLength": 200}
_USER = {**_NAME, "maxLength": 128}


def _p(
    name: str, where: str = "path", schema: dict[str, Any] | None = None, required: bool = True
) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": schema or _NAME}


_APP = _p("app", schema={"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"})
_FILE_PARAMS = [_APP, _p("user", schema=_USER), _p("file_id")]
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
_STORED = {
    "description": "stored",
    "content": {"application/json": {"schema": {**_FILE, "required": ["file_id", "size", "sha256"]}}},
}
_IDS = {
    "type": "object",
    "required": ["ids"],
    "properties": {"ids": {"type": "array", "items": {"type": "integer", "minimum": 1}}},
}
_STORAGES = {
    "type": "object",
    "required": ["app", "user", "group", "storages"],
    "properties": {
        "app": {"type": "string"},
        "user": {"type": "string"},
        "group": {"type": "string"},
        "storages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["node_id", "url"],
                "properties": {"node_id": {"type": "string"}, "url": {"type": "string"}},
            },
        },
    },
}
_LISTING = {
    "type": "object",
    "required": ["app", "user", "files"],
    "properties": {
        "app": {"type": "string"},
        "user": {"type": "string"},
        "files": {"type": "array", "items": {**_FILE, "required": ["file_id", "size"]}},
    },
}
_LINK = {
    "type": "object",
    "required": ["url", "path", "expires", "file_id", "group", "size"],
    "properties": {
        **_FILE["properties"],
        "url": {"type": "string"},
        "path": {"type": "string"},
        "expires": {"type": "integer"},
    },
}
_GROUPS = {
    "type": "object",
    "required": ["groups"],
    "properties": {
        "offline_after": {"type": "number"},
        "groups": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "state", "members"],
                "properties": {
                    "name": {"type": "string"},
                    "state": {"type": "string", "enum": ["ok", "degraded", "down"]},
                    "members": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
}
_REPORT = {
    "type": "object",
    "required": ["node_id", "group", "url", "free", "total", "reserve", "load", "heal_pending"],
    "properties": {
        "node_id": {"type": "string"},
        "group": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"},
        "url": {"type": "string"},
        "free": {"type": "integer"},
        "total": {"type": "integer"},
        "reserve": {"type": "integer"},
        "load": {"type": "number"},
        "heal_pending": {"type": "integer"},
        "heal_source": {"type": "integer", "description": "heals this node owes its group peers"},
    },
}
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


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
            "clusterNode": {"type": "apiKey", "in": "header", "name": "X-MG-Node"},
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
                "parameters": [_p("strict", "query", {"type": "string"}, False)],
                "responses": {
                    "200": {"description": "ok"},
                    "503": {"description": "strict and MariaDB is down"},
                },
            }
        },
        "/api/v1/storages": {
            "get": {
                "summary": "The user's group and its ACTIVE storage servers, best first",
                "parameters": [_p("app", "query", _APP["schema"]), _p("user", "query", _USER)],
                "responses": {"200": _json("group and storages", _STORAGES), **_ERRORS},
            }
        },
        "/api/v1/groups": {
            "get": {
                "summary": "Every group with members, states, capacity, heartbeat age",
                "responses": {"200": _json("groups", _GROUPS), **_ERRORS},
            }
        },
        "/api/v1/ids": {
            method: {
                "summary": "Unique 63-bit ids (served by the id service)",
                "parameters": [
                    _p("count", "query", {"type": "integer", "minimum": 1, "maximum": 1000}, False)
                ],
                "responses": {"200": _json("ids", _IDS), **_ERRORS},
            }
            for method in ("get", "post")
        },
        "/api/v1/files/{app}/{user}": {
            "get": {
                "summary": "List a user's files (tracker)",
                "parameters": [
                    _APP,
                    _p("user", schema=_USER),
                    _p("after", "query", {"type": "string"}, False),
                    _p("limit", "query", {"type": "integer", "minimum": 1, "maximum": 10000}, False),
                ],
                "responses": {"200": _json("files", _LISTING), **_ERRORS},
            },
            "post": {
                "summary": "Upload with a generated id: raw body or multipart 'file' (storage node)",
                "parameters": [
                    _APP,
                    _p("user", schema=_USER),
                    _p("file_id", "query", required=False),
                    _p("filename", "query", {"type": "string"}, False),
                    _p("overwrite", "query", {"type": "string", "enum": ["0", "1"]}, False),
                ],
                "requestBody": {
                    "content": {
                        **_BINARY,
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {
                                    "file": {"type": "string", "format": "binary"},
                                    "file_id": _NAME,
                                },
                            }
                        },
                    }
                },
                "responses": {
                    "201": _STORED,
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
                "requestBody": {"content": _BINARY},
                "responses": {
                    "201": _STORED,
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
                    "421": _ERROR,
                    **_ERRORS,
                },
            },
            "delete": {
                "summary": "Delete row and file (storage node); 421 if the file lives in another group",
                "parameters": _FILE_PARAMS,
                "responses": {"200": _json("deleted", _FILE), "421": _ERROR, **_ERRORS},
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
        "/api/v1/links/{app}/{user}/{file_id}": {
            "get": {
                "summary": (
                    "Mint a direct link (tracker): <prefix>/<group>/<path>?e=<expires>&t=<token>, "
                    "checked and served by nginx alone; 403 if tampered, 410 once expired"
                ),
                "parameters": [
                    *_FILE_PARAMS,
                    _p("ttl", "query", {"type": "integer", "minimum": 1, "maximum": 604800}, False),
                ],
                "responses": {"200": _json("direct link", _LINK), **_ERRORS},
            }
        },
        "/api/v1/cluster/join": {
            "post": {
                "summary": "Storage node joins (cluster secret, signed over the body too)",
                "security": [{"clusterNode": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _REPORT}}},
                "responses": {"200": {"description": "joined"}, **_ERRORS},
            }
        },
        "/api/v1/cluster/heartbeat": {
            "post": {
                "summary": "Storage node heartbeat (cluster secret); 404 before a join",
                "security": [{"clusterNode": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _REPORT}}},
                "responses": {"200": {"description": "ok"}, **_ERRORS},
            }
        },
    },
}
