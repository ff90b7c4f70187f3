"""TLS as a user meets it (issue 11, item 12): the CLI talks HTTPS to the cluster address
and to the storage node it uploads to, trusting the lab CA named in client.toml; without
that CA it refuses the cluster instead of sending credentials; plain HTTP still plays."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import requests

from mediagrid.client import Client

from .conftest import Lab, sha256

RUN = uuid.uuid4().hex[:6]


def test_cli_uploads_and_downloads_over_https(lab: Lab, cli_env: dict[str, str], tmp_path: Path) -> None:
    assert lab.url.startswith("https://") and lab.ca_file
    # the storage node the upload goes to announces its HTTPS endpoint
    targets = lab.client().storages(f"tls-{RUN}")["storages"]
    assert targets and all(t["url"].startswith("https://") and t["url"].endswith(":8443") for t in targets)
    src = tmp_path / "secret.bin"
    src.write_bytes(os.urandom(300_000))
    cli = [sys.executable, "-m", "mediagrid.cli"]
    url = subprocess.run(
        [*cli, "upload", str(src), "--user", f"tls-{RUN}", "--id", "secret.bin"],
        env=cli_env, capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    assert url.startswith(f"{lab.url}/files/")
    got = tmp_path / "got.bin"
    subprocess.run(
        [*cli, "download", "secret.bin", "--user", f"tls-{RUN}", "-o", str(got)],
        env=cli_env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert sha256(got.read_bytes()) == sha256(src.read_bytes())
    # the same file over plain HTTP, for players that need it
    plain = url.replace(lab.url, lab.http, 1)
    assert sha256(requests.get(plain, timeout=30).content) == sha256(src.read_bytes())
    lab.client().delete(f"tls-{RUN}", "secret.bin")


def test_cli_without_the_ca_refuses_the_cluster(lab: Lab, cli_env: dict[str, str], tmp_path: Path) -> None:
    conf = tmp_path / "client.toml"
    kept = [line for line in lab.conf.read_text().splitlines() if not line.startswith("ca_file")]
    conf.write_text("\n".join(kept) + "\n")
    conf.chmod(0o600)
    # the system's CAs only: the lab CA is not among them
    env = {**cli_env, "MEDIAGRID_CLIENT_CONFIG": str(conf)}
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        env.pop(name, None)
    run = subprocess.run(
        [sys.executable, "-m", "mediagrid.cli", "ls", "--user", f"tls-{RUN}"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in run.stderr


def test_links_minted_over_https_stay_https(lab: Lab, tmp_path: Path) -> None:
    client: Client = lab.client()
    src = tmp_path / "a.txt"
    src.write_bytes(b"tls link")
    client.upload(src, f"tls-{RUN}", "a.txt")
    link = client.direct_link(f"tls-{RUN}", "a.txt")
    assert link["url"].startswith(f"{lab.url}/d/"), link
    assert requests.get(link["url"], timeout=30).content == b"tls link"
    client.delete(f"tls-{RUN}", "a.txt")
