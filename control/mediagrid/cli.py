"""``mediagrid``: upload, download, rm, ls, url, cluster and token from the shell.

Settings come from flags, then ``MEDIAGRID_URL`` / ``MEDIAGRID_APP`` / ``MEDIAGRID_SECRET``
(and ``MEDIAGRID_URL_TTL``), then a TOML file: ``--config``, ``MEDIAGRID_CLIENT_CONFIG`` or
``~/.config/mediagrid/client.toml`` with keys ``url``, ``app``, ``secret``, ``url_ttl`` and
``ca_file`` (the CA that signed the cluster's certificates, for an https ``url``; by
default the system's trusted CAs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import requests

from .client import Client, MediagridError
from .signing import TOKEN_MAX_TTL, Scope

DEFAULT_CONFIG = Path.home() / ".config" / "mediagrid" / "client.toml"


def settings(args: argparse.Namespace, environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    path = (
        args.config
        or env.get("MEDIAGRID_CLIENT_CONFIG")
        or (str(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else "")
    )
    conf: dict[str, Any] = {
        "url": "http://127.0.0.1",
        "app": "",
        "secret": "",
        "url_ttl": 86400,
        "ca_file": "",
    }
    if path:
        with open(path, "rb") as fh:
            conf.update(tomllib.load(fh))
    for key in ("url", "app", "secret", "url_ttl", "ca_file"):
        if env.get(f"MEDIAGRID_{key.upper()}"):
            conf[key] = env[f"MEDIAGRID_{key.upper()}"]
        if getattr(args, key, None):
            conf[key] = getattr(args, key)
    # A secret is never taken on the command line (other users see it in ps, shells keep
    # it in their history): a file, stdin (-), the environment or client.toml.
    if getattr(args, "secret_file", None):
        conf["secret"] = (
            sys.stdin.read() if args.secret_file == "-" else Path(args.secret_file).read_text()
        ).strip()
    if not conf["app"] or not conf["secret"]:
        raise SystemExit(
            "mediagrid: set the app and its secret (--app/--secret-file, MEDIAGRID_APP/"
            "MEDIAGRID_SECRET or a client.toml)"
        )
    try:
        conf["url_ttl"] = int(conf["url_ttl"])  # the one parse: env values arrive as text
    except (TypeError, ValueError):
        raise SystemExit(
            f"mediagrid: url_ttl (--url-ttl, MEDIAGRID_URL_TTL or client.toml) must be whole seconds,"
            f" got {conf['url_ttl']!r}"
        ) from None
    return conf


class Bar:
    """A one-line progress bar on stderr (only when stderr is a terminal, or forced)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label, self.enabled = label, enabled
        self.start = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.1 and done != total):
            return
        self.last = now
        rate = done / max(now - self.start, 1e-6) / 1e6
        if total:
            filled = int(30 * done / total)
            bar = "#" * filled + "." * (30 - filled)
            line = f"{self.label} [{bar}] {100 * done // total:3d}% {rate:7.1f} MB/s"
        else:
            line = f"{self.label} {done / 1e6:10.1f} MB {rate:7.1f} MB/s"
        sys.stderr.write("\r" + line)
        if total and done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_upload(c: Client, a: argparse.Namespace) -> int:
    bar = Bar(os.path.basename(a.file), a.progress or sys.stderr.isatty())
    info = c.upload(a.file, a.user, a.id, a.overwrite, bar, a.content_type)
    url = c.playback_url(a.user, info["file_id"], a.ttl)
    if not a.wait:
        if a.json:
            _print({**info, "url": url})
        else:
            print(url)
        return 0
    show = a.progress or sys.stderr.isatty()
    try:
        got = c.wait_playable(a.user, info["file_id"], a.wait_timeout, _WaitLine(show) if show else None)
    except TimeoutError as err:
        print(f"\nmediagrid: {err}", file=sys.stderr)
        return 3
    if show:
        sys.stderr.write("\n")
    if a.json:
        _print({**info, "url": url, "media": got})
    elif got.get("hls"):
        print(f"player: {got['player']}" if got.get("player") else f"url: {url}")
        print(f"hls: {got['hls']}")
    if not got.get("hls"):
        print(
            f"mediagrid: {info['file_id']} is {got['state']}: {got['code']} ({got['message']})",
            file=sys.stderr,
        )
        return 1
    return 0


class _WaitLine:
    """The media state on one stderr line while ``upload --wait`` waits."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, got: dict[str, Any]) -> None:
        running = [j for j in got["jobs"] if j["state"] == "running"]
        detail = ", ".join(f"{j['kind']} {j['progress'] * 100:.0f}%" for j in running)
        sys.stderr.write(f"\r{got['state']}{': ' + detail if detail else ''}\x1b[K")
        sys.stderr.flush()


def cmd_download(c: Client, a: argparse.Namespace) -> int:
    if a.output == "-":
        c.download(a.user, a.file_id, sys.stdout.buffer)
        return 0
    out = Path(a.output or a.file_id)
    part = out.with_name(out.name + ".part")
    with open(part, "wb") as fh:
        try:
            info = c.download(a.user, a.file_id, fh, Bar(out.name, a.progress or sys.stderr.isatty()))
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    part.replace(out)
    print(f"{out}\t{info['size']} bytes\tsha256 {info['sha256']}", file=sys.stderr)
    return 0


def cmd_rm(c: Client, a: argparse.Namespace) -> int:
    for fid in a.file_id:
        c.delete(a.user, fid)
        print(f"deleted {fid}")
    return 0


def cmd_ls(c: Client, a: argparse.Namespace) -> int:
    files = c.list(a.user)
    if a.json:
        _print(files)
        return 0
    for f in files:
        print(f"{f['file_id']}\t{f['size']}\t{f['content_type']}\t{f['group']}\t{f['created']}")
    return 0


def cmd_url(c: Client, a: argparse.Namespace) -> int:
    if a.direct:
        print(c.direct_link(a.user, a.file_id, a.ttl)["url"])
    else:
        print(c.playback_url(a.user, a.file_id, a.ttl))
    return 0


def cmd_media(c: Client, a: argparse.Namespace) -> int:
    got = c.media(a.user, a.file_id)
    if a.json:
        _print(got)
        return 0
    print(f"{a.file_id}: {got['state']}" + (f" ({got['code']}: {got['message']})" if got["code"] else ""))
    info = got["info"] or {}
    if info:
        video, audio = info.get("video") or {}, info.get("audio") or {}
        parts = [f"{info['duration']:.1f} s", info["container"]]
        if video:
            parts.append(f"{video['codec']} {video['width']}x{video['height']} {video['fps']:g} fps")
        if audio:
            parts.append(f"{audio['codec']} {audio['channels']} ch")
        print("  " + ", ".join(parts))
    for job in got["jobs"]:
        print(
            f"  {job['kind']}: {job['state']} {job['progress'] * 100:.0f}%"
            + (f" {job['code']}" if job["code"] else "")
        )
    for key in ("hls", "poster", "thumbnails_vtt"):
        if got.get(key):
            print(f"{key}: {got[key]}")
    return 0


def cmd_cluster(c: Client, a: argparse.Namespace) -> int:
    state = c.groups()
    if a.json:
        _print(state)
        return 0
    print(f"{'GROUP':<8} {'NODE':<10} {'STATE':<8} {'FREE':>10} {'TOTAL':>10} {'LOAD':>5} {'AGE':>6}  URL")
    for g in state["groups"]:
        for m in g["members"]:
            print(
                f"{g['name']:<8} {m['node_id']:<10} {m['state']:<8} {m['free'] / 2**30:9.1f}G "
                f"{m['total'] / 2**30:9.1f}G {m['load']:5.2f} {m['last_heartbeat_age']:5.1f}s  {m['url']}"
            )
        print(
            f"{g['name']:<8} {'(group)':<10} {g['state']:<8} {g['free'] / 2**30:9.1f}G"
            f" {'writable' if g['writable'] else 'read-only'}"
        )
    return 0


def cmd_token(c: Client, a: argparse.Namespace) -> int:
    print(c.token(a.ttl or 3600, Scope(user=a.user, read_only=a.read_only, prefix=a.prefix)))
    return 0


def cmd_live(c: Client, a: argparse.Namespace) -> int:
    if a.action != "ls" and not a.stream:
        raise SystemExit(f"mediagrid live {a.action}: name the stream")
    got: Any
    if a.action == "publish":
        if not a.user:
            raise SystemExit("mediagrid live publish: --user is required")
        got = c.live_publish(a.stream, a.user, a.record, a.snapshot_every)
        if not a.json:
            for role in ("primary", "backup"):
                pub = got["publish"][role]
                print(f"{role}: {pub['url']}" if pub else f"{role}: (no origin of another group)")
            print(f"play: {got['play']['hls']}")
            print(f"keys expire: {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(got['expires']))}")
            return 0
    elif a.action == "ls":
        got = c.live_streams()
        if not a.json:
            for s in got:
                ingest = s["ingest"] or {}
                print(
                    f"{s['stream']:<24} {s['state']:<6} {s['origin'] or '-':<8} {s['backup'] or '-':<8}"
                    f" {ingest.get('bitrate', 0) / 1e6:6.2f} Mbit/s {ingest.get('fps', 0):5.1f} fps"
                    f" {s.get('viewers', 0):5d} viewers"
                )
            return 0
    elif a.action == "show":
        got = c.live_stream(a.stream)
    elif a.action == "play":
        got = c.live_play(a.stream, a.rendition)
        if not a.json:
            print(got["play"])
            return 0
    elif a.action == "snapshots":
        got = c.live_snapshots(a.stream)
        if not a.json:
            for snap in got:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap["at"]))
                print(f"{stamp}  {snap['size']:>7}  {snap['url']}")
            return 0
    elif a.action == "kick":
        got = c.live_kick(a.stream)
    elif a.action == "ban":
        got = c.live_ban(a.stream, a.key)
    else:
        got = c.live_events(a.stream)
    _print(got)
    return 0


def parser() -> argparse.ArgumentParser:
    # no abbreviations: "--secret s" must not pass for "--secret-file s"
    p = argparse.ArgumentParser(prog="mediagrid", description="mediagrid client", allow_abbrev=False)
    p.add_argument("--config", help="client TOML file")
    p.add_argument("--url", help="cluster address (tracker VIP / front nginx)")
    p.add_argument("--app", help="app (tenant) name")
    p.add_argument("--secret-file", dest="secret_file", help="file holding the app secret (- for stdin)")
    p.add_argument("--ca-file", dest="ca_file", help="CA file to verify the cluster's certificates with")
    p.add_argument("--url-ttl", dest="url_ttl", type=int, help="default playback URL lifetime, s")
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name: str, func: Any, help_: str, user: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.set_defaults(func=func)
        if user:
            sp.add_argument("--user", "-u", required=True)
        return sp

    sp = add("upload", cmd_upload, "upload a file and print its playback URL")
    sp.add_argument("file")
    sp.add_argument("--id", help="file id (default: generated)")
    sp.add_argument("--overwrite", action="store_true")
    sp.add_argument("--content-type")
    sp.add_argument("--ttl", type=int, help="playback URL lifetime, s")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--progress", action="store_true", help="show progress even when not a tty")
    sp.add_argument(
        "--wait", action="store_true", help="wait until the first rendition plays; print its HLS URL"
    )
    sp.add_argument("--wait-timeout", type=float, default=600.0, help="give up waiting after this long, s")
    sp = add("download", cmd_download, "download a file")
    sp.add_argument("file_id")
    sp.add_argument("-o", "--output", help="output path, '-' for stdout")
    sp.add_argument("--progress", action="store_true")
    sp = add("rm", cmd_rm, "delete files")
    sp.add_argument("file_id", nargs="+")
    sp = add("ls", cmd_ls, "list a user's files")
    sp.add_argument("--json", action="store_true")
    sp = add("url", cmd_url, "print a signed playback URL")
    sp.add_argument("file_id")
    sp.add_argument("--ttl", type=int)
    sp.add_argument(
        "--direct", action="store_true", help="a direct link nginx serves alone (asks the tracker)"
    )
    sp = add("media", cmd_media, "show a file's media processing (state, probe, jobs)")
    sp.add_argument("file_id")
    sp.add_argument("--json", action="store_true")
    sp = add("cluster", cmd_cluster, "show groups and storage nodes", user=False)
    sp.add_argument("--json", action="store_true")
    sp = add("token", cmd_token, "print a bearer token for curl", user=False)
    sp.add_argument("--ttl", type=int, help=f"lifetime, s (default 3600, at most {TOKEN_MAX_TTL})")
    sp.add_argument("--user", "-u", help="only this user's files")
    sp.add_argument("--read-only", action="store_true", help="only GET and HEAD")
    sp.add_argument("--prefix", help="only file ids that start with this")
    sp = add("live", cmd_live, "live streams: publish URLs, state, play URL, events", user=False)
    sp.add_argument("action", choices=["publish", "ls", "show", "play", "events", "snapshots", "kick", "ban"])
    sp.add_argument("stream", nargs="?")
    sp.add_argument("--user", "-u", help="the stream's owner (publish)")
    sp.add_argument("--record", action="store_true", help="record the stream for replay (publish)")
    sp.add_argument(
        "--snapshot-every", type=int, help="seconds between snapshots, 0: none (publish; default: the app's)"
    )
    sp.add_argument("--key", help="ban: only this key id (as events list it)")
    sp.add_argument("--rendition", help="play: a lower rendition (480p, 360p, 240p...), made while watched")
    sp.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    conf = settings(args)
    client = Client(
        conf["url"], conf["app"], conf["secret"], url_ttl=conf["url_ttl"], ca_file=conf["ca_file"] or None
    )
    try:
        return args.func(client, args)
    except MediagridError as err:
        print(f"mediagrid: {err}", file=sys.stderr)
        return 1
    except requests.RequestException as err:
        print(f"mediagrid: cannot reach the cluster: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
