"""The media worker on the loopback cluster (issue 12): an upload is probed, an H.264/AAC
source is packaged to HLS without re-encoding, and anything else gets a clear state."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from mediagrid import worker
from mediagrid.client import Client, MediagridError
from mediagrid.db import Connection, one
from mediagrid_dev import DevCluster

from .media import H264_AAC, clip

pytestmark = pytest.mark.integration


def upload(client: Client, cluster: DevCluster, conn: Connection, src: Path) -> dict[str, Any]:
    """Upload ``src`` and queue its media jobs as the storage shim will; its files row."""
    user = f"w{uuid.uuid4().hex[:8]}"
    client.upload(src, user, src.name)
    with conn.cursor() as cur:
        cur.execute("SELECT sid, grp, path, app FROM files WHERE app = 'demo' AND user = %s", (user,))
        row = one(cur)
        worker.queue_upload(cur, row["sid"], row["app"], row["grp"])
    conn.commit()
    return row


def drain(cluster: DevCluster, conn: Connection, grp: str, sid: int) -> list[str]:
    """Run the group's queue empty; the kinds of the jobs of file ``sid`` that ran."""
    node = worker.Node(f"wk-{uuid.uuid4().hex[:6]}", grp, cluster.group_dir(grp), budget=4.0)
    done: list[str] = []
    for _ in range(50):
        job = worker.run_once(conn, node)
        if job is None:
            return done
        if job.sid == sid:
            done.append(job.kind)
    raise AssertionError(f"the queue never emptied: {done}")


def user_of(conn: Connection, sid: int) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT user FROM files WHERE sid = %s", (sid,))
        user = str(one(cur)["user"])
    conn.commit()
    return user


def media(conn: Connection, sid: int) -> dict[str, Any]:
    with conn.cursor() as cur:
        cur.execute("SELECT state, code, info FROM media WHERE sid = %s", (sid,))
        row = one(cur)
    conn.commit()
    return row


def test_an_h264_upload_plays_as_hls(
    client: Client, cluster: DevCluster, conn: Connection, tmp_path: Path
) -> None:
    src = clip(tmp_path / "movie.mp4", *H264_AAC, secs=5)
    row = upload(client, cluster, conn, src)
    start = time.monotonic()
    assert drain(cluster, conn, row["grp"], row["sid"]) == ["probe", "package:source"]
    took = time.monotonic() - start
    state = media(conn, row["sid"])
    assert state["state"] == "ready", state
    info = json.loads(state["info"])
    assert info["kind"] == "video" and info["copyable"] and info["video"]["codec"] == "h264"
    playlist = cluster.group_dir(row["grp"]) / f"{row['path']}.hls" / "source" / "index.m3u8"
    played = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(playlist)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert abs(float(played) - 5.0) < 0.5
    assert took < 30  # seconds, not minutes: nothing was re-encoded
    # the API shows it, to the owner's app only
    got = client.media(user_of(conn, row["sid"]), "movie.mp4")
    assert got["state"] == "ready" and got["info"]["video"]["codec"] == "h264"
    assert [(j["kind"], j["state"]) for j in got["jobs"]] == [("probe", "done"), ("package:source", "done")]


def test_random_bytes_are_not_media(
    client: Client, cluster: DevCluster, conn: Connection, tmp_path: Path
) -> None:
    src = tmp_path / "fake.mp4"
    src.write_bytes(os.urandom(32 << 10))
    row = upload(client, cluster, conn, src)
    assert drain(cluster, conn, row["grp"], row["sid"]) == ["probe"]
    assert media(conn, row["sid"])["state"] == "not_media"
    got = client.media(user_of(conn, row["sid"]), "fake.mp4")
    assert (got["state"], got["code"], got["info"]) == ("not_media", "not_media", None)
    assert not (cluster.group_dir(row["grp"]) / f"{row['path']}.hls").exists()


def test_the_media_of_another_apps_file_is_not_shown(
    client: Client, other_client: Client, cluster: DevCluster, conn: Connection, tmp_path: Path
) -> None:
    src = tmp_path / "mine.mp4"
    src.write_bytes(os.urandom(1024))
    row = upload(client, cluster, conn, src)
    with pytest.raises(MediagridError) as err:
        other_client._call(
            "GET", other_client.url, f"/api/v1/media/demo/{user_of(conn, row['sid'])}/mine.mp4"
        )
    assert err.value.status in (401, 403)
    assert client.media(user_of(conn, row["sid"]), "mine.mp4")["state"] == "queued"


def test_a_file_deleted_before_its_job(
    client: Client, cluster: DevCluster, conn: Connection, tmp_path: Path
) -> None:
    src = tmp_path / "gone.mp4"
    src.write_bytes(os.urandom(1024))
    row = upload(client, cluster, conn, src)
    client.delete(user_of(conn, row["sid"]), src.name)
    assert drain(cluster, conn, row["grp"], row["sid"]) == ["probe"]
    with conn.cursor() as cur:
        cur.execute("SELECT state, code FROM media_jobs WHERE sid = %s", (row["sid"],))
        assert cur.fetchone() == {"state": "failed", "code": "file_deleted"}
    conn.commit()
