"""The client verifies the cluster's certificate against the CA named in client.toml
(ca_file), and refuses a server that CA did not sign (issue 11, item 12)."""

from __future__ import annotations

import argparse
import http.server
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mediagrid.cli import settings
from mediagrid.client import Client


def _ca(tmp: Path, name: str) -> tuple[Path, Path]:
    """A CA (certificate, key) made with openssl."""
    key, crt = tmp / f"{name}.key", tmp / f"{name}.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", f"/CN={name}",
         "-addext", "basicConstraints=critical,CA:TRUE"],
        check=True, capture_output=True,
    )  # fmt: skip
    return crt, key


def _server_cert(tmp: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    key, csr, crt, ext = tmp / "srv.key", tmp / "srv.csr", tmp / "srv.crt", tmp / "srv.ext"
    subprocess.run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(csr), "-subj", "/CN=node"],
        check=True, capture_output=True,
    )  # fmt: skip
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt)],
        check=True, capture_output=True,
    )  # fmt: skip
    return crt, key


class _Groups(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"groups": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """An HTTPS server on loopback, its CA, and another CA that did not sign it."""
    ca = _ca(tmp_path, "cluster-ca")
    other, _ = _ca(tmp_path, "other-ca")
    crt, key = _server_cert(tmp_path, ca)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Groups)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca[0], other
    finally:
        server.shutdown()
        server.server_close()


def test_client_trusts_the_configured_ca(https: tuple[str, Path, Path]) -> None:
    url, ca, _ = https
    assert Client(url, "demo", "s", ca_file=str(ca), retry_for=0).groups() == {"groups": []}


def test_client_refuses_a_certificate_its_ca_did_not_sign(https: tuple[str, Path, Path]) -> None:
    url, _, other = https
    with pytest.raises(requests.exceptions.SSLError):
        Client(url, "demo", "s", ca_file=str(other), retry_for=0).groups()
    with pytest.raises(requests.exceptions.SSLError):  # nor the system's CAs
        Client(url, "demo", "s", retry_for=0).groups()


def test_ca_file_from_client_toml_env_and_option(tmp_path: Path) -> None:
    conf = tmp_path / "client.toml"
    conf.write_text('url = "https://192.0.2.10"\napp = "demo"\nsecret = "s"\nca_file = "/etc/ca.crt"\n')
    args = argparse.Namespace(config=str(conf), ca_file=None)
    assert settings(args, {})["ca_file"] == "/etc/ca.crt"
    assert settings(args, {"MEDIAGRID_CA_FILE": "/env/ca.crt"})["ca_file"] == "/env/ca.crt"
    args.ca_file = "/opt/ca.crt"
    assert settings(args, {})["ca_file"] == "/opt/ca.crt"
