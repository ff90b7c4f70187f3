"""Failure drills on the lab: parts of the cluster fail while a bounded prober or load
runs against it; nothing acknowledged is lost and service comes back by itself.

Every drill puts the lab back as it found it (nodes started, VIPs on their first
holders, groups healed), so the drills run in any order and the other suites after
them. Figures go to build/lab/drills.json and the test log (`-s`); docs/reliability.md
records them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from mediagrid.client import Client, MediagridError
from mediagrid.signing import signed_headers

from .conftest import GROUPS, Lab, docker, sql
from .drills import (
    FRONT,
    STORAGE,
    VIP,
    Prober,
    brick_files,
    died_at,
    free_bytes,
    front_back,
    heal_entries,
    holders,
    http_status,
    put_text,
    record,
    storage_back,
    wait_until,
)

RUN = uuid.uuid4().hex[:6]
SEEK = 256 << 10  # bytes a player asks for after a seek


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def user_in(client: Client, group: str, prefix: str) -> str:
    return next(u for u in (f"{prefix}{i}-{RUN}" for i in range(200)) if client.storages(u)["group"] == group)


def drill_client(lab: Lab) -> Client:
    """A client as an application would configure it: short timeouts, so a request stuck
    on a dead node fails over in seconds instead of minutes."""
    return lab.client(timeout=10)


def write_files(tmp: Path, count: int, low: int, high: int, seed: int) -> list[Path]:
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        path = tmp / f"f{i:04d}.bin"
        path.write_bytes(rnd.randbytes(rnd.randint(low, high)))
        out.append(path)
    return out


# -- 1 ---------------------------------------------------------------------------------------
def test_drill1_kill_vip_holder(lab: Lab, tmp_path: Path) -> None:
    """docker kill the cluster VIP holder while 20 probes/s and client uploads and downloads
    run: takeover within 1 s of its death, and every client operation succeeds through its
    retries."""
    client = drill_client(lab)
    (holder,) = holders(VIP, list(FRONT))
    other = next(n for n in FRONT if n != holder)
    user = f"d1-{RUN}"
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(32 << 20))
    client.upload(big, user, "big.bin")
    small = write_files(tmp_path, 4, 256 << 10, 1 << 20, 1)
    stop = threading.Event()
    done: dict[str, int] = {"upload": 0, "download": 0}
    failures: list[str] = []

    def work(kind: str, n: int) -> None:
        c = drill_client(lab)
        while not stop.is_set():
            try:
                if kind == "upload":
                    got = c.upload(small[n], user, f"small{n}.bin", overwrite=True)
                    assert got["sha256"] == sha(small[n].read_bytes())
                else:
                    buf = io.BytesIO()
                    assert c.download(user, "big.bin", buf)["size"] == big.stat().st_size
                    assert sha(buf.getvalue()) == sha(big.read_bytes())
                done[kind] += 1
            except Exception as err:
                failures.append(f"{kind}: {err!r}")

    workers = [threading.Thread(target=work, args=(k, n)) for k in ("upload", "download") for n in range(2)]
    try:
        with Prober(VIP, rate=20) as prober:
            for w in workers:
                w.start()
            time.sleep(3)
            wall, started = time.time(), time.monotonic()
            docker("kill", holder)
            cli_s = time.monotonic() - started
            died = died_at(holder, wall, started)
            wait_until("the other node answers on the VIP", lambda: prober.first_ok_from(other, started), 10)
            time.sleep(4)  # operations that were in flight finish through their retries
            stop.set()
            for w in workers:
                w.join(timeout=120)
        # The outage starts when the holder died (docker's record of it) or when a probe first
        # failed, whichever came first; not when the docker CLI was started.
        killed = min(died, prober.first_failure(started) or died)
        takeover = prober.first_ok_from(other, killed) - killed
        errors = prober.errors(started)
    finally:
        stop.set()
        docker("start", holder)
        front_back(holder)
    record(
        "drill1_kill_vip_holder",
        {
            "takeover_s": round(takeover, 3),
            "kill_cli_s": round(cli_s, 3),
            **errors,
            **{f"{k}s_ok": v for k, v in done.items()},
        },
    )
    assert not failures, failures
    assert done["upload"] > 0 and done["download"] > 0
    assert takeover <= 1.0


# -- 2 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("service", ["nginx", "mediagrid-tracker"])
def test_drill2_dead_service_moves_the_vip(lab: Lab, service: str) -> None:
    """Stop only nginx, then only the tracker, on the VIP holder: the health checks move
    the VIP to the other front node."""
    (holder,) = holders(VIP, list(FRONT))
    other = next(n for n in FRONT if n != holder)
    try:
        with Prober(VIP, rate=20) as prober:
            time.sleep(1)
            stopped = time.monotonic()
            docker("exec", holder, "systemctl", "stop", service)
            wait_until("the other node answers on the VIP", lambda: prober.first_ok_from(other, stopped), 15)
            time.sleep(1)
        moved = prober.first_ok_from(other, stopped) - stopped
        errors = prober.errors(stopped)
        assert holders(VIP, list(FRONT)) == [other]
    finally:
        docker("exec", holder, "systemctl", "start", service)
        front_back(holder)
    record(f"drill2_stop_{service}", {"vip_moved_s": round(moved, 3), **errors})
    assert moved <= 5.0


# -- 3 ---------------------------------------------------------------------------------------
def test_drill3_kill_storage_during_200_uploads(lab: Lab, tmp_path: Path) -> None:
    """docker kill the storage node taking a stream of 200 uploads: OFFLINE within 6 s,
    every acknowledged upload downloads byte-identical, no partial file is ever listed."""
    client = drill_client(lab)
    users = [user_in(client, "g1", f"d3u{k}-") for k in range(2)]
    victim = client.storages(users[0])["storages"][0]["node_id"]
    files = write_files(tmp_path, 200, 16 << 10, 1 << 20, 3)
    jobs = list(enumerate(files))
    lock = threading.Lock()
    acked: dict[tuple[str, str], str] = {}
    failures: list[str] = []
    partial: list[str] = []
    stop = threading.Event()

    def upload() -> None:
        c = drill_client(lab)
        while True:
            with lock:
                if not jobs:
                    return
                i, path = jobs.pop(0)
            user, fid = users[i % 2], f"u{i:04d}.bin"
            try:
                got = c.upload(path, user, fid)
                assert got["sha256"] == sha(path.read_bytes()), "acknowledged with a wrong checksum"
                with lock:
                    acked[(user, fid)] = got["sha256"]
            except Exception as err:
                failures.append(f"{fid}: {err!r}")

    def watch() -> None:
        """Whatever the API lists is whole: its bytes match the listed checksum."""
        c = drill_client(lab)
        checked: set[tuple[str, str]] = set()
        while not stop.is_set():
            for user in users:
                try:
                    listed = c.list(user)
                except MediagridError:
                    continue
                for f in listed:
                    key = (user, f["file_id"])
                    if key in checked:
                        continue
                    buf = io.BytesIO()
                    try:
                        c.download(user, f["file_id"], buf)
                    except MediagridError as err:
                        partial.append(f"{key}: {err!r}")
                        continue
                    if sha(buf.getvalue()) != f["sha256"] or len(buf.getvalue()) != f["size"]:
                        partial.append(f"{key}: bytes do not match the listing")
                    checked.add(key)
            stop.wait(0.2)

    uploaders = [threading.Thread(target=upload) for _ in range(4)]
    watcher = threading.Thread(target=watch)
    try:
        for t in [*uploaders, watcher]:
            t.start()
        wait_until("50 uploads acknowledged", lambda: len(acked) >= 50, 120)
        killed = time.monotonic()
        docker("kill", victim)
        offline = lab.wait_states({victim: "OFFLINE"}, 15)
        offline_s = time.monotonic() - killed
        for t in uploaders:
            t.join(timeout=600)
        stop.set()
        watcher.join(timeout=120)
    finally:
        stop.set()
        storage_back(lab, victim, "g1")
    del offline
    # every acknowledged upload, byte-identical through the VIP, on both bricks' nodes
    by_name = {f"u{i:04d}.bin": p for i, p in enumerate(files)}
    bad = []
    for (user, fid), digest in acked.items():
        buf = io.BytesIO()
        client.download(user, fid, buf)
        if sha(buf.getvalue()) != digest or digest != sha(by_name[fid].read_bytes()):
            bad.append(fid)
    rows = int(sql(f"SELECT COUNT(*) FROM files WHERE user IN ('{users[0]}', '{users[1]}')")[0][0])
    parts = [f for f in brick_files(victim, "g1") if f.startswith(".tmp/")]
    # uploads the victim was writing in place when it died: never listed, swept by the agents
    in_flight = int(sql(f"SELECT COUNT(*) FROM uploads WHERE node = '{victim}'")[0][0])
    record(
        "drill3_kill_storage_during_uploads",
        {
            "uploads": len(files),
            "acknowledged": len(acked),
            "failed": len(failures),
            "offline_detected_s": round(offline_s, 2),
            "rows": rows,
            "stale_parts_on_volume": len(parts),
            "in_flight_uploads_left": in_flight,
        },
    )
    assert not bad, f"acknowledged uploads that do not read back: {bad}"
    assert not partial, partial
    assert rows == len(acked), "a row without an acknowledged upload (or the reverse)"
    assert not failures, failures  # the client fails over to the peer: nothing is refused
    assert offline_s <= 6.0


# -- 4 ---------------------------------------------------------------------------------------
def test_drill4_kill_storage_under_20_readers(lab: Lab, tmp_path: Path, clip: Path) -> None:
    """docker kill a storage node of the group while 20 clients read and seek the same
    video through the VIP: no failed request; the longest stall is reported (≤ 4 s)."""
    client = drill_client(lab)
    user = user_in(client, "g1", "d4-")
    video = tmp_path / "video.mp4"
    video.write_bytes(clip.read_bytes() + os.urandom(96 << 20))  # a playable head, a long tail
    client.upload(video, user, "video.mp4")
    data = video.read_bytes()
    url = client.playback_url(user, "video.mp4")
    stop = threading.Event()
    lat: list[tuple[float, float]] = []
    failures: list[str] = []

    def reader(seed: int) -> None:
        rnd, session = random.Random(seed), requests.Session()
        while not stop.is_set():
            start = rnd.randrange(0, len(data) - SEEK)
            t0 = time.monotonic()
            try:
                got = session.get(url, headers={"Range": f"bytes={start}-{start + SEEK - 1}"}, timeout=15)
                if got.status_code != 206 or got.content != data[start : start + SEEK]:
                    failures.append(f"{got.status_code} at {start}")
            except requests.RequestException as err:
                failures.append(repr(err))
            lat.append((t0, time.monotonic() - t0))

    readers = [threading.Thread(target=reader, args=(n,)) for n in range(20)]
    victim = "s1a"
    try:
        for t in readers:
            t.start()
        time.sleep(4)
        killed = time.monotonic()
        docker("kill", victim)
        time.sleep(12)
        stop.set()
        for t in readers:
            t.join(timeout=60)
    finally:
        stop.set()
        storage_back(lab, victim, "g1")
    client.delete(user, "video.mp4")
    before = [d for t, d in lat if t < killed]
    after = [d for t, d in lat if t >= killed]
    stall = max((d for t, d in lat if t + d >= killed), default=0.0)
    record(
        "drill4_kill_storage_under_readers",
        {
            "requests": len(lat),
            "failed": len(failures),
            "longest_stall_s": round(stall, 3),
            "p50_before_ms": round(sorted(before)[len(before) // 2] * 1000, 1),
            "requests_after_kill": len(after),
        },
    )
    assert not failures, failures[:10]
    assert after, "no request completed after the kill"
    assert stall <= 4.0


# -- 5 ---------------------------------------------------------------------------------------
def test_drill5_disconnect_and_heal(lab: Lab, tmp_path: Path) -> None:
    """Cut a storage node off the network, write while it is away, reconnect it: GlusterFS
    heals it, and it is not offered for uploads until its group is healed, then ACTIVE."""
    client = drill_client(lab)
    user = user_in(client, "g1", "d5-")
    victim, peer = "s1b", "s1a"
    files = write_files(tmp_path, 60, 256 << 10, 2 << 20, 5)
    network = docker("inspect", "-f", "{{range $k, $_ := .NetworkSettings.Networks}}{{$k}}{{end}}", victim)
    network = network.strip()
    timeline: dict[str, Any] = {}
    offered_unhealed: list[str] = []
    try:
        docker("network", "disconnect", network, victim)
        cut = time.monotonic()
        lab.wait_states({victim: "OFFLINE"}, 15)
        timeline["offline_s"] = round(time.monotonic() - cut, 2)
        for i, path in enumerate(files):
            assert client.upload(path, user, f"away{i:03d}.bin")["node_id"] == peer
        rows = {f"away{i:03d}.bin": r for i, r in enumerate(files)}
        timeline["pending_heals_on_peer"] = heal_entries(peer, "g1")
        docker("network", "connect", "--ip", STORAGE[victim], network, victim)
        back = time.monotonic()
        states: list[str] = []
        while time.monotonic() - back < 180:
            # the upload list first, then the state: read the other way round, a node that
            # turns ACTIVE between the two reads is seen offered while "still SYNCING"
            offered = [s["node_id"] for s in client.storages(user)["storages"]]
            state = lab.states()[victim]
            if not states or states[-1] != state:
                states.append(state)
                timeline[f"{state.lower()}_after_s"] = round(time.monotonic() - back, 2)
            if victim in offered:
                pending = heal_entries(peer, "g1")
                if pending:
                    offered_unhealed.append(f"offered with {pending} heals pending")
                break
            time.sleep(0.2)
        timeline["states"] = states
    finally:
        if network not in docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", victim):
            docker("network", "connect", "--ip", STORAGE[victim], network, victim)
        storage_back(lab, victim, "g1")
    on_brick = brick_files(victim, "g1")
    # The reconnected interface came back under a new name (eth1), which keepalived's
    # configuration does not name: restart the node so the lab is as it was.
    docker("restart", "-t", "2", victim)
    storage_back(lab, victim, "g1")
    paths = dict(sql(f"SELECT file_id, path FROM files WHERE user='{user}'"))
    missing = [name for name in rows if paths[name] not in on_brick]
    record("drill5_disconnect_and_heal", timeline)
    assert not offered_unhealed, offered_unhealed
    assert states[-1] == "ACTIVE", states
    assert not missing, f"not healed onto {victim}: {missing[:5]}"


# -- 6 ---------------------------------------------------------------------------------------
def test_drill6_mariadb_stopped(lab: Lab, tmp_path: Path) -> None:
    """Stop MariaDB: the API answers 503 db_unavailable, nothing is half-written, and the
    service comes back by itself when MariaDB does."""
    client = drill_client(lab)
    user = user_in(client, "g2", "d6-")
    src = tmp_path / "kept.bin"
    src.write_bytes(os.urandom(1 << 20))
    client.upload(src, user, "kept.bin")
    storage = client.storages(user)["storages"][0]["url"]
    nodes = GROUPS["g2"]
    files_before = {n: brick_files(n, "g2") for n in nodes}
    rows_before = int(sql("SELECT COUNT(*) FROM files")[0][0])
    token = client.token()
    put_path = f"/api/v1/files/{lab.app}/{user}/during.bin"
    seen: dict[str, tuple[int, str]] = {}

    def err(resp: requests.Response) -> tuple[int, str]:
        assert resp.headers["Content-Type"].startswith("application/json"), resp.text[:200]
        return resp.status_code, resp.json()["error"]["code"]

    docker("exec", "db1", "systemctl", "stop", "mariadb")
    stopped = time.monotonic()
    try:
        time.sleep(1)
        seen["upload"] = err(
            requests.put(
                storage + put_path,
                data=os.urandom(1 << 20),
                headers=signed_headers(lab.app, lab.secret, "PUT", put_path),
                timeout=30,
            )
        )
        seen["download"] = err(requests.get(client.playback_url(user, "kept.bin"), timeout=30))
        seen["lookup_new_user"] = err(
            requests.get(
                f"{lab.url}/api/v1/storages",
                params={"app": lab.app, "user": f"new-{RUN}"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
        )
        listing = f"{lab.url}/api/v1/files/{lab.app}/{user}"
        seen["list"] = err(requests.get(listing, headers={"Authorization": f"Bearer {token}"}, timeout=30))
        outage = time.monotonic() - stopped
    finally:
        docker("exec", "db1", "systemctl", "start", "mariadb")
    again = tmp_path / "after.bin"
    again.write_bytes(os.urandom(1 << 20))

    def serves() -> bool:
        c = lab.client(timeout=10, retry_for=0)
        buf = io.BytesIO()
        c.download(user, "kept.bin", buf)
        c.upload(again, user, "after.bin", overwrite=True)
        return buf.getvalue() == src.read_bytes() and c.storages(f"new-{RUN}")["group"] in GROUPS

    recovered = wait_until("service back after MariaDB restarts", serves, 60, step=0.5)
    after_files = {n: brick_files(n, "g2") for n in nodes}
    rows_after = int(sql("SELECT COUNT(*) FROM files")[0][0])
    new_files = {n: after_files[n] - files_before[n] for n in nodes}
    record(
        "drill6_mariadb_stopped",
        {
            "answers_during_outage": {k: f"{s} {c}" for k, (s, c) in seen.items()},
            "outage_probed_s": round(outage, 2),
            "recovered_s": round(recovered, 2),
        },
    )
    assert all(v == (503, "db_unavailable") for v in seen.values()), seen
    # exactly one new row and one new file per brick: after.bin; nothing from the outage
    assert rows_after == rows_before + 1
    assert all(len(v) == 1 and not any(f.startswith(".tmp/") for f in v) for v in new_files.values()), (
        new_files
    )
    assert recovered <= 30


# -- 7 ---------------------------------------------------------------------------------------
def refuse_big_bodies(
    token: str, app: str, user: str, body: Path, nodes: list[str], tries: int
) -> Counter[str]:
    """PUT ``body``, far over the room left, to each node ``tries`` times, declared and
    chunked, without Expect (curl, which reads an early answer while it still sends): the
    answers, as "<status> <error code>"."""
    seen: Counter[str] = Counter()
    for node in nodes:
        for chunked in (False, True):
            for _ in range(tries):
                url = f"http://{STORAGE[node]}:8080/api/v1/files/{app}/{user}/big-{uuid.uuid4().hex}.bin"
                argv = ["curl", "-s", "-w", "\n%{http_code}", "-T", str(body), "-H", "Expect:"]
                argv += ["-H", f"Authorization: Bearer {token}"]
                if chunked:
                    argv += ["-H", "Transfer-Encoding: chunked"]
                out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=120).stdout
                text, _, status = out.rpartition("\n")
                try:
                    code = json.loads(text)["error"]["code"]
                except (ValueError, KeyError, TypeError):
                    code = repr(text[:60])
                seen[f"{status} {code}"] += 1
    return seen


def test_drill7_fill_group_to_reserve(lab: Lab, tmp_path: Path) -> None:
    """Raise g2's reserve to just under its free space and fill it: uploads to g2 get 507,
    new users go to g1, g2's files stay readable and g1 keeps taking uploads."""
    client = drill_client(lab)
    full, other = "g2", "g1"
    user = user_in(client, full, "d7-")
    keep = tmp_path / "keep.bin"
    keep.write_bytes(os.urandom(1 << 20))
    client.upload(keep, user, "keep.bin")
    originals = {
        (n, svc): docker("exec", n, "cat", f"/etc/mediagrid/{svc}.toml")
        for n in GROUPS[full]
        for svc in ("storage", "agent")
    }
    reserve = min(free_bytes(n, f"/srv/mediagrid/{full}") for n in GROUPS[full]) - (48 << 20)

    def set_reserve(value: int | None) -> None:
        """RESERVE_BYTES of the group's shims and agents (None: the deployed files back)."""
        for (node, svc), text in originals.items():
            if value is not None:
                kept = [ln for ln in text.splitlines() if not ln.startswith("RESERVE_BYTES")]
                text = "\n".join([*kept, f"RESERVE_BYTES = {value}"]) + "\n"
            put_text(node, f"/etc/mediagrid/{svc}.toml", text)
        for node in GROUPS[full]:
            docker("exec", node, "systemctl", "restart", "mediagrid-storage", "mediagrid-agent")
        for node in GROUPS[full]:
            up = lambda n=node: http_status(STORAGE[n], "/healthz", 8080)[0] == 200  # noqa: E731
            wait_until(f"{node} serves", up, 60)
        lab.wait_states({n: "ACTIVE" for n in GROUPS[full]}, 60)

    filler = tmp_path / "fill.bin"
    filler.write_bytes(os.urandom(8 << 20))
    stored: list[str] = []
    refused: tuple[int, str] | None = None
    try:
        set_reserve(reserve)
        for i in range(20):
            try:
                client.upload(filler, user, f"fill{i:02d}.bin")
                stored.append(f"fill{i:02d}.bin")
            except MediagridError as err:
                refused = (err.status, err.code)
                break

        def group_full() -> bool:
            """The tracker's view: less room left than one more upload needs."""
            group = next(g for g in lab.admin().groups()["groups"] if g["name"] == full)
            return group["free"] < filler.stat().st_size

        wait_until("the tracker sees the group full", group_full, 10)
        # a big refused body gets the JSON 507 too, not nginx's 502: the shim drains it first
        big = tmp_path / "big.bin"
        with big.open("wb") as fh:
            fh.truncate(256 << 20)  # sparse: read back as zeros
        big_answers = refuse_big_bodies(client.token(), lab.app, user, big, GROUPS[full], 3)
        newcomers = {client.storages(f"d7new{i}-{RUN}")["group"] for i in range(20)}
        buf = io.BytesIO()
        client.download(user, "keep.bin", buf)
        readable = buf.getvalue() == keep.read_bytes()
        elsewhere = client.upload(keep, user_in(client, other, "d7o-"), "k.bin")["group"]
    finally:
        for name in stored:
            client.delete(user, name)
        set_reserve(None)

        def as_free_as_before() -> bool:
            """The tracker has the deployed reserve again: new users may land in the group
            (the groups share one disk here, so they are about as free as each other)."""
            free = {g["name"]: g["free"] for g in lab.admin().groups()["groups"]}
            return free[full] >= 0.97 * free[other]

        wait_until("the group is back in the assignment", as_free_as_before, 15)
    record(
        "drill7_fill_group_to_reserve",
        {
            "filled_mib": len(stored) * 8,
            "refused": refused,
            "refused_256mib_bodies": dict(big_answers),
            "new_users_went_to": sorted(newcomers),
        },
    )
    assert refused == (507, "insufficient_storage")
    assert big_answers == Counter({"507 insufficient_storage": 12}), big_answers
    assert newcomers == {other}
    assert readable and elsewhere == other
