"""VOD on the lab (issue 12): an upload is probed and packaged by the storage nodes' media
workers, plays as HLS through the cluster address with its token in the path, and its
renditions go with it when it is deleted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from mediagrid.client import Client

from .conftest import GROUPS, Lab, admin, brick_path, docker, sql
from .drills import storage_back

RUN = uuid.uuid4().hex[:6]


def wait_media(
    client: Client, user: str, file_id: str, want: str = "ready", timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        got = client.media(user, file_id)
        if got["state"] == want or got["state"] in ("failed", "not_media"):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{file_id} is {got['state']} after {timeout} s: {json.dumps(got)[:800]}")
        time.sleep(0.25)


def ffprobe(url: str, entries: str = "format=duration") -> str:
    return subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", entries, "-of", "csv=p=0", url],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()  # fmt: skip


def test_an_upload_plays_as_hls_through_the_vip(
    lab: Lab, client: Client, clip: Path, cli_env: dict[str, str]
) -> None:
    user = f"vod-{RUN}"
    # as the README runs it: the CLI uploads, waits and prints the HLS URL
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "mediagrid.cli", "upload", str(clip), "--user", user, "--id", "movie.mp4",
         "--wait", "--wait-timeout", "120"],
        env=cli_env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    printed = dict(line.split(": ", 1) for line in out.stdout.splitlines())
    playable = time.monotonic() - start
    got = client.media(user, "movie.mp4")
    assert got["state"] == "ready", got
    assert (
        printed["hls"].split("/hls/", 1)[1].split("/", 2)[2]
        == got["hls"].split("/hls/", 1)[1].split("/", 2)[2]
    )
    assert got["info"]["video"]["codec"] == "h264" and abs(got["info"]["duration"] - 12) < 0.5
    assert got["hls"].startswith(f"{lab.url}/hls/") and got["hls"].endswith("/master.m3u8")
    print(f"CLI upload of a 12 s 640x360 clip until its first rendition plays: {playable:.2f} s")
    # ffprobe reads the master playlist, a variant and its segments over HTTPS
    assert abs(float(ffprobe(got["hls"])) - 12) < 0.5
    # every segment inherits the token; one with another token is refused
    text = requests.get(got["hls"], timeout=30).text
    variant = next(line for line in text.splitlines() if line and not line.startswith("#"))
    base = got["hls"].rsplit("/", 1)[0]
    playlist = requests.get(f"{base}/{variant}", timeout=30)
    assert playlist.status_code == 200 and "#EXT-X-ENDLIST" in playlist.text
    parts = got["hls"].split("/")
    at = parts.index("hls") + 1
    assert requests.get("/".join([*parts[:at], "B" * 22, *parts[at + 1 :]]), timeout=30).status_code == 403
    # a thumbnail at a time, as the README asks for it: 202 while it is made, then the JPEG
    asked = requests.get(f"{base}/thumb.jpg?t=6.25", timeout=30)
    assert asked.status_code == 202 and int(asked.headers["Retry-After"]) >= 1, asked.text
    deadline = time.monotonic() + 60
    while (thumb := requests.get(f"{base}/thumb.jpg?t=6.2", timeout=30)).status_code == 202:
        assert time.monotonic() < deadline, thumb.text
        time.sleep(float(thumb.headers["Retry-After"]))
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8", thumb.status_code
    bad = requests.get(f"{base}/thumb.jpg?t=soon", timeout=30)
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "bad_time")
    # the job ran on a node of the file's group, and the rendition is on both bricks
    (row,) = sql(
        "SELECT f.grp, f.path, j.node_id FROM files f JOIN media_jobs j ON j.sid = f.sid"
        f" WHERE f.app = '{lab.app}' AND f.user = '{user}' AND j.kind = 'hls:source'"
    )
    grp, path, node = row
    assert node in GROUPS[grp]
    for brick_host in GROUPS[grp]:
        listing = docker("exec", brick_host, "ls", brick_path(brick_host, grp, f"{path}.hls/source"))
        assert "index.m3u8" in listing.split(), (brick_host, listing)
    client.delete(user, "movie.mp4")
    deadline = time.monotonic() + 5  # the front's cached descriptor is revalidated every second
    while (status := requests.get(got["hls"], timeout=30).status_code) != 404:
        assert status == 200 and time.monotonic() < deadline, status
        time.sleep(0.2)
    for brick_host in GROUPS[grp]:
        leaf, name = path.rsplit("/", 1)
        listing = docker("exec", brick_host, "ls", brick_path(brick_host, grp, leaf)).split()
        assert f"{name}.hls" not in listing


def test_random_bytes_are_not_media(lab: Lab, client: Client, tmp_path: Path) -> None:
    user = f"vod-{RUN}"
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(bytes(range(256)) * 400)
    client.upload(fake, user, "fake.mp4")
    got = wait_media(client, user, "fake.mp4", want="not_media", timeout=60)
    assert (got["state"], got["code"], got["hls"]) == ("not_media", "not_media", None)


def running_job(user: str, kind_prefix: str, timeout: float = 60) -> tuple[int, str, str]:
    """(job id, kind, node) of the file's first job of that kind once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = sql(
            "SELECT j.id, j.kind, j.node_id FROM media_jobs j JOIN files f ON f.sid = j.sid"
            f" WHERE f.user = '{user}' AND j.kind LIKE '{kind_prefix}%' AND j.state = 'running'"
            " AND j.progress > 0"
        )
        if rows:
            return int(rows[0][0]), rows[0][1], rows[0][2]
        time.sleep(0.2)
    raise AssertionError(f"no {kind_prefix} job of {user} ran within {timeout} s")


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30 s 854x480 MPEG-4 Part 2 clip: its first rendition is a transcode that takes a while."""
    src = tmp_path_factory.mktemp("vod") / "old.mkv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=854x480:rate=30", "-f", "lavfi",
         "-i", "sine", "-t", "30", "-c:v", "mpeg4", "-q:v", "5", "-c:a", "mp3", str(src)],
        check=True, timeout=120,
    )  # fmt: skip
    return src


def peer_of(node: str) -> str:
    return next(n for nodes in GROUPS.values() if node in nodes for n in nodes if n != node)


def wait_job(job_id: int, timeout: float = 180) -> list[str]:
    """(node, attempts, state) of a job once it is no longer queued or running."""
    deadline = time.monotonic() + timeout
    while (row := sql(f"SELECT node_id, attempts, state FROM media_jobs WHERE id = {job_id}")[0])[2] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, row
        time.sleep(0.5)
    return row


def decodes(url: str) -> None:
    """Every frame of an HLS rendition decodes."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-xerror", "-i", url, "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-800:]


def test_a_killed_worker_s_job_completes_on_the_peer(lab: Lab, client: Client, old: Path) -> None:
    src = old
    user = f"vodkill-{RUN}"
    client.upload(src, user, "old.mkv")
    # whichever rung the worker claimed first: what counts is that the peer finishes it
    job_id, kind, node = running_job(user, "hls:")
    rung = kind.removeprefix("hls:")
    assert rung in ("360p", "480p", "720p"), kind
    # the worker dies mid-transcode (no chance to give the job back), and stays down
    docker("exec", node, "systemctl", "kill", "-s", "KILL", "mediagrid-worker")
    docker("exec", node, "systemctl", "stop", "mediagrid-worker")
    try:
        row = wait_job(job_id)  # the lease (10 s in the lab) runs out, the peer takes it
        got = client.media(user, "old.mkv")
        assert got["state"] == "ready", got
        assert row == [peer_of(node), "2", "done"]
        decodes(got["hls"].replace("master.m3u8", f"{rung}/index.m3u8"))  # byte-valid
        assert abs(float(ffprobe(got["hls"])) - 30) < 1
    finally:
        docker("exec", node, "systemctl", "start", "mediagrid-worker")
    client.delete(user, "old.mkv")


def test_a_killed_storage_node_s_job_completes_on_the_peer(lab: Lab, client: Client, old: Path) -> None:
    user = f"vodnode-{RUN}"
    client.upload(old, user, "old.mkv")
    job_id, kind, node = running_job(user, "hls:")
    group = next(g for g, nodes in GROUPS.items() if node in nodes)
    docker("kill", node)  # the whole node: worker, shim, brick
    try:
        row = wait_job(job_id, 240)
        assert row == [peer_of(node), "2", "done"], row
        got = client.media(user, "old.mkv")
        decodes(got["hls"].replace("master.m3u8", f"{kind[4:]}/index.m3u8"))
    finally:
        storage_back(lab, node, group)
    client.delete(user, "old.mkv")


def assert_cleared(grp: str, path: str, timeout: float = 20) -> None:
    """Once a file is deleted, no ffmpeg of its jobs runs within ``timeout`` and nothing of
    it (the file, its renditions, a run's temporaries) is left on its group's bricks."""
    deadline = time.monotonic() + timeout
    while any(docker("exec", n, "pgrep", "-f", path, check=False).strip() for n in GROUPS[grp]):
        assert time.monotonic() < deadline, f"ffmpeg still runs for the deleted {path}"
        time.sleep(0.5)
    leaf, name = path.rsplit("/", 1)
    for brick_host in GROUPS[grp]:
        listing = docker("exec", brick_host, "ls", "-a", brick_path(brick_host, grp, leaf)).split()
        assert not [n for n in listing if n.startswith(name)], (brick_host, listing)


def test_a_file_deleted_while_its_job_runs(lab: Lab, client: Client, old: Path) -> None:
    user = f"voddel-{RUN}"
    client.upload(old, user, "old.mkv")
    job_id, _, _ = running_job(user, "hls:")
    (row,) = sql(f"SELECT grp, path FROM files WHERE user = '{user}'")
    grp, path = row
    client.delete(user, "old.mkv")
    assert sql(f"SELECT state FROM media_jobs WHERE id = {job_id}") == [["cancelled"]]
    # the worker learns it at its next renewal: ffmpeg stops, nothing of the video is left
    assert_cleared(grp, path)
    assert sql(
        f"SELECT COUNT(*) FROM media WHERE sid = (SELECT sid FROM media_jobs WHERE id = {job_id})"
    ) == [["0"]]


def test_an_app_over_its_quota_does_not_delay_another(
    lab: Lab, client: Client, old: Path, tmp_path: Path
) -> None:
    app = f"busy{RUN}"
    secret = admin("app", "create", app).strip()
    admin("app", "quota", app, "--media-max-jobs", "1")
    busy = Client(lab.url, app, secret, ca_file=lab.ca_file, timeout=60)
    short = tmp_path / "short.mkv"  # the other app's files: 8 s, transcoded too
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(old), "-t", "8", "-c", "copy", str(short)], check=True, timeout=60
    )
    try:
        for i in range(4):  # the busy app's burst first
            busy.upload(old, f"b{i}", "old.mkv")
        users = [f"calm{i}-{RUN}" for i in range(3)]
        start = time.monotonic()
        for user in users:
            client.upload(short, user, "short.mkv")
        waited = {user: wait_media(client, user, "short.mkv", timeout=180) for user in users}
        took = time.monotonic() - start
        assert all(g["state"] == "ready" for g in waited.values()), waited
        # meanwhile the busy app never ran more than its one job, and says why the rest wait
        running = int(sql(f"SELECT COUNT(*) FROM media_jobs WHERE app = '{app}' AND state = 'running'")[0][0])
        assert running <= 1
        states = [busy.media(f"b{i}", "old.mkv") for i in range(4)]
        waits = {j["waiting"] for s in states for j in s["jobs"] if j["state"] == "queued"}
        assert "app_max_jobs" in waits, states
        print(f"3 uploads of another app playable {took:.1f} s after a burst of 4 from an app at its quota")
    finally:
        stored = sql(f"SELECT grp, path FROM files WHERE app = '{app}'")
        for i in range(4):
            busy.delete(f"b{i}", "old.mkv")
        # their jobs end before the next test: nothing of them runs or is left behind
        for grp, path in stored:
            assert_cleared(grp, path)
        admin("app", "delete", app)
