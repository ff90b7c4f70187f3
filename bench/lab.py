#!/usr/bin/env python3
"""Benchmarks on the running lab (`make lab`), each against a baseline measured in the same run.

a. playback of a large file through the cluster VIP (signed URL: front nginx + gateway,
   bytes from the front node's GlusterFS mount), vs a second nginx in the same container
   serving a copy of the file from the container's local disk;
b. 4 KB playbacks/s through the VIP (wrk), by signed URL (gateway) and by direct link
   (nginx alone), vs the same 4 KB file from that second nginx;
c. upload of a large file with the CLI (`mediagrid upload`), vs copying the same file (from
   the storage container's local disk) onto the group mount there, fsync included;
d. 64 KB uploads/s (wrk, signed by a bearer token, PUT to the storage URL the tracker hands
   out), vs the shim's file-system work alone on the group mount, same concurrency;
e. tracker lookups/s (32 connections) and p99 (8), vs nginx answering a static 200 on the
   VIP holder.

Run it under the lab lock: `flock /tmp/mediagrid-lab.lock .venv/bin/python bench/lab.py`.
Everything it creates (files in the cluster, the second nginx, scratch files in containers)
is removed at the end. --quick: 64 MiB files, 5 s per load point, one upload run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cpu
from common import curl_time, paced_lua, table, users_lua, write_between, wrk

from mediagrid.client import Client
from mediagrid_dev.lab import ADMIN_APP, admin_secret

ROOT = Path(__file__).resolve().parents[1]
PREFIX = os.environ.get("LAB_NET_PREFIX", "10.77.0")
VIP = f"{PREFIX}.10"
SCRATCH = "/var/tmp/mediagrid-bench"  # container-local disk (overlay), not a group mount
MOUNTS = "/srv/mediagrid"
BASE_PORT = 18081
START, END = "<!-- lab results start -->", "<!-- lab results end -->"
USER = "benchlab"  # large and 4 KB files
UP_USER = "benchlab-up"  # 64 KB uploads
BENCH_DIR = ".bench-lab"  # scratch directory on a group mount
LOOKUP_CALLS = 300  # signed vs bearer lookups (g), one at a time
LOOKUP_USERS = 64  # benchlab-l0..63: a fixed set, so runs add no routes after the first
PACE_MS = 8  # p99 at a bounded load: 8 connections, each waiting 8 ms between requests

BASELINE_NGINX = f"""
worker_processes auto;
pid {SCRATCH}/nginx.pid;
error_log {SCRATCH}/error.log;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    access_log {SCRATCH}/access.log;
    client_body_temp_path {SCRATCH}/tmp;
    proxy_temp_path {SCRATCH}/tmp;
    fastcgi_temp_path {SCRATCH}/tmp;
    uwsgi_temp_path {SCRATCH}/tmp;
    scgi_temp_path {SCRATCH}/tmp;
    server {{
        listen {BASE_PORT};
        root {SCRATCH}/www;
        location = /ok {{
            default_type application/json;
            return 200 '{{"ok": true}}';
        }}
    }}
}}
"""

# The shim's file-system work for one upload, without HTTP, auth, ids or MariaDB: "in-place"
# (raw bodies): create the file in its leaf directory, write, fsync; "rename" (multipart
# uploads, and every upload before in-place writes): create a temporary file, write, fsync,
# rename it into a leaf directory, fsync the directory. "packed" is not what the shim does but
# the design alternative for small files (FastDFS's trunk files): append each body to one of
# two shared files (one per shim worker), at an offset reserved under a lock, and fdatasync.
FS_WRITES = """
import os, sys, tempfile, threading, time
root, size, threads, duration = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
mode = sys.argv[5]
data = os.urandom(size)
tmp = os.path.join(root, ".tmp")
os.makedirs(tmp, exist_ok=True)
for t in range(threads):
    os.makedirs(os.path.join(root, "%02x" % t), exist_ok=True)
counts = [0] * threads
end = time.monotonic() + duration
n_packs = 2 if mode == "packed" else 0
packs = [os.open(os.path.join(root, "pack%d" % i), os.O_RDWR | os.O_CREAT, 0o644) for i in range(n_packs)]
ends, locks = [0, 0], [threading.Lock(), threading.Lock()]
def work(t):
    leaf = os.path.join(root, "%02x" % t)
    while time.monotonic() < end:
        if mode == "packed":
            i = t % 2
            with locks[i]:
                offset = ends[i]
                ends[i] += size
            os.pwrite(packs[i], data, offset)
            os.fdatasync(packs[i])
            counts[t] += 1
            continue
        if mode == "in-place":
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            fd = os.open(os.path.join(leaf, "%d.bin" % counts[t]), flags, 0o644)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            counts[t] += 1
            continue
        fd, name = tempfile.mkstemp(dir=tmp, suffix=".part")
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.rename(name, os.path.join(leaf, "%d.bin" % counts[t]))
        dfd = os.open(leaf, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        counts[t] += 1
start = time.monotonic()
workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
print(sum(counts), time.monotonic() - start)
"""


def put_lua(path: str, prefix: str, size: int) -> str:
    """A wrk script PUTting ``size``-byte bodies to unique file ids under ``path``."""
    return f"""
wrk.method = "PUT"
wrk.body = string.rep("0123456789abcdef", {size // 16})
wrk.headers["Content-Type"] = "application/octet-stream"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "{path}/{prefix}" .. tid .. "-" .. n .. ".bin")
end
"""


@dataclass
class Node:
    """A lab container, driven with `docker exec` (shell as root)."""

    name: str

    def sh(self, script: str, timeout: float = 600, stdin: str | None = None) -> str:
        argv = ["docker", "exec", "-i", self.name, "sh", "-c", script]
        out = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"{self.name}: {script!r} failed: {out.stderr.strip()}")
        return out.stdout

    def run(self, *argv: str) -> str:
        out = subprocess.run(["docker", "exec", self.name, *argv], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"{self.name}: {argv} failed: {out.stderr.strip()}")
        return out.stdout

    def put(self, src: Path, dst: str) -> None:
        subprocess.run(["docker", "cp", "-q", str(src), f"{self.name}:{dst}"], check=True, timeout=600)
        self.sh(f"chmod 644 {dst} && cat {dst} > /dev/null")  # readable by nginx, in page cache

    def timed(self, script: str) -> float:
        """Seconds ``script`` takes, measured inside the container (no docker exec overhead)."""
        out = self.sh(f"s=$(date +%s%N); {script}; e=$(date +%s%N); echo $((e - s))")
        return int(out.split()[-1]) / 1e9


def sql(query: str) -> list[list[str]]:
    out = Node("db1").run("mariadb", "-N", "-B", "mediagrid", "-e", query)
    return [line.split("\t") for line in out.splitlines() if line]


def admin_client(conf: dict[str, str]) -> Client:
    """The lab's admin app (LAB ONLY secret from the lab inventory): only admin apps see the
    topology (GET /api/v1/groups)."""
    return Client(conf["url"], ADMIN_APP, admin_secret(), ca_file=conf.get("ca_file"), timeout=30)


def wait_ready(client: Client, timeout: float) -> None:
    """Until every storage node the tracker knows is ACTIVE (the lab may be recovering)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            groups = client.groups()["groups"]
            states = {m["node_id"]: m["state"] for g in groups for m in g["members"]}
            if states and all(s == "ACTIVE" for s in states.values()):
                return
        except Exception as err:  # the lab is not answering yet
            states = {"error": str(err)}
        if time.monotonic() > deadline:
            raise SystemExit(f"lab not ready after {timeout:.0f}s: {states}")
        time.sleep(1)


def vip_holder() -> str:
    return requests.get(f"http://{VIP}/healthz", timeout=5).headers["X-Mediagrid-Node"]


def delete_all(conf: dict[str, str], users: list[str]) -> int:
    """Delete every file of the bench users (8 at a time); returns how many."""

    def delete(user: str, file_id: str) -> None:
        Client(conf["url"], conf["app"], conf["secret"], ca_file=conf.get("ca_file"), timeout=60).delete(
            user, file_id
        )

    client = Client(conf["url"], conf["app"], conf["secret"], ca_file=conf.get("ca_file"), timeout=60)
    todo = [(u, f["file_id"]) for u in users for f in client.list(u)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda uf: delete(*uf), todo))
    return len(todo)


@contextmanager
def baseline_nginx(node: Node) -> Iterator[str]:
    """A second nginx on ``node``:BASE_PORT serving SCRATCH/www from local disk."""
    node.sh(f"mkdir -p {SCRATCH}/www {SCRATCH}/tmp && chmod 755 {SCRATCH} {SCRATCH}/www")
    node.sh(f"cat > {SCRATCH}/nginx.conf", stdin=BASELINE_NGINX)
    node.sh(f"nginx -q -t -c {SCRATCH}/nginx.conf -e {SCRATCH}/error.log")
    node.sh(f"nginx -c {SCRATCH}/nginx.conf -e {SCRATCH}/error.log")
    try:
        yield f"http://{VIP}:{BASE_PORT}"
    finally:
        node.sh(
            f"if [ -f {SCRATCH}/nginx.pid ]; then kill -QUIT $(cat {SCRATCH}/nginx.pid);"
            f" for i in $(seq 50); do [ -f {SCRATCH}/nginx.pid ] || break; sleep 0.1; done; fi"
        )


def interleaved(runs: int, *measures: Callable[[], float]) -> list[float]:
    """Median of each measure over ``runs`` interleaved rounds (load drifts hit all alike)."""
    samples: list[list[float]] = [[] for _ in measures]
    for _ in range(runs):
        for i, measure in enumerate(measures):
            samples[i].append(measure())
    return [statistics.median(s) for s in samples]


def rate(calls: int, call: Callable[[int], object]) -> float:
    """Calls per second of ``call(i)`` made one after another."""
    for i in range(10):  # warm: connections open, routes exist
        call(i)
    start = time.perf_counter()
    for i in range(calls):
        call(i)
    return calls / (time.perf_counter() - start)


def met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "build" / "lab" / "client.toml"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    ap.add_argument("--quick", action="store_true", help="64 MiB files, 5 s load points, 1 upload run")
    ap.add_argument("--size-mb", type=int, help="large file size, MiB (default 1024, quick 64)")
    ap.add_argument("--duration", type=int, help="seconds per wrk point (default 10, quick 5)")
    ap.add_argument("--upload-runs", type=int, help="large uploads (default 3, quick 1)")
    ap.add_argument("--play-runs", type=int, help="large playbacks, interleaved (default 5, quick 3)")
    ap.add_argument("--read-conns", type=int, default=64)
    ap.add_argument("--upload-conns", type=int, default=32)
    args = ap.parse_args()
    size_mb = args.size_mb or (64 if args.quick else 1024)
    duration = args.duration or (5 if args.quick else 10)
    upload_runs = args.upload_runs or (1 if args.quick else 3)
    play_runs = args.play_runs or (3 if args.quick else 5)
    t0 = time.monotonic()

    conf = tomllib.loads(Path(args.config).read_text())
    if conf.get("ca_file"):  # curl (curl_time, uploads) verifies the lab's HTTPS with its CA
        os.environ["CURL_CA_BUNDLE"] = conf["ca_file"]
    client = Client(conf["url"], conf["app"], conf["secret"], ca_file=conf.get("ca_file"), timeout=600)
    wait_ready(admin_client(conf), 120)
    front = Node(vip_holder())
    lookup_users = [f"{USER}-l{i}" for i in range(LOOKUP_USERS)]
    bench_users = [USER, UP_USER]
    delete_all(conf, bench_users)  # leftovers of an interrupted run
    where = client.storages(USER)
    group = where["group"]
    env = {**os.environ, "MEDIAGRID_CLIENT_CONFIG": args.config}
    cli = [sys.executable, "-m", "mediagrid.cli"]
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    host = Path(tempfile.mkdtemp(prefix="mediagrid-lab-bench-"))
    big, small = host / "big.bin", host / "small.bin"
    prepared: dict[str, Node] = {}

    def storage_node(name: str, group: str) -> Node:
        """A storage container of ``group`` with the source file on its local disk and a
        scratch directory on its group mount."""
        if name not in prepared:
            node = Node(name)
            node.sh(f"mkdir -p {SCRATCH} {MOUNTS}/{group}/{BENCH_DIR}")
            node.put(big, f"{SCRATCH}/src.bin")
            prepared[name] = node
        return prepared[name]

    try:
        with big.open("wb") as fh:
            for _ in range(size_mb):
                fh.write(os.urandom(1 << 20))
        small.write_bytes(os.urandom(4096))
        mb = size_mb * (1 << 20) / 1e6
        front.sh(f"mkdir -p {SCRATCH}/www")
        front.put(big, f"{SCRATCH}/www/big.bin")
        front.put(small, f"{SCRATCH}/www/small.bin")

        # c. large upload with the CLI vs cp + fsync on the group mount of the same node
        t_up, t_cp = [], []
        for run in range(upload_runs):
            fid = f"big-{run}.bin"
            start = time.perf_counter()
            out = subprocess.run(
                [*cli, "upload", str(big), "--user", USER, "--id", fid, "--json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            t_up.append(time.perf_counter() - start)
            node = storage_node(json.loads(out)["node_id"], group)
            dst = f"{MOUNTS}/{group}/{BENCH_DIR}/cp-{run}.bin"
            t_cp.append(node.timed(f"dd if={SCRATCH}/src.bin of={dst} bs=1M conv=fsync status=none"))
            node.sh(f"rm -f {dst}")
            if run:
                client.delete(USER, fid)
        up, cp = statistics.median(t_up), statistics.median(t_cp)
        rows.append(
            (
                f"c. upload {size_mb} MiB, CLI (`mediagrid upload`)",
                f"{mb / up:,.0f} MB/s",
                f"cp+fsync onto the group mount {mb / cp:,.0f} MB/s",
                f"{cp / up:.2f}x",
                ">= 0.8x",
                met(cp / up >= 0.8),
            )
        )

        # f/g. the same large upload with curl and a bearer token to the storage node's HTTPS
        # and plain HTTP endpoints (f: the cost of TLS), and the CLI's signed upload against
        # curl's over HTTPS (g: the cost of signing the body's digest, one more hash pass)
        target = client.storages(USER)["storages"][0]
        bearer = {"Authorization": "Bearer " + client.token(3600)}
        https_up = target["url"] + f"/api/v1/files/{conf['app']}/{USER}"
        http_up = https_up.replace("https://", "http://", 1).replace(":8443/", ":8080/", 1)

        def curl_put(base: str, fid: str) -> float:
            out = subprocess.run(
                ["curl", "-sf", "-o", "/dev/null", "-w", "%{time_total}", "-T", str(big),
                 "-H", f"Authorization: {bearer['Authorization']}", f"{base}/{fid}?overwrite=1"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            return float(out.stdout)

        t_tls, t_plain = [], []
        for run in range(upload_runs):
            t_tls.append(curl_put(https_up, f"curl-tls-{run}.bin"))
            t_plain.append(curl_put(http_up, f"curl-plain-{run}.bin"))
        up_tls, up_plain = statistics.median(t_tls), statistics.median(t_plain)
        rows.append(
            (
                f"f. TLS: upload {size_mb} MiB to {target['node_id']}, curl, HTTPS",
                f"{mb / up_tls:,.0f} MB/s",
                f"the same over plain HTTP {mb / up_plain:,.0f} MB/s",
                f"{up_plain / up_tls:.2f}x",
                "report",
                "-",
            )
        )
        rows.append(
            (
                f"g. signing: upload {size_mb} MiB, CLI (signed body digest), HTTPS",
                f"{mb / up:,.0f} MB/s",
                f"curl with a bearer token, HTTPS {mb / up_tls:,.0f} MB/s",
                f"{up_tls / up:.2f}x",
                "report",
                "-",
            )
        )

        # a. large playback via the VIP vs nginx from local disk in the same container
        grp, rel = sql(
            f"SELECT grp, path FROM files WHERE app='{conf['app']}' AND user='{USER}' AND file_id='big-0.bin'"
        )[0]
        play_tls = client.playback_url(USER, "big-0.bin", 3600)
        play = play_tls.replace("https://", "http://", 1)  # (a) as before TLS: plain HTTP
        with baseline_nginx(front) as base:
            static = f"{base}/big.bin"
            for url in (play, static):  # warm both
                curl_time(url)
            gw, st = interleaved(play_runs, lambda: curl_time(play), lambda: curl_time(static))
            fuse = statistics.median(
                front.timed(f"dd if={MOUNTS}/{grp}/{rel} of=/dev/null bs=1M status=none") for _ in range(3)
            )
            rows.append(
                (
                    f"a. playback {size_mb} MiB via the VIP (signed URL)",
                    f"{mb / gw:,.0f} MB/s",
                    f"nginx, local disk, same container {mb / st:,.0f} MB/s",
                    f"{st / gw:.2f}x",
                    ">= 0.8x",
                    met(st / gw >= 0.8),
                )
            )
            # f. TLS: the same signed playback via the VIP over HTTPS vs plain HTTP
            tls_t, plain_t = interleaved(play_runs, lambda: curl_time(play_tls), lambda: curl_time(play))
            rows.append(
                (
                    f"f. TLS: playback {size_mb} MiB via the VIP, HTTPS",
                    f"{mb / tls_t:,.0f} MB/s",
                    f"the same URL over plain HTTP {mb / plain_t:,.0f} MB/s",
                    f"{plain_t / tls_t:.2f}x",
                    ">= 0.8x",
                    met(plain_t / tls_t >= 0.8),
                )
            )
            notes.append(
                f"a: reading the same file from the GlusterFS mount on {front.name} with"
                f" dd bs=1M: {mb / fuse:,.0f} MB/s (the ceiling for playback from the mount)."
            )

            # b. 4 KB playbacks/s via the VIP vs the same file from nginx static
            client.upload(small, USER, "small.bin", overwrite=True)
            play4k = client.playback_url(USER, "small.bin", 3600).replace("https://", "http://", 1)
            static4k = f"{base}/small.bin"
            for url in (play4k, static4k):  # warm up
                wrk(url, args.read_conns, 2)
            r4k = wrk(play4k, args.read_conns, duration)
            b4k = wrk(static4k, args.read_conns, duration)
            # the same file by a direct link: nginx checks the token, no service involved
            link_tls = client.direct_link(USER, "small.bin", 3600)["url"]
            link4k = link_tls.replace("https://", "http://", 1)
            wrk(link4k, args.read_conns, 2)
            d4k = wrk(link4k, args.read_conns, duration)
            wrk(link_tls, args.read_conns, 2)
            t4k = wrk(link_tls, args.read_conns, duration)
            rows.append(
                (
                    f"b. 4 KB playbacks/s via the VIP, signed URL (gateway), {args.read_conns} conns",
                    f"{r4k['rps']:,.0f}/s (p99 {r4k['p99_ms']:.1f} ms)",
                    f"nginx static, same container {b4k['rps']:,.0f}/s (p99 {b4k['p99_ms']:.1f} ms)",
                    f"{r4k['rps'] / b4k['rps']:.2f}x",
                    ">= 5,000/s",
                    met(r4k["rps"] >= 5000),
                )
            )
            rows.append(
                (
                    f"b. 4 KB playbacks/s via the VIP, direct link (nginx alone), {args.read_conns} conns",
                    f"{d4k['rps']:,.0f}/s (p99 {d4k['p99_ms']:.1f} ms)",
                    f"nginx static, same container {b4k['rps']:,.0f}/s (p99 {b4k['p99_ms']:.1f} ms)",
                    f"{d4k['rps'] / b4k['rps']:.2f}x",
                    ">= 5,000/s",
                    met(d4k["rps"] >= 5000),
                )
            )

            rows.append(
                (
                    f"f. TLS: 4 KB playbacks/s via the VIP, direct link, HTTPS, {args.read_conns} conns",
                    f"{t4k['rps']:,.0f}/s (p99 {t4k['p99_ms']:.1f} ms)",
                    f"the same link over plain HTTP {d4k['rps']:,.0f}/s (p99 {d4k['p99_ms']:.1f} ms)",
                    f"{t4k['rps'] / d4k['rps']:.2f}x",
                    ">= 0.8x",
                    met(t4k["rps"] / d4k["rps"] >= 0.8),
                )
            )

            # e. tracker lookups via the VIP vs nginx's static 200 on the VIP holder
            token = {"Authorization": "Bearer " + client.token(3600)}
            for user in lookup_users:  # routes exist before the clock starts
                client.storages(user)
            script = host / "users.lua"
            script.write_text(users_lua(f"{USER}-l", LOOKUP_USERS, conf["app"]))
            look32 = wrk(f"http://{VIP}/", 32, duration, token, script)
            base32 = wrk(f"{base}/ok", 32, duration)
            paced = host / "paced.lua"
            paced.write_text(users_lua(f"{USER}-l", LOOKUP_USERS, conf["app"], PACE_MS))
            look8 = wrk(f"http://{VIP}/", 8, duration, token, paced)
            paced.write_text(paced_lua(PACE_MS))
            base8 = wrk(f"{base}/ok", 8, duration, script=paced)
        rows.append(
            (
                "e. tracker lookups/s via the VIP, 32 conns",
                f"{look32['rps']:,.0f}/s",
                f"nginx static 200 {base32['rps']:,.0f}/s",
                f"{look32['rps'] / base32['rps']:.2f}x",
                ">= 3,000/s",
                met(look32["rps"] >= 3000),
            )
        )
        rows.append(
            (
                f"e. tracker lookup p99 via the VIP, 8 conns paced to {look8['rps']:,.0f}/s",
                f"{look8['p99_ms']:.2f} ms",
                f"nginx static 200, same pacing, {base8['p99_ms']:.2f} ms",
                f"{look8['p99_ms'] / base8['p99_ms']:.2f}x",
                "<= 5 ms",
                met(look8["p99_ms"] <= 5),
            )
        )

        # g. signing on lookups: signed requests (HMAC over method, path, query and body
        # digest, each signature recorded once against replays) vs a bearer token, both one
        # at a time over HTTPS keep-alive, same users
        session = requests.Session()

        def bearer_lookup(i: int) -> None:
            query = {"app": conf["app"], "user": lookup_users[i % LOOKUP_USERS]}
            verify = conf.get("ca_file") or True
            resp = session.get(f"{conf['url']}/api/v1/storages", params=query, headers=token, verify=verify)
            resp.raise_for_status()

        signed_rate = rate(LOOKUP_CALLS, lambda i: client.storages(lookup_users[i % LOOKUP_USERS]))
        bearer_rate = rate(LOOKUP_CALLS, bearer_lookup)
        rows.append(
            (
                "g. signing: lookups/s, one at a time, signed (HMAC, replay record), HTTPS",
                f"{signed_rate:,.0f}/s",
                f"bearer token, HTTPS {bearer_rate:,.0f}/s",
                f"{signed_rate / bearer_rate:.2f}x",
                "report",
                "-",
            )
        )

        # d. 64 KB uploads/s (PUT to the tracker's best storage) vs the shim's file-system work
        where_up = client.storages(UP_USER)
        best = where_up["storages"][0]
        up_node = storage_node(best["node_id"], where_up["group"])
        path = f"/api/v1/files/{conf['app']}/{UP_USER}"
        script = host / "put.lua"
        script.write_text(put_lua(path, f"u{int(time.time())}-", 64 << 10))
        before = cpu.sample()
        ups = wrk(best["url"] + path, args.upload_conns, duration, token, script)
        used = cpu.spent(before, cpu.sample())
        fs_rate = {}
        for mode in ("in-place", "rename", "packed"):
            fs_dir = f"{MOUNTS}/{where_up['group']}/{BENCH_DIR}/writes-{mode}"
            count, secs = up_node.sh(
                f"python3 - {fs_dir} {64 << 10} {args.upload_conns} {duration} {mode}", stdin=FS_WRITES
            ).split()
            fs_rate[mode] = int(count) / float(secs)
        rows.append(
            (
                f"d. 64 KB uploads/s, {args.upload_conns} conns (PUT to {best['node_id']})",
                f"{ups['rps']:,.0f}/s (p99 {ups['p99_ms']:.0f} ms)",
                f"create+write+fsync in place on the group mount {fs_rate['in-place']:,.0f}/s",
                f"{ups['rps'] / fs_rate['in-place']:.2f}x",
                ">= 300/s",
                met(ups["rps"] >= 300),
            )
        )
        notes.append(
            f"d: the same {args.upload_conns} writers through a temporary file renamed into place"
            f" (+ directory fsync), as uploads were written before: {fs_rate['rename']:,.0f}/s."
        )
        notes.append(
            f"d: the same writers appending each 64 KB body to one of two shared files (offset"
            f" reserved under a lock, pwrite, fdatasync; small-file packing, not implemented):"
            f" {fs_rate['packed']:,.0f}/s, {fs_rate['packed'] / fs_rate['in-place']:.2f}x in place."
        )
        per_upload = ", ".join(
            f"{kind} {secs * 1000 / ups['requests']:.1f} ms" for kind, secs in used.most_common()
        )
        notes.append(f"d: CPU per upload in the upload run (bench/cpu.py, lab processes): {per_upload}.")
    finally:
        removed = delete_all(conf, bench_users)
        front.sh(f"rm -rf {SCRATCH}")
        for node in prepared.values():
            node.sh(f"rm -rf {SCRATCH} {MOUNTS}/*/{BENCH_DIR}")
        for p in host.iterdir():
            p.unlink()
        host.rmdir()
        print(f"cleanup: {removed} files deleted, scratch removed", file=sys.stderr)

    elapsed = time.monotonic() - t0
    argv = " ".join(["bench/lab.py", *sys.argv[1:]])
    lines = [
        "## Lab cluster",
        "",
        f"`flock /tmp/mediagrid-lab.lock make bench-lab` (`make lab`, then `.venv/bin/python {argv}`)"
        f"{', quick run' if args.quick else ''}: the lab on this machine (7 containers, 2 cores"
        f" shared with the load generators), cluster VIP {VIP} held by {front.name}, user"
        f" `{USER}` in group {group}. wrk -t2, {duration} s per point; large files: median of"
        f" {upload_runs} uploads and {play_runs} interleaved playbacks (curl's time_total).",
        f"Run at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {elapsed / 60:.1f} min.",
        "",
        *table(("measure", "result", "baseline", "ratio", "target", "met?"), rows),
        "",
        *[f"- {n}" for n in notes],
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_between(Path(args.out), START, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
