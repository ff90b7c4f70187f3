"""The API contract: the OpenAPI document covers every route, the error registry is the
one list of codes (every raise uses it, the README's table matches it)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient

from mediagrid import contract, names
from mediagrid.errors import ANY_STATUS, REGISTRY, APIError

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "control" / "mediagrid"


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_every_route_of_every_service_is_documented(services: dict[str, Flask]) -> None:
    paths = contract.document()["paths"]
    missing = []
    for name, service in services.items():
        for rule in service.url_map.iter_rules():
            if rule.endpoint == "static":
                continue
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                if method.lower() not in paths.get(_openapi_path(rule.rule), {}):
                    missing.append(f"{name}: {method} {rule.rule}")
    assert not missing


def test_the_tracker_serves_the_document(client: FlaskClient) -> None:
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200
    assert resp.json == contract.document()
    assert resp.json["openapi"].startswith("3.")
    assert resp.json["security"] == [{"token": []}, {"signedApp": []}]


def test_documented_names_are_the_checked_names() -> None:
    params = contract.document()["paths"]["/api/v1/files/{app}/{user}/{file_id}"]["delete"]["parameters"]
    by_name = {p["name"]: p["schema"] for p in params if p["in"] == "path"}
    assert by_name["app"]["pattern"] == names.APP_RE.pattern
    assert by_name["user"]["maxLength"] == names.USER_MAX
    assert by_name["file_id"]["maxLength"] == names.FILE_ID_MAX


def test_registry_pairs_are_unique() -> None:
    pairs = [(e.code, e.status) for e in REGISTRY]
    assert len(pairs) == len(set(pairs))
    assert all(e.origin in ("service", "http", "nginx") for e in REGISTRY)


def test_an_unregistered_code_cannot_be_raised() -> None:
    with pytest.raises(ValueError, match=r"not in errors\.REGISTRY"):
        APIError(400, "no_such_code", "x")
    with pytest.raises(ValueError):
        APIError(500, "file_exists", "registered with 409, not 500")


def _raised_pairs() -> list[tuple[object, object, str]]:
    """(code, status, where) of every APIError(...) in the package with literal arguments;
    any other form of call is reported so that it cannot escape this check."""
    found: list[tuple[object, object, str]] = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "APIError":
                where = f"{path.name}:{node.lineno}"
                status, code = node.args[0], node.args[1]
                if not isinstance(status, ast.Constant):
                    found.append(("<status not a literal>", 0, where))
                    continue
                codes: list[object]
                if isinstance(code, ast.Constant):
                    codes = [code.value]
                elif path.name == "names.py":  # the checks take their code as an argument
                    codes = list(_NAME_CODES)
                elif path.name == "contract.py" and ast.unparse(code) == "model.invalid_code":
                    codes = [m.invalid_code for m in contract.Body.__subclasses__()]
                else:
                    codes = ["<code not a literal>"]
                found.extend((c, status.value, where) for c in codes)
    return found


_NAME_CODES = ("invalid_file_id", "invalid_user", "invalid_limit", "invalid_count", "invalid_ttl")


def test_every_raise_in_the_package_uses_a_registered_code() -> None:
    registered = {(e.code, e.status) for e in REGISTRY if e.origin != "nginx"}
    pairs = _raised_pairs()
    assert len(pairs) > 40
    assert [p for p in pairs if p[:2] not in registered] == []


def _readme_table() -> set[tuple[str, int]]:
    text = (ROOT / "README.md").read_text()
    table = text.split("| code | status | when |", 1)[1].split("\n\n", 1)[0]
    rows: set[tuple[str, int]] = set()
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        status = ANY_STATUS if cells[1] == "any other" else int(cells[1])
        rows.update((code, status) for code in re.findall(r"`([a-z_]+)`", cells[0]))
    return rows


def test_the_readme_error_table_is_the_registry() -> None:
    readme = _readme_table()
    registry = {(e.code, e.status) for e in REGISTRY}
    assert sorted(registry - readme) == [], "in errors.REGISTRY, not in the README"
    assert sorted(readme - registry) == [], "in the README, not in errors.REGISTRY"


def test_nginx_error_pages_are_registered() -> None:
    """nginx's own JSON errors (the role's defaults, which the dev cluster renders too)
    answer only registered codes, and every code registered as nginx's has a page."""
    defaults = yaml.safe_load((ROOT / "roles" / "nginx" / "defaults" / "main.yml").read_text())
    # 494 (oversized headers) and 497 (plain HTTP on a TLS port) are nginx's own; both answer 400
    pages = {
        (p["code"], 400 if p["status"] in (494, 497) else p["status"])
        for p in defaults["nginx_json_error_pages"]
    }
    registered = {(e.code, e.status) for e in REGISTRY}
    assert sorted(pages - registered) == [], "an nginx error page with an unregistered code"
    nginx_only = {(e.code, e.status) for e in REGISTRY if e.origin == "nginx"}
    assert sorted(nginx_only - pages) == [], "registered as nginx's, but no nginx page answers it"


def _param(op: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p["schema"] for p in op["parameters"] if p["name"] == name)


def test_documented_maxima_are_the_default_settings(services: dict[str, Flask]) -> None:
    paths = contract.document()["paths"]
    count = _param(paths["/api/v1/ids"]["post"], "count")
    ttl = _param(paths["/api/v1/links/{app}/{user}/{file_id}"]["get"], "ttl")
    assert count["maximum"] == services["idservice"].config["ID_MAX_BATCH"]
    assert ttl["maximum"] == services["tracker"].config["LINK_MAX_TTL"]


def test_the_role_derives_node_keys_as_the_services_do() -> None:
    """The mediagrid role renders each storage node's key with its own filter plugin
    (Ansible cannot import the package): it must derive exactly what auth checks."""
    import importlib.util

    from mediagrid import signing

    path = ROOT / "roles" / "mediagrid" / "filter_plugins" / "node_key.py"
    spec = importlib.util.spec_from_file_location("mediagrid_role_node_key", path)
    assert spec is not None and spec.loader is not None
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    for args in (("master", "s1a", "10.77.0.21"), ("x" * 40, "node-7", "::1")):
        assert plugin.mediagrid_node_key(*args) == signing.node_key(*args)
    assert plugin.FilterModule().filters()["mediagrid_node_key"] is plugin.mediagrid_node_key
