"""The media worker on the loopback cluster (issue 12): an upload is probed, an H.264/AAC
source is packaged to HLS without re-encoding, and anything else gets a clear state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from mediagrid import links, worker
from mediagrid.client import Client, MediagridError
from mediagrid.config import Settings
from mediagrid.db import Connection, one
from mediagrid_dev import DevCluster

from .media import H264_AAC, clip, ffmpeg

pytestmark = pytest.mark.integration


def upload(client: Client, cluster: DevCluster, conn: Connection, src: Path) -> dict[str, Any]:
    """Upload ``src`` (the storage shim queues its probe); its files row."""
    user = f"w{uuid.uuid4().hex[:8]}"
    client.upload(src, user, src.name)
    with conn.cursor() as cur:
        cur.execute("SELECT sid, grp, path, app FROM files WHERE app = 'demo' AND user = %s", (user,))
        row = one(cur)
    conn.commit()
    return row


def drain(cluster: DevCluster, conn: Connection, grp: str, sid: int) -> list[str]:
    """Run the group's queue until no job of file ``sid`` is left queued; the kinds of the
    jobs of ``sid`` that ran. Jobs of files earlier tests left in the group run on the way
    (the queue picks by class and cost), so the bound is on jobs, not on this file's."""
    node = worker.Node(f"wk-{uuid.uuid4().hex[:6]}", grp, cluster.group_dir(grp), budget=4.0)
    done: list[str] = []
    for _ in range(300):
        if not queued(conn, sid):
            return done
        job = worker.run_once(conn, node)
        if job is None:
            return done
        if job.sid == sid:
            done.append(job.kind)
    raise AssertionError(f"the queue never emptied: {done}")


def queued(conn: Connection, sid: int) -> int:
    """How many jobs of file ``sid`` wait in the queue."""
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM media_jobs WHERE sid = %s AND state = 'queued'", (sid,))
        n = int(one(cur)["n"])
    conn.commit()
    return n


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
    assert drain(cluster, conn, row["grp"], row["sid"]) == ["probe", "hls:source", "poster", "sprite"]
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
    assert [(j["kind"], j["state"]) for j in got["jobs"]] == [
        ("probe", "done"), ("hls:source", "done"), ("poster", "done"), ("sprite", "done"),
    ]  # fmt: skip
    assert got["poster"] and got["sprite"] and got["thumbnails_vtt"] and got["hls"]
    vtt = requests.get(got["thumbnails_vtt"], timeout=5)
    assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT") and "sprite.jpg#xywh=" in vtt.text
    poster = requests.get(got["poster"], timeout=5)
    assert poster.headers["Content-Type"] == "image/jpeg" and poster.content[:2] == b"\xff\xd8"


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
    assert drain(cluster, conn, row["grp"], row["sid"]) == []  # cancelled with the row
    with conn.cursor() as cur:
        cur.execute("SELECT state, code FROM media_jobs WHERE sid = %s", (row["sid"],))
        assert cur.fetchone() == {"state": "cancelled", "code": "file_deleted"}
        cur.execute("SELECT COUNT(*) AS n FROM media WHERE sid = %s", (row["sid"],))
        assert one(cur)["n"] == 0
    conn.commit()


def test_delete_and_overwrite_remove_renditions(
    client: Client, cluster: DevCluster, conn: Connection, tmp_path: Path
) -> None:
    src = clip(tmp_path / "twice.mp4", *H264_AAC, secs=2)
    row = upload(client, cluster, conn, src)
    user = user_of(conn, row["sid"])
    assert drain(cluster, conn, row["grp"], row["sid"]) == ["probe", "hls:source", "poster", "sprite"]
    first = cluster.group_dir(row["grp"]) / f"{row['path']}.hls"
    assert (first / "source" / "index.m3u8").is_file()
    client.upload(src, user, src.name, overwrite=True)  # a new upload: its own renditions
    assert not first.exists()
    with conn.cursor() as cur:
        cur.execute("SELECT sid, path FROM files WHERE app = 'demo' AND user = %s", (user,))
        again = one(cur)
        cur.execute("SELECT state FROM media WHERE sid = %s", (again["sid"],))
        assert one(cur)["state"] == "queued"
    conn.commit()
    assert drain(cluster, conn, row["grp"], again["sid"]) == ["probe", "hls:source", "poster", "sprite"]
    second = cluster.group_dir(row["grp"]) / f"{again['path']}.hls"
    assert second.is_dir()
    client.delete(user, src.name)
    assert not second.exists()


def test_hls_plays_through_nginx_with_its_token(
    client: Client, cluster: DevCluster, conn: Connection, tmp_path: Path
) -> None:
    src = clip(tmp_path / "signed.mp4", *H264_AAC, secs=3)
    row = upload(client, cluster, conn, src)
    user = user_of(conn, row["sid"])
    assert client.media(user, src.name)["hls"] is None  # nothing published yet
    drain(cluster, conn, row["grp"], row["sid"])
    got = client.media(user, src.name)
    url = got["hls"]
    assert url and url.endswith("/master.m3u8") and got["expires"] > time.time() + 3600
    assert (got["renditions"][0]["name"], got["renditions"][0]["state"]) == ("source", "done")
    played = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", url],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert abs(float(played) - 3.0) < 0.5
    master = requests.get(url, timeout=5)
    assert master.status_code == 200 and master.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert master.headers["Cache-Control"] == "no-cache"
    variant = next(line for line in master.text.splitlines() if line and not line.startswith("#"))
    media_pl = requests.get(url.rsplit("/", 1)[0] + "/" + variant, timeout=5)
    segment = next(line for line in media_pl.text.splitlines() if line and not line.startswith("#"))
    seg_url = url.rsplit("/", 1)[0] + "/" + variant.rsplit("/", 1)[0] + "/" + segment
    seg = requests.get(seg_url, timeout=5)
    assert seg.status_code == 200 and seg.headers["Content-Type"] == "video/mp2t" and seg.content[0] == 0x47
    # a forged token, another video's prefix with this token, an expired token, no token
    parts = seg_url.split("/")
    token_at = parts.index("hls") + 1
    forged = [*parts[:token_at], "A" * 22, *parts[token_at + 1 :]]
    assert requests.get("/".join(forged), timeout=5).status_code == 403
    other = [*parts]
    other[token_at + 5] = f"{int(parts[token_at + 5][:16], 16) + 1:016x}.mp4.hls"
    assert requests.get("/".join(other), timeout=5).status_code == 403
    old = links.hls(cluster.link_key, "/hls", row["grp"], row["path"], 60, time.time() - 3600)
    expired = requests.get(cluster.url + old["base"] + "master.m3u8", timeout=5)
    assert expired.status_code == 410 and expired.json()["error"]["code"] == "link_expired"
    assert (
        requests.get(f"{cluster.url}/hls/{row['grp']}/{row['path']}.hls/master.m3u8", timeout=5).status_code
        == 403
    )
    assert requests.put(url, data=b"x", timeout=5).status_code in (403, 405)
    client.delete(user, src.name)
    deadline = time.monotonic() + 3  # nginx keeps a descriptor valid for a second
    while (gone := requests.get(url, timeout=5).status_code) != 404 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gone == 404


def test_another_codec_gets_a_transcoded_ladder(
    client: Client, cluster: DevCluster, conn: Connection, tmp_path: Path
) -> None:
    src = clip(tmp_path / "old.avi", "-c:v", "mpeg4", "-c:a", "mp3", size="854x480", secs=3)
    row = upload(client, cluster, conn, src)
    ran = drain(cluster, conn, row["grp"], row["sid"])
    # the first rendition (480p) is transcoded first; then the rest of the ladder
    assert ran[:2] == ["probe", "hls:480p"] and set(ran[2:]) == {"hls:360p", "poster", "sprite"}
    got = client.media(user_of(conn, row["sid"]), src.name)
    assert got["state"] == "ready" and {r["name"]: r["state"] for r in got["renditions"]} == {
        "480p": "done",
        "360p": "done",
    }
    master = requests.get(got["hls"], timeout=5).text
    assert master.count("#EXT-X-STREAM-INF") == 2 and "RESOLUTION=854x480" in master
    assert "RESOLUTION=640x360" in master and 'CODECS="avc1.' in master
    for variant in ("480p", "360p"):
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name,height",
             "-of", "csv=p=0", got["hls"].replace("master.m3u8", f"{variant}/index.m3u8")],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        assert out.splitlines()[0] == f"h264,{variant[:-1]}"


def test_an_app_s_own_ladder(
    client: Client, cluster: DevCluster, conn: Connection, tmp_path: Path, admin_env: dict[str, str]
) -> None:
    """``mediagrid-admin app ladder``: the app's rungs, for the files probed from then on."""
    admin = [sys.executable, "-m", "mediagrid.admin", "app", "ladder", "demo"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*admin, *args], env=admin_env, capture_output=True, text=True, timeout=60)

    assert run().stdout.strip() == "media_ladder=default"
    refused = run("--rungs", "720p,999p")
    assert refused.returncode != 0 and "unknown rung 999p" in refused.stderr
    assert run("--rungs", "240p, 480p").stdout.strip() == "media_ladder=480p,240p"  # tallest first
    try:
        src = clip(tmp_path / "own.avi", "-c:v", "mpeg4", "-c:a", "mp3", size="854x480", secs=2)
        row = upload(client, cluster, conn, src)
        ran = drain(cluster, conn, row["grp"], row["sid"])
        assert ran[:2] == ["probe", "hls:480p"] and set(ran[2:]) == {"hls:240p", "poster", "sprite"}
        master = requests.get(client.media(user_of(conn, row["sid"]), src.name)["hls"], timeout=5).text
        assert "RESOLUTION=428x240" in master and "RESOLUTION=640x360" not in master
    finally:
        assert run("--default").stdout.strip() == "media_ladder=default"
    assert subprocess.run(
        [sys.executable, "-m", "mediagrid.admin", "app", "ladder", "nosuchapp"],
        env=admin_env, capture_output=True, text=True, timeout=60,
    ).returncode != 0  # fmt: skip


def test_a_stopping_worker_gives_its_job_back(
    client: Client, cluster: DevCluster, conn: Connection, tmp_path: Path
) -> None:
    src = clip(tmp_path / "long.mkv", "-c:v", "mpeg4", "-c:a", "mp3", size="854x480", secs=20)
    row = upload(client, cluster, conn, src)
    node = worker.Node(f"wk-{uuid.uuid4().hex[:6]}", row["grp"], cluster.group_dir(row["grp"]), budget=4.0)
    while (job := worker.run_once(conn, node)) is not None and job.sid != row["sid"]:
        pass  # other tests' leftovers, then this file's probe
    threading.Timer(1.0, node.stop.set).start()  # the service is told to stop mid-transcode
    job = worker.run_once(conn, node)
    assert job is not None and job.kind == "hls:480p"
    with conn.cursor() as cur:
        cur.execute("SELECT state, attempts, node_id FROM media_jobs WHERE id = %s", (job.id,))
        assert cur.fetchone() == {"state": "queued", "attempts": 0, "node_id": None}
    conn.commit()
    folder = cluster.group_dir(row["grp"]) / f"{row['path']}.hls"
    assert not any(folder.iterdir()) if folder.exists() else True  # nothing partial is left
    assert drain(cluster, conn, row["grp"], row["sid"])[0] == "hls:480p"  # another node finishes it
    assert client.media(user_of(conn, row["sid"]), src.name)["state"] == "ready"


def _rotated(tmp_path: Path) -> Path:
    """A phone video: H.264 stored 320x240 with a 90 degree display rotation (set by a
    stream copy: this ffmpeg keeps the tag only then)."""
    plain = clip(tmp_path / "plain.mp4", *H264_AAC, secs=2)
    return ffmpeg(tmp_path / "phone.mp4", "-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90")


def _corrupt(tmp_path: Path) -> Path:
    """An MPEG-4 Part 2 video whose middle is overwritten with garbage (corrupt frames)."""
    src = clip(tmp_path / "broken.avi", "-c:v", "mpeg4", "-c:a", "mp3", size="640x360", secs=4)
    data = bytearray(src.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8192] = os.urandom(8192)
    src.write_bytes(bytes(data))
    return src


def test_bad_and_odd_inputs_end_in_a_clear_state(
    client: Client, cluster: DevCluster, conn: Connection, tmp_path: Path
) -> None:
    audio = ffmpeg(tmp_path / "song.m4a", "-f", "lavfi", "-i", "sine=frequency=330", "-t", "3", "-c:a", "aac")
    vfr = ffmpeg(
        tmp_path / "vfr.mp4", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-t", "3",
        "-vf", "select='not(mod(n\\,3))+eq(mod(n\\,7)\\,1)'", "-fps_mode", "vfr",
        "-c:v", "libx264", "-pix_fmt", "yuv420p",
    )  # fmt: skip
    cases = {"audio": audio, "rotated": _rotated(tmp_path), "vfr": vfr, "corrupt": _corrupt(tmp_path)}
    rows = {name: upload(client, cluster, conn, src) for name, src in cases.items()}
    for row in rows.values():
        drain(cluster, conn, row["grp"], row["sid"])
    got = {name: client.media(user_of(conn, row["sid"]), cases[name].name) for name, row in rows.items()}
    for name, state in got.items():  # every job ended; nothing is left running or queued
        assert all(j["state"] in ("done", "failed") for j in state["jobs"]), (name, state["jobs"])
    # audio alone: an AAC rendition, no pictures
    assert got["audio"]["state"] == "ready" and got["audio"]["info"]["kind"] == "audio"
    assert [r["name"] for r in got["audio"]["renditions"]] == ["audio"] and got["audio"]["poster"] is None
    master = requests.get(got["audio"]["hls"], timeout=5).text
    assert 'CODECS="mp4a.40.2"' in master and "RESOLUTION" not in master
    # the phone video plays upright: transcoded (not copied), 240 wide and 320 high
    rotated = got["rotated"]
    assert rotated["state"] == "ready" and rotated["info"]["video"]["rotation"] in (90, 270)
    assert "source" not in [r["name"] for r in rotated["renditions"]]
    assert "RESOLUTION=240x320" in requests.get(rotated["hls"], timeout=5).text
    # variable frame rate: copied, and it plays for its whole length
    assert got["vfr"]["state"] == "ready" and got["vfr"]["info"]["video"]["vfr"]
    # corrupt frames: the decoder conceals them and the transcode completes, or the
    # rendition fails with a code; either way a clear state
    corrupt = got["corrupt"]
    assert corrupt["state"] == "ready" or (corrupt["state"] == "failed" and corrupt["code"]), corrupt


def test_a_player_asks_for_a_rung_and_a_thumbnail_on_demand(
    client: Client, cluster: DevCluster, conn: Connection, tmp_path: Path
) -> None:
    src = clip(tmp_path / "wide.mp4", *H264_AAC, size="854x480", secs=3)
    row = upload(client, cluster, conn, src)
    drain(cluster, conn, row["grp"], row["sid"])
    got = client.media(user_of(conn, row["sid"]), src.name)
    base = got["hls"].rsplit("/", 1)[0]
    assert "240p" not in requests.get(got["hls"], timeout=5).text  # not in the ladder
    asked = requests.get(f"{base}/240p/index.m3u8", timeout=5)
    assert asked.status_code == 202 and int(asked.headers["Retry-After"]) >= 1, asked.text
    assert asked.json()["state"] == "queued"
    assert requests.get(f"{base}/240p/index.m3u8", timeout=5).status_code == 202  # queued once
    thumb = requests.get(f"{base}/thumb.jpg", params={"t": "1.54"}, timeout=5)  # to a tenth: 1.5
    assert thumb.status_code == 202 and thumb.json()["name"] == "thumb/1.5.jpg", thumb.text
    assert drain(cluster, conn, row["grp"], row["sid"]) == ["hls:240p", "thumb:1.5"]  # on-demand class
    made = requests.get(f"{base}/240p/index.m3u8", timeout=5)
    assert made.status_code == 200 and "#EXT-X-ENDLIST" in made.text
    deadline = time.monotonic() + 3  # now listed (nginx revalidates its descriptor each second)
    while "RESOLUTION=428x240" not in (master := requests.get(got["hls"], timeout=5).text):
        assert time.monotonic() < deadline, master
        time.sleep(0.2)
    picture = requests.get(f"{base}/thumb.jpg?t=1.5", timeout=5)
    assert picture.status_code == 200 and picture.content[:2] == b"\xff\xd8"
    assert picture.headers["Content-Type"] == "image/jpeg"
    assert requests.get(f"{base}/thumb/1.5.jpg", timeout=5).content == picture.content  # made once
    # what cannot be made: a rung above the source, a time past the end, a random name
    for name, status, code in (
        ("1080p/index.m3u8", 404, "no_such_rung"), ("thumb.jpg?t=99", 404, "no_such_time"),
        ("nothing.txt", 404, "no_such_rendition"), ("thumb.jpg?t=abc", 400, "bad_time"),
        ("thumb.jpg", 400, "bad_time"), ("thumb.jpg?t=-1", 400, "bad_time"),
    ):  # fmt: skip
        refused = requests.get(f"{base}/{name}", timeout=5)
        assert (refused.status_code, refused.json()["error"]["code"]) == (status, code), name


def test_the_service_runs_the_queue_and_stops_cleanly(
    client: Client, cluster: DevCluster, conn: Connection, tmp_path: Path
) -> None:
    src = clip(tmp_path / "served.mp4", *H264_AAC, secs=2)
    row = upload(client, cluster, conn, src)
    conf = Settings.from_mapping(
        {
            "DB_HOST": "127.0.0.1",
            "DB_PORT": cluster.db_port,
            "DB_USER": "mediagrid",
            "DB_PASSWORD": cluster.db_password,
            "NODE_ID": f"svc-{uuid.uuid4().hex[:6]}",
            "GROUP": row["grp"],
            "DATA_DIR": str(cluster.group_dir(row["grp"])),
            "WORKER_POLL": 0.1,
            "WORKER_SLOTS": 2,
        }
    )
    stop = threading.Event()
    service = threading.Thread(target=worker.serve, args=(conf, stop))
    service.start()
    try:
        deadline = time.monotonic() + 60
        while client.media(user_of(conn, row["sid"]), src.name)["state"] != "ready":
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        stop.set()
        service.join(30)
    assert not service.is_alive()
