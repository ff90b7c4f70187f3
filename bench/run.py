#!/usr/bin/env python3
"""Control-plane benchmarks on loopback, each against a baseline measured in the same run.

1. tracker lookups/s at 32 connections and p99 at 8, vs a hello-world Flask endpoint under
   the same gunicorn settings;
2. ids/s in batches of 1000, vs a Flask endpoint returning a fixed 1000-id list;
3. upload of a large file through storage nginx + shim, vs copying it into the same
   directory (cp, and cp + fsync: the shim fsyncs before it acknowledges);
4. download through front nginx + gateway (X-Accel-Redirect), vs nginx serving the same
   file statically.

Usage: python bench/run.py [--out docs/benchmarks.md] [--duration 10] [--size-mb 200]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import curl_time, timed, users_lua, wrk

from mediagrid.client import Client
from mediagrid.signing import signed_headers
from mediagrid_dev import DevCluster
from mediagrid_dev.services import gunicorn


def copy_fsync(src: Path, dst: Path) -> None:
    with src.open("rb") as fi, dst.open("wb") as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)
        fo.flush()
        os.fsync(fo.fileno())


def drop(path: Path) -> None:
    path.unlink(missing_ok=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/benchmarks.md")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sync-workers", type=int, default=2, help="gunicorn sync workers per service")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mediagrid-bench-"))
    cluster = DevCluster(
        root / "cluster", workers=2, bench_static=True, access_log=False, sync_workers=args.sync_workers
    )
    cluster.start()
    hello_port = cluster.base_port + 40
    # the baseline app, served with the trackers' gunicorn settings and worker count
    hello = gunicorn(
        "hello",
        "tracker",
        hello_port,
        workers=cluster.sync_workers,
        access_log=False,
        target="hello:create_app()",
    )
    rows: list[tuple[str, str, str, str, str]] = []
    try:
        hello.start(Path(__file__).resolve().parent, root / "hello.log")
        client = Client(cluster.url, cluster.app, cluster.app_secret, timeout=120)
        auth = {"Authorization": "Bearer " + client.token(7200)}
        for i in range(1000):  # assign every benchmark user a group first
            client.storages(f"bench{i}")
        script = root / "users.lua"
        script.write_text(users_lua("bench", 1000))
        tracker = f"http://127.0.0.1:{cluster.tracker_ports[0]}/"
        hello_url = f"http://127.0.0.1:{hello_port}/"
        d = args.duration

        look32 = wrk(tracker, 32, d, auth, script)
        base32 = wrk(hello_url, 32, d)
        rows.append(
            (
                "tracker lookups/s, 32 conns",
                f"{look32['rps']:,.0f}/s",
                f"hello-world {base32['rps']:,.0f}/s",
                f"{look32['rps'] / base32['rps']:.2f}x",
                ">= 3,000/s and >= 0.75x",
            )
        )
        look8 = wrk(tracker, 8, d, auth, script)
        base8 = wrk(hello_url, 8, d)
        rows.append(
            (
                "tracker lookup p99, 8 conns",
                f"{look8['p99_ms']:.2f} ms",
                f"hello-world {base8['p99_ms']:.2f} ms",
                f"{look8['p99_ms'] / base8['p99_ms']:.2f}x",
                "<= 5 ms",
            )
        )

        ids = wrk(f"http://127.0.0.1:{cluster.ids_port}/api/v1/ids?count=1000", 8, d, auth)
        ids_base = wrk(f"{hello_url}ids1000", 8, d)
        rows.append(
            (
                "ids/s, batches of 1000, 8 conns",
                f"{ids['rps'] * 1000:,.0f}/s",
                f"fixed 1000-id list {ids_base['rps'] * 1000:,.0f}/s",
                f"{ids['rps'] / ids_base['rps']:.2f}x",
                ">= 100,000/s",
            )
        )

        src = root / "big.bin"
        with src.open("wb") as fh:
            for _ in range(args.size_mb):
                fh.write(os.urandom(1 << 20))
        node = client.storages("uploader")["storages"][0]
        group_dir = cluster.group_dir(client.storages("uploader")["group"])
        t_up, t_cp, t_cpf = [], [], []
        with src.open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()  # signed: the upload's bytes
        for run in range(args.runs):
            path = f"/api/v1/files/demo/uploader/big{run}.bin"
            hdrs = signed_headers("demo", cluster.app_secret, "PUT", path, content_sha256=digest)
            curl = ["curl", "-sf", "-o", "/dev/null", "-T", str(src)]
            for k, v in hdrs.items():
                curl += ["-H", f"{k}: {v}"]
            t_up.append(timed([*curl, node["url"] + path]))
            dst = group_dir / f"cp-baseline-{run}.bin"
            t_cp.append(timed(["cp", str(src), str(dst)]))
            drop(dst)
            start = time.perf_counter()
            copy_fsync(src, dst)
            t_cpf.append(time.perf_counter() - start)
            drop(dst)
        mb = args.size_mb * (1 << 20) / 1e6
        up, cp, cpf = (statistics.median(x) for x in (t_up, t_cp, t_cpf))
        rows.append(
            (
                f"upload {args.size_mb} MiB via shim (curl -T)",
                f"{mb / up:,.0f} MB/s",
                f"cp+fsync {mb / cpf:,.0f} MB/s",
                f"{cpf / up:.2f}x",
                ">= 0.8",
            )
        )
        rows.append(
            (
                "  same, vs plain cp (page cache, no fsync)",
                f"{mb / up:,.0f} MB/s",
                f"cp {mb / cp:,.0f} MB/s",
                f"{cp / up:.2f}x",
                "(for reference)",
            )
        )

        info = requests.get(client.playback_url("uploader", "big0.bin"), stream=True, timeout=10)
        info.close()
        row = next(f for f in client.list("uploader") if f["file_id"] == "big0.bin")
        assert row["size"] == args.size_mb << 20
        conn = cluster.db()
        with conn.cursor() as cur:
            cur.execute("SELECT grp, path FROM files WHERE file_id='big0.bin'")
            found = cur.fetchone()
        grp, rel = found["grp"], found["path"]
        conn.close()
        static_url = f"{cluster.static_url}/{grp}/{rel}"
        play_url = client.playback_url("uploader", "big0.bin")
        t_gw, t_st = [], []
        curl_time(static_url)  # warm the page cache
        for _ in range(15):  # interleaved, so drifts in machine load hit both alike
            t_gw.append(curl_time(play_url))
            t_st.append(curl_time(static_url))
        gw, st = statistics.median(t_gw), statistics.median(t_st)
        rows.append(
            (
                f"download {args.size_mb} MiB via gateway + nginx",
                f"{mb / gw:,.0f} MB/s",
                f"nginx static {mb / st:,.0f} MB/s",
                f"{st / gw:.2f}x",
                ">= 0.95",
            )
        )
    finally:
        hello.stop()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)

    lines = [
        "# Benchmarks",
        "",
        "Control plane on loopback (`make bench` = `python bench/run.py`), 2 cores, each figure",
        "against a baseline measured in the same run. Services: gunicorn, "
        + f"{cluster.sync_workers} sync workers (trackers, ids, gateway; shims {cluster.workers} gthread"
        + " workers x 4 threads), access log off; the baseline app is served the same way.",
        f"wrk -t2, {args.duration} s per point; uploads: median of {args.runs} runs; downloads: median"
        + " of 15 interleaved runs (curl's time_total).",
        f"Run at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| measure | mediagrid | baseline | ratio | target |",
        "|---|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    marker = "<!-- control-plane results end -->"
    rest = ""
    if out.exists() and marker in out.read_text():
        rest = out.read_text().split(marker, 1)[1]
    out.write_text(text + "\n" + marker + rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
