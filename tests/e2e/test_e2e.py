"""The whole flow on the lab cluster, as a user and an operator would see it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from mediagrid.client import Client, MediagridError
from mediagrid.signing import signed_headers
from mediagrid_dev.browser import CHROMIUM, chromium_args
from mediagrid_dev.lab import ADMIN_APP, admin_secret, front_spki_hashes

from .conftest import (
    ADDRESS,
    GROUPS,
    Lab,
    admin,
    brick_path,
    docker,
    sha256,
    sql,
)

RUN = uuid.uuid4().hex[:6]  # users of this run: the suite can run again on the same lab


def on_brick(node: str, group: str, rel: str) -> bytes | None:
    out = subprocess.run(
        ["docker", "exec", node, "cat", brick_path(node, group, rel)], capture_output=True, timeout=60
    )
    return out.stdout if out.returncode == 0 else None


def file_row(app: str, user: str, file_id: str) -> tuple[str, str] | None:
    rows = sql(f"SELECT grp, path FROM files WHERE app='{app}' AND user='{user}' AND file_id='{file_id}'")
    return (rows[0][0], rows[0][1]) if rows else None


def ffprobe(url: str, entries: str = "format=duration", fmt: str = "csv=p=0") -> str:
    """What ffprobe reads from a playback URL (by default the duration, in seconds)."""
    return subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", entries, "-of", fmt, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_users_land_in_both_groups(client: Client) -> None:
    assert {client.storages(f"spread{i}-{RUN}")["group"] for i in range(30)} == {"g1", "g2"}


def test_cli_upload_download_range_and_delete(
    lab: Lab, client: Client, clip: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    data = clip.read_bytes()
    cli = [sys.executable, "-m", "mediagrid.cli"]
    url = subprocess.run(
        [*cli, "upload", str(clip), "--user", f"alice-{RUN}", "--id", "movie.mp4"],
        env=cli_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert url.startswith(f"{lab.url}/files/{lab.app}/alice-{RUN}/movie.mp4?")
    whole = requests.get(url, timeout=30)
    assert whole.status_code == 200 and whole.headers["Content-Type"] == "video/mp4"
    assert sha256(whole.content) == sha256(data)
    n = len(data)
    for rng, want in (
        ("0-99", data[:100]),
        (f"{n // 2}-{n // 2 + 999}", data[n // 2 : n // 2 + 1000]),
        (f"{n - 50}-{n - 1}", data[-50:]),
        ("-64", data[-64:]),
    ):
        part = requests.get(url, headers={"Range": f"bytes={rng}"}, timeout=30)
        assert part.status_code == 206 and part.content == want, rng
    # straight from every storage node of the group
    group, rel = file_row(lab.app, f"alice-{RUN}", "movie.mp4")
    path = f"/api/v1/files/{lab.app}/alice-{RUN}/movie.mp4"
    for node in GROUPS[group]:
        direct = requests.get(
            f"http://{ADDRESS[node]}:8080{path}",
            timeout=30,
            headers=signed_headers(lab.app, lab.secret, "GET", path),
        )
        assert direct.status_code == 200 and sha256(direct.content) == sha256(data), node
        assert on_brick(node, group, rel) == data
    # the CLI's own download verifies the checksum
    out = tmp_path / "back.mp4"
    subprocess.run(
        [*cli, "download", "movie.mp4", "--user", f"alice-{RUN}", "-o", str(out)],
        env=cli_env,
        check=True,
        capture_output=True,
    )
    assert out.read_bytes() == data
    listed = subprocess.run(
        [*cli, "ls", "--user", f"alice-{RUN}"], env=cli_env, capture_output=True, text=True, check=True
    ).stdout
    assert "movie.mp4\t" in listed
    subprocess.run(
        [*cli, "rm", "movie.mp4", "--user", f"alice-{RUN}"], env=cli_env, check=True, capture_output=True
    )
    assert file_row(lab.app, f"alice-{RUN}", "movie.mp4") is None
    for node in GROUPS[group]:
        assert on_brick(node, group, rel) is None, f"file still on {node}'s brick"
    assert requests.get(url, timeout=30).status_code == 404


def test_curl_upload_and_playback(lab: Lab, client: Client, clip: Path) -> None:
    token = client.token()
    auth = ["-H", f"Authorization: Bearer {token}"]
    lookup = subprocess.run(
        ["curl", "-sf", *auth, f"{lab.url}/api/v1/storages?app={lab.app}&user=bob-{RUN}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    storage = json.loads(lookup)["storages"][0]["url"]
    put = subprocess.run(
        ["curl", "-sf", "-T", str(clip), *auth, f"{storage}/api/v1/files/{lab.app}/bob-{RUN}/clip.mp4"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(put)["sha256"] == sha256(clip.read_bytes())
    got = subprocess.run(
        ["curl", "-sf", f"{lab.url}/files/{lab.app}/bob-{RUN}/clip.mp4?token={token}"],
        capture_output=True,
        check=True,
    ).stdout
    assert got == clip.read_bytes()


def test_ffprobe_decodes_and_mp4_seeking(lab: Lab, client: Client, clip: Path) -> None:
    client.upload(clip, f"carol-{RUN}", "clip.mp4", overwrite=True)
    url = client.playback_url(f"carol-{RUN}", "clip.mp4")
    info = json.loads(ffprobe(url, "format=duration:stream=codec_name", "json"))
    assert abs(float(info["format"]["duration"]) - 12.0) < 0.5
    assert {s["codec_name"] for s in info["streams"]} == {"h264", "aac"}
    decode = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", url, "-f", "null", "-"], capture_output=True, text=True, timeout=120
    )
    assert decode.returncode == 0 and decode.stderr.strip() == ""
    assert abs(float(ffprobe(f"{url}&start=5")) - 7.0) < 1.0  # mp4 seeking: 12 s clip from 5 s


def test_direct_link_plays_through_the_vip_and_dies_with_the_file(
    lab: Lab, client: Client, clip: Path
) -> None:
    user = f"dora-{RUN}"
    client.upload(clip, user, "clip.mp4", overwrite=True)
    # minted with curl and a bearer token, as a web app's backend would
    token = client.token()
    minted = subprocess.run(
        [
            "curl",
            "-sf",
            "-H",
            f"Authorization: Bearer {token}",
            f"{lab.url}/api/v1/links/{lab.app}/{user}/clip.mp4",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    url = json.loads(minted)["url"]
    assert url.startswith(f"{lab.url}/d/")
    got = requests.get(url, timeout=30)
    assert got.status_code == 200 and got.content == clip.read_bytes()
    assert got.headers["Content-Type"] == "video/mp4"
    assert abs(float(ffprobe(f"{url}&start=5")) - 7.0) < 1.0  # mp4 seeking: 12 s clip from 5 s
    forged = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    assert requests.get(forged, timeout=10).json()["error"]["code"] == "forbidden"
    client.delete(user, "clip.mp4")
    deadline = time.monotonic() + 5  # the front's cached descriptor is revalidated every second
    while (status := requests.get(url, timeout=10).status_code) != 404:
        assert status == 200 and time.monotonic() < deadline, status
        time.sleep(0.2)


def test_headless_chromium_plays_and_seeks(lab: Lab, client: Client, clip: Path) -> None:
    from playwright.sync_api import sync_playwright

    client.upload(clip, f"dora-{RUN}", "clip.mp4", overwrite=True)
    url = client.playback_url(f"dora-{RUN}", "clip.mp4")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=chromium_args(front_spki_hashes()))
        try:
            page = browser.new_page()
            page.set_content(f'<video id="v" src="{url}" muted autoplay></video>')
            page.wait_for_function("document.getElementById('v').currentTime > 1.0", timeout=20000)
            page.evaluate("document.getElementById('v').currentTime = 9")
            page.wait_for_function(
                "(() => { const v = document.getElementById('v');"
                " return !v.seeking && v.currentTime > 9.3; })()",
                timeout=20000,
            )
            assert page.evaluate("document.getElementById('v').error") is None
        finally:
            browser.close()


def test_tenants_cannot_see_each_other(lab: Lab, client: Client, tmp_path: Path) -> None:
    secret = admin("app", "create", f"e2e-{RUN}").strip()
    other = Client(lab.url, f"e2e-{RUN}", secret, ca_file=lab.ca_file)
    src = tmp_path / "private.txt"
    src.write_bytes(b"demo tenant only")
    client.upload(src, f"erin-{RUN}", "private.txt", overwrite=True)
    with pytest.raises(MediagridError) as err:
        other._call("GET", lab.url, f"/files/{lab.app}/erin-{RUN}/private.txt")
    assert err.value.status == 403
    with pytest.raises(MediagridError) as err:
        other._call("GET", lab.url, f"/api/v1/files/{lab.app}/erin-{RUN}")
    assert err.value.status == 403
    assert other.list(f"erin-{RUN}") == []


def test_groups_and_cluster_show_reality(lab: Lab, cli_env: dict[str, str]) -> None:
    body = lab.admin().groups()
    assert {g["name"]: sorted(m["node_id"] for m in g["members"]) for g in body["groups"]} == GROUPS
    assert all(
        m["state"] == "ACTIVE" and m["last_heartbeat_age"] < 5 for g in body["groups"] for m in g["members"]
    )
    table = subprocess.run(
        [sys.executable, "-m", "mediagrid.cli", "cluster"],
        env={**cli_env, "MEDIAGRID_APP": ADMIN_APP, "MEDIAGRID_SECRET": admin_secret()},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for node in ("s1a", "s1b", "s2a", "s2b"):
        assert any(line.split()[1:3] == [node, "ACTIVE"] for line in table.splitlines()), table


def test_stopped_storage_offline_peer_takes_uploads_and_heals(
    lab: Lab, client: Client, tmp_path: Path
) -> None:
    user = next(u for u in (f"heal{i}-{RUN}" for i in range(50)) if client.storages(u)["group"] == "g1")
    before = tmp_path / "before.bin"
    before.write_bytes(b"written before the stop\n" * 1000)
    client.upload(before, user, "before.bin", overwrite=True)
    victim, peer = "s1b", "s1a"
    docker("stop", "-t", "1", victim)
    stopped = time.monotonic()
    try:
        waited = lab.wait_states({victim: "OFFLINE"}, 10)
        detected = time.monotonic() - stopped
        print(f"{victim} OFFLINE {detected:.2f} s after docker stop")
        assert detected <= 6.0
        # lookups read a snapshot of the node table at most 0.5 s old
        deadline = time.monotonic() + 2
        while [s["node_id"] for s in client.storages(user)["storages"]] != [peer]:
            assert time.monotonic() < deadline, "the stopped node is still offered for uploads"
            time.sleep(0.1)
        during = tmp_path / "during.bin"
        during.write_bytes(b"written while s1b was away\n" * 1000)
        assert client.upload(during, user, "during.bin")["node_id"] == peer
        got = requests.get(client.playback_url(user, "before.bin"), timeout=30)
        assert got.content == before.read_bytes()
        del waited
    finally:
        docker("start", victim)
    lab.wait_states({victim: "ACTIVE"}, 120)
    group, rel = file_row(lab.app, user, "during.bin")
    deadline = time.monotonic() + 120
    while on_brick(victim, group, rel) != during.read_bytes():
        assert time.monotonic() < deadline, "file written while away never healed onto s1b"
        time.sleep(1)
