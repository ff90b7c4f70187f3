"""``mediagrid-admin``: schema create/upgrade, app (tenant) management, and rebuilding the
files table from the volumes after a restore."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pymysql

from . import apps, config, jobs, ladder, livestore, quotas, rebuild, removed, schema
from .db import connect
from .errors import APIError


def _secret_from(path: str | None) -> str | None:
    if path is None:
        return None
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    secret = text.strip()
    if len(secret) < 16:
        raise SystemExit("mediagrid-admin: a secret has 16+ characters")
    return secret


def _app_cmd(conf: Mapping[str, Any], args: argparse.Namespace) -> int:
    conn = connect(conf)
    try:
        with conn.cursor() as cur:
            if args.action == "create":
                print(apps.create(cur, args.name, _secret_from(args.secret_file)))
                if args.admin:
                    apps.set_admin(cur, args.name, True)
            elif args.action == "set":
                # idempotent, for configuration management: secret on stdin, never in argv;
                # the admin flag is what --admin says
                secret = sys.stdin.readline().strip()
                if len(secret) < 16:
                    raise SystemExit("mediagrid-admin: app set needs a secret of 16+ chars on stdin")
                said = apps.put(cur, args.name, secret)
                flagged = apps.set_admin(cur, args.name, args.admin)
                print("updated" if said == "unchanged" and flagged else said)
            elif args.action == "list":
                for row in apps.listing(cur):
                    print(f"{row['app']}\t{'admin' if row['admin'] else '-'}\t{row['created']}")
            elif args.action == "delete":
                apps.delete(cur, args.name)
            elif args.action == "rotate":
                # a new secret, printed; the old one stays valid until "retire"
                new_secret = apps.rotate(cur, args.name)
                if new_secret is None:
                    raise SystemExit(f"mediagrid-admin: no app {args.name!r}")
                print(new_secret)
            elif args.action == "quota":
                state = quotas.usage(cur, args.name)
                if state is None:
                    raise SystemExit(f"mediagrid-admin: no app {args.name!r}")
                _media_quota(cur, args)
                if args.max_bytes is not None or args.max_files is not None or args.unlimited:
                    limits = (
                        (None, None)
                        if args.unlimited
                        else (
                            state["quota_bytes"] if args.max_bytes is None else args.max_bytes,
                            state["quota_files"] if args.max_files is None else args.max_files,
                        )
                    )
                    quotas.set_quota(cur, args.name, *limits)
                    state = quotas.usage(cur, args.name) or state
                print(" ".join(f"{k}={'unlimited' if state[k] is None else state[k]}" for k in sorted(state)))
            elif args.action == "ladder":
                _ladder_cmd(cur, args)
            elif args.action == "snapshots":
                _snapshots_cmd(cur, args)
            elif args.action == "retire":
                print("retired" if apps.retire(cur, args.name) else "nothing to retire")
        conn.commit()
    finally:
        conn.close()
    return 0


def _node_cmd(conf: Mapping[str, Any], args: argparse.Namespace) -> int:
    if args.action != "list" and not args.node_id:
        raise SystemExit(f"mediagrid-admin: node {args.action} needs a node id")
    conn = connect(conf)
    try:
        with conn.cursor() as cur:
            if args.action == "remove":
                print("removed" if removed.remove(cur, args.node_id) else "already removed")
            elif args.action == "allow":
                print("allowed" if removed.allow(cur, args.node_id) else "was not removed")
            else:
                cur.execute("SELECT node_id, removed FROM removed_nodes ORDER BY node_id")
                for row in cur.fetchall():
                    print(f"{row['node_id']}\tremoved {row['removed']}")
        conn.commit()
    finally:
        conn.close()
    return 0


def _rebuild_cmd(conf: Mapping[str, Any], args: argparse.Namespace) -> int:
    if not Path(args.data_dir).is_dir():
        raise SystemExit(f"mediagrid-admin: {args.data_dir} is not a directory")
    conn = connect(conf)
    try:
        counts = rebuild.rebuild(
            conn, args.data_dir, args.group, conf["ID_SEGMENT_NAME"], conf["ID_SEGMENT_STEP"], args.dry_run
        )
    finally:
        conn.close()
    print(" ".join(f"{key}={counts[key]}" for key in sorted(counts)) + (" (dry run)" if args.dry_run else ""))
    return 0


def _ladder_cmd(cur: Any, args: argparse.Namespace) -> None:
    """``app ladder``: show, set (--rungs) or drop (--default) the app's own ABR ladder. It
    applies to files probed from then on; what was made before stays as it is."""
    if args.rungs is not None and args.default:
        raise SystemExit("mediagrid-admin: app ladder takes --rungs or --default, not both")
    if args.rungs is not None or args.default:
        spec = None
        if args.rungs is not None:
            try:
                spec = ",".join(r.name for r in ladder.parse_ladder(args.rungs))
            except ValueError as err:
                raise SystemExit(f"mediagrid-admin: {err}") from None
        if not apps.set_media_ladder(cur, args.name, spec):
            raise SystemExit(f"mediagrid-admin: no app {args.name!r}")
    elif not apps.exists(cur, args.name):
        raise SystemExit(f"mediagrid-admin: no app {args.name!r}")
    print(f"media_ladder={apps.media_ladder(cur, args.name) or 'default'}")


def _snapshots_cmd(cur: Any, args: argparse.Namespace) -> None:
    """``app snapshots``: show, set (--every) or drop (--default) the seconds between the
    app's live snapshots; a stream's own interval (at publish) comes first."""
    if args.every is not None and args.default:
        raise SystemExit("mediagrid-admin: app snapshots takes --every or --default, not both")
    if args.every is not None and not 0 <= args.every <= 86400:
        raise SystemExit("mediagrid-admin: --every is 0 (no snapshots) to 86400 seconds")
    if args.every is not None or args.default:
        if not apps.set_live_snapshot_every(cur, args.name, args.every):
            raise SystemExit(f"mediagrid-admin: no app {args.name!r}")
    elif not apps.exists(cur, args.name):
        raise SystemExit(f"mediagrid-admin: no app {args.name!r}")
    every = apps.live_snapshot_every(cur, args.name)
    print(f"live_snapshot_every={'default' if every is None else every}")


def _media_quota(cur: Any, args: argparse.Namespace) -> None:
    """``app quota``'s media part: set (--media-max-jobs, --media-cpu-day, --unlimited) and
    show the app's media job quotas and what it uses today."""
    cur.execute("SELECT media_max_jobs, media_cpu_day FROM apps WHERE app = %s", (args.name,))
    row = cur.fetchone()
    if args.media_max_jobs is not None or args.media_cpu_day is not None or args.unlimited:
        max_jobs = None if args.unlimited else args.media_max_jobs or row["media_max_jobs"]
        cpu_day = None if args.unlimited else args.media_cpu_day or row["media_cpu_day"]
        jobs.set_quota(cur, args.name, max_jobs, cpu_day)
        row = {"media_max_jobs": max_jobs, "media_cpu_day": cpu_day}
    held = jobs.blocked_apps(cur, args.name).get(args.name)
    print(
        f"media_max_jobs={row['media_max_jobs'] or 'unlimited'}"
        f" media_cpu_day={row['media_cpu_day'] or 'unlimited'} media_waiting={held or '-'}"
    )


def _jobs_cmd(conf: Mapping[str, Any], args: argparse.Namespace) -> int:
    conn = connect(conf)
    try:
        with conn.cursor() as cur:
            if args.action in ("retry", "cancel"):
                if args.job_id is None:
                    raise SystemExit(f"mediagrid-admin: jobs {args.action} needs a job id")
                done = (jobs.retry if args.action == "retry" else jobs.cancel)(cur, args.job_id)
                conn.commit()
                print(f"job {args.job_id}: {args.action + ('d' if args.action == 'cancel' else 'ed')}"
                      if done else f"job {args.job_id}: not a job that can be {args.action}ed")  # fmt: skip
                return 0 if done else 1
            view = jobs.overview(cur, args.app)
        conn.commit()
    finally:
        conn.close()
    if args.json:
        print(json.dumps(view, indent=2, default=str))
        return 0
    print("jobs by state and class (0 first-playable, 1 on demand, 2 ladder, 3 backfill):")
    for c in view["counts"]:
        print(f"  {c['state']:<9} class {c['class']}  {c['n']:>5} jobs  cost {float(c['cost']):.1f}")
    print("running per node:")
    for n in view["nodes"]:
        print(f"  {n['node_id']:<12} {n['jobs']} jobs, {float(n['cores']):.2f} cores")
    print("queued and running:")
    for j in view["jobs"]:
        where = j["node_id"] if j["state"] == "running" else f"waiting: {j['waiting']}"
        print(
            f"  {j['id']:>6} {j['app']:<12} {j['kind']:<12} class {j['class']} cost {j['cost']:.2f}"
            f" {j['state']} {j['progress'] * 100:.0f}% ({where})"
        )
    for j in view["failed"]:
        print(f"  failed {j['id']:>6} {j['app']:<12} {j['kind']:<12} {j['code']}: {j['message']}")
    return 0


def _live_cmd(conf: Mapping[str, Any], args: argparse.Namespace) -> int:
    """Kick a stream's publishers (their origins drop them within a heartbeat), or ban its
    keys (or one, --key) so they never publish again, which kicks too."""
    conn = connect(conf)
    try:
        with conn.cursor() as cur:
            if args.action == "ban":
                banned = livestore.ban(cur, args.app, args.stream, args.key)
                livestore.kick(cur, args.app, args.stream)
                print(f"banned {banned} key(s) of {args.app}/{args.stream}; its publishers are dropped")
            else:
                kicked = livestore.kick(cur, args.app, args.stream)
                if not kicked:
                    raise SystemExit(f"mediagrid-admin: no keys were issued for {args.app}/{args.stream}")
                print(f"kicked {args.app}/{args.stream}: its publishers are dropped")
        conn.commit()
    finally:
        conn.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mediagrid-admin", description=__doc__, allow_abbrev=False)
    parser.add_argument("--config", help="TOML configuration file (else MEDIAGRID_CONFIG)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sch = sub.add_parser("schema", help="create or upgrade the MariaDB schema")
    sch.add_argument("action", choices=["upgrade", "version"])
    app = sub.add_parser("app", help="manage apps (tenants)")
    app.add_argument(
        "action",
        choices=["create", "set", "list", "delete", "rotate", "retire", "quota", "ladder", "snapshots"],
        help="rotate: print a new secret, the old one stays valid; retire: the old one ends;"
        " quota: show (or set with --max-bytes/--max-files/--unlimited) the app's quota and usage;"
        " ladder: show (or set with --rungs/--default) the app's ABR ladder;"
        " snapshots: show (or set with --every/--default) the seconds between live snapshots",
    )
    app.add_argument("name", nargs="?")
    app.add_argument(
        "--secret-file",
        help="create: read the secret from this file, - for stdin (default: keep or generate one);"
        " secrets are never taken on the command line",
    )
    app.add_argument(
        "--max-bytes", type=int, help="quota: bytes the app may store (the other limit: unchanged)"
    )
    app.add_argument("--max-files", type=int, help="quota: files the app may store")
    app.add_argument("--unlimited", action="store_true", help="quota: no limits")
    app.add_argument("--media-max-jobs", type=int, help="quota: media jobs the app may run at once")
    app.add_argument("--media-cpu-day", type=float, help="quota: CPU-seconds of media jobs per day (UTC)")
    app.add_argument(
        "--rungs",
        help=f"ladder: the app's rungs, e.g. 720p,360p (known: {','.join(ladder.RUNGS)});"
        " for files probed from now on",
    )
    app.add_argument(
        "--default",
        action="store_true",
        help="ladder, snapshots: back to the nodes' MEDIA_LADDER or LIVE_SNAPSHOT_EVERY",
    )
    app.add_argument("--every", type=int, help="snapshots: seconds between live snapshots (0: none)")
    app.add_argument(
        "--admin", action="store_true", help="an admin app: sees the cluster's topology (/api/v1/groups)"
    )
    node = sub.add_parser("node", help="remove a storage node (its key stops working) or allow it back")
    node.add_argument("action", choices=["remove", "allow", "list"])
    node.add_argument("node_id", nargs="?")
    jb = sub.add_parser("jobs", help="the media job queue: what runs where, what waits and why")
    jb.add_argument("action", nargs="?", default="list", choices=["list", "retry", "cancel"])
    jb.add_argument("job_id", nargs="?", type=int)
    jb.add_argument("--app", help="only this app's jobs")
    jb.add_argument("--json", action="store_true")
    lv = sub.add_parser("live", help="moderation: kick a live stream, ban its keys")
    lv.add_argument("action", choices=["kick", "ban"])
    lv.add_argument("app")
    lv.add_argument("stream")
    lv.add_argument("--key", help="ban: only this key id (as the stream's events list it)")
    reb = sub.add_parser(
        "rebuild", help="put back the files rows a restored database lacks, from a group volume"
    )
    reb.add_argument("--group", required=True, help="the storage group whose volume this is")
    reb.add_argument("--data-dir", required=True, help="where the group volume is mounted")
    reb.add_argument("--dry-run", action="store_true", help="count what would be put back; change nothing")
    args = parser.parse_args(argv)
    try:
        conf = config.load(path=args.config)
        if args.cmd == "schema":
            if args.action == "upgrade":
                done = schema.upgrade(conf)
                print(
                    f"schema at version {schema.LATEST}" + (f" (applied {done})" if done else " (no change)")
                )
            else:
                print(schema.version(conf))
            return 0
        if args.cmd == "rebuild":
            return _rebuild_cmd(conf, args)
        if args.cmd == "node":
            return _node_cmd(conf, args)
        if args.cmd == "jobs":
            return _jobs_cmd(conf, args)
        if args.cmd == "live":
            return _live_cmd(conf, args)
        if args.action != "list" and not args.name:
            parser.error(f"app {args.action} needs a name")
        return _app_cmd(conf, args)
    except (pymysql.MySQLError, APIError, config.ConfigError) as err:
        print(f"mediagrid-admin: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
