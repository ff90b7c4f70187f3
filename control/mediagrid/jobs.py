"""The media job queue (issue 12): jobs in MariaDB, claimed by the workers of the storage
nodes of the file's group under a lease, cheapest to reason about as four rules.

1. **Priority.** A job has a class: first-playable (0) before on-demand requests (1) before
   the ladder (2) before backfill (3).
2. **Cost and cores.** A job's cost is its work in CPU units (``probe.cost``: 720p30
   seconds); its cores are what it holds while it runs (ffmpeg is given that many
   threads). A node admits a job while the cores of what it runs stay within its budget;
   within a class the most expensive job that fits is placed first (big jobs are not
   starved by a stream of small ones). An idle node takes one job even over its budget,
   so no job waits for ever.
3. **Leases.** A claimed job is leased to its node for a while and the worker renews the
   lease as it goes. A job whose lease ran out (its worker or node died) is claimable
   again, elsewhere; the old worker's renewal or finish is then refused, so it stops and
   publishes nothing. After ``max_attempts`` claims a job fails (``too_many_attempts``):
   a file that kills workers does not crash-loop the cluster.
4. **Concurrency.** Claims lock the candidate row with ``FOR UPDATE SKIP LOCKED``: two
   workers never take one job and never wait on each other's row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pymysql

from . import apps
from .db import Connection, one

FIRST_PLAYABLE, ON_DEMAND, LADDER, BACKFILL = 0, 1, 2, 3


@dataclass(frozen=True)
class Job:
    id: int
    sid: int
    app: str
    grp: str
    kind: str
    klass: int
    cost: float
    attempts: int
    cores: float = 1.0


def enqueue(
    cur: Any, sid: int, app: str, grp: str, kind: str, klass: int, cost: float, cores: float = 1.0
) -> bool:
    """Queue ``kind`` for the file ``sid`` unless it is queued or made already; True if new."""
    cur.execute(
        "INSERT IGNORE INTO media_jobs (sid, app, grp, kind, class, cost, cores)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (sid, app, grp, kind, klass, cost, cores),
    )
    return bool(cur.rowcount)


def running_cores(cur: Any, node_id: str) -> float:
    """The cores of the jobs a node holds a live lease on, its live transcodes' included:
    the media jobs and the live transcodes share one budget, and a VOD job waits while
    live transcodes fill it (live first; ``livetranscode``)."""
    cur.execute(
        "SELECT (SELECT COALESCE(SUM(cores), 0) FROM media_jobs"
        "  WHERE node_id = %s AND state = 'running' AND lease_until > NOW(3))"
        " + (SELECT COALESCE(SUM(cores), 0) FROM live_transcodes"
        "  WHERE node_id = %s AND state = 'running' AND lease_until > NOW(3)) AS c",
        (node_id, node_id),
    )
    return float(one(cur)["c"])


def node_budget(worker_budget: float) -> float:
    """The cores a node's media work may hold at once: WORKER_BUDGET, else half its CPUs."""
    return worker_budget or max(1.0, (os.cpu_count() or 1) / 2)


def claim(
    conn: Connection, node_id: str, grp: str, budget: float, lease: float, max_attempts: int = 3
) -> Job | None:
    """Lease the next job of ``grp`` that fits this node's budget (in cores) and whose app
    is within its media quotas, or None."""
    blocked: set[str] = set()
    while True:
        row = _pick(conn, node_id, grp, budget, lease, max_attempts, blocked)
        if row is _SPENT:
            continue  # that candidate failed for good; the next one
        if isinstance(row, _Blocked):
            blocked.add(row.app)  # its app reached a quota meanwhile: another app's job
            continue
        break
    if not isinstance(row, dict):
        return None
    return Job(
        id=int(row["id"]),
        sid=int(row["sid"]),
        app=str(row["app"]),
        grp=str(row["grp"]),
        kind=str(row["kind"]),
        klass=int(row["class"]),
        cost=float(row["cost"]),
        attempts=int(row["attempts"]) + 1,
        cores=float(row["cores"]),
    )


_SPENT = object()  # a candidate that had used up its attempts (now failed): pick again


@dataclass(frozen=True)
class _Blocked:
    app: str


# Why an app's jobs wait (``waiting``): the stable codes the API and the admin view show.
APP_MAX_JOBS, APP_CPU_DAY = "app_max_jobs", "app_cpu_day"

# CPU-seconds a job has used: its recorded ones, plus, while it runs, its cores over the
# time since it started.
_USED = (
    "cpu_seconds + IF(state = 'running' AND started IS NOT NULL,"
    " TIMESTAMPDIFF(MICROSECOND, started, NOW(3)) / 1e6 * cores, 0)"
)


def blocked_apps(cur: Any, app: str | None = None) -> dict[str, str]:
    """Apps at one of their media quotas (all, or just ``app``), each with why: at its
    concurrent jobs (``app_max_jobs``) or its CPU-seconds of the day, UTC
    (``app_cpu_day``). Their jobs wait while other apps' run."""
    where = " AND a.app = %s" if app is not None else ""
    args: tuple[Any, ...] = (app,) if app is not None else ()
    cur.execute(
        "SELECT a.app, a.media_max_jobs, a.media_cpu_day,"
        " (SELECT COUNT(*) FROM media_jobs r WHERE r.app = a.app AND r.state = 'running'"
        "  AND r.lease_until > NOW(3)) AS running,"
        f" (SELECT COALESCE(SUM({_USED}), 0) FROM media_jobs d WHERE d.app = a.app"
        "  AND (d.state = 'running' OR d.finished >= CURDATE())) AS used"
        " FROM apps a WHERE (a.media_max_jobs IS NOT NULL OR a.media_cpu_day IS NOT NULL)" + where,
        args,
    )
    out: dict[str, str] = {}
    for row in cur.fetchall():
        if row["media_max_jobs"] is not None and row["running"] >= row["media_max_jobs"]:
            out[str(row["app"])] = APP_MAX_JOBS
        elif row["media_cpu_day"] is not None and float(row["used"]) >= float(row["media_cpu_day"]):
            out[str(row["app"])] = APP_CPU_DAY
    return out


def _pick(
    conn: Connection,
    node_id: str,
    grp: str,
    budget: float,
    lease: float,
    max_attempts: int,
    blocked: set[str],
) -> object:
    try:
        with conn.cursor() as cur:
            # READ COMMITTED: the quota's re-check below, once this claim holds the app's
            # row, must see what a claim that held it before committed. Under MariaDB's
            # REPEATABLE READ it would read the snapshot of this transaction's first read
            # and could take a slot taken meanwhile (two running jobs at a limit of one).
            cur.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        conn.begin()
        with conn.cursor() as cur:
            used = running_cores(cur, node_id)
            room = budget - used if used > 0 else float("inf")
            blocked = blocked | set(blocked_apps(cur))
            skip = " AND app NOT IN (" + ", ".join(["%s"] * len(blocked)) + ")" if blocked else ""
            cur.execute(
                "SELECT id, sid, app, grp, kind, class, cost, cores, attempts FROM media_jobs"
                " WHERE grp = %s AND cores <= %s"
                " AND (state = 'queued' OR (state = 'running' AND lease_until <= NOW(3)))"
                + skip
                + " ORDER BY class, cost DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                (grp, min(room, 1e300), *sorted(blocked)),
            )
            row = cur.fetchone()
            if row is None:
                conn.commit()
                return None
            if row["attempts"] >= max_attempts:
                cur.execute(
                    "UPDATE media_jobs SET state = 'failed', code = 'too_many_attempts',"
                    " message = %s, node_id = NULL, lease_until = NULL, finished = NOW(3) WHERE id = %s",
                    (f"its worker stopped {row['attempts']} times before it finished", row["id"]),
                )
                conn.commit()
                return _SPENT
            # Claims of one app serialise on its row, so two nodes never both take its
            # last concurrent slot; re-checked under that lock.
            cur.execute("SELECT app FROM apps WHERE app = %s FOR UPDATE", (row["app"],))
            if blocked_apps(cur, str(row["app"])):
                conn.commit()
                return _Blocked(str(row["app"]))
            cur.execute(
                "UPDATE media_jobs SET state = 'running', node_id = %s, attempts = attempts + 1,"
                " lease_until = NOW(3) + INTERVAL %s MICROSECOND, started = NOW(3), progress = 0"
                " WHERE id = %s",
                (node_id, int(lease * 1e6), row["id"]),
            )
        conn.commit()
    except pymysql.MySQLError:
        conn.rollback()
        raise
    return dict(row)


def renew(conn: Connection, job: Job, node_id: str, lease: float, progress: float) -> bool:
    """Extend the lease and record progress; False if the job is no longer this node's
    (its lease ran out and another node took it, or it was cancelled): stop working on it."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE media_jobs SET lease_until = NOW(3) + INTERVAL %s MICROSECOND, progress = %s"
            " WHERE id = %s AND node_id = %s AND state = 'running' AND attempts = %s",
            (int(lease * 1e6), max(0.0, min(progress, 1.0)), job.id, node_id, job.attempts),
        )
        held = cur.rowcount == 1
    conn.commit()
    return held


def finish(conn: Connection, job: Job, node_id: str, code: str | None = None, message: str = "") -> bool:
    """Mark the job done (``code`` None) or failed with ``code``; False (and nothing
    changed) if the job is no longer this node's: its output must not be published."""
    with conn.cursor() as cur:
        held = mark_finished(cur, job, node_id, code, message)
    conn.commit()
    return held


def release(conn: Connection, job: Job, node_id: str) -> bool:
    """Give a running job back to the queue, its attempt not counted (its worker is
    stopping, not failing): another node may take it at once."""
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE media_jobs SET cpu_seconds = {_USED}, state = 'queued', node_id = NULL,"
            " lease_until = NULL, attempts = attempts - 1, progress = 0"
            " WHERE id = %s AND node_id = %s AND state = 'running' AND attempts = %s",
            (job.id, node_id, job.attempts),
        )
        held = cur.rowcount == 1
    conn.commit()
    return held


def mark_finished(cur: Any, job: Job, node_id: str, code: str | None = None, message: str = "") -> bool:
    """``finish`` inside the caller's transaction (which publishes the job's output with
    it): True if the job was still this node's and is now marked."""
    cur.execute(
        f"UPDATE media_jobs SET cpu_seconds = {_USED}, state = %s, code = %s, message = %s,"
        " progress = IF(%s, 1, progress), lease_until = NULL, finished = NOW(3)"
        " WHERE id = %s AND node_id = %s AND state = 'running' AND attempts = %s",
        ("done" if code is None else "failed", code, message[:255] or None, code is None,
         job.id, node_id, job.attempts),
    )  # fmt: skip
    return bool(cur.rowcount == 1)


def cancel_file(cur: Any, sid: int) -> int:
    """Cancel every unfinished job of a file (it was deleted or replaced); a running one's
    worker learns it at its next renewal and stops. Returns how many."""
    cur.execute(
        "UPDATE media_jobs SET state = 'cancelled', code = 'file_deleted', lease_until = NULL,"
        " finished = NOW(3) WHERE sid = %s AND state IN ('queued', 'running')",
        (sid,),
    )
    return int(cur.rowcount)


def set_quota(cur: Any, app: str, max_jobs: int | None, cpu_day: float | None) -> bool:
    """Set the app's media quotas (None: unlimited); whether the app exists."""
    cur.execute(
        "UPDATE apps SET media_max_jobs = %s, media_cpu_day = %s WHERE app = %s", (max_jobs, cpu_day, app)
    )
    return apps.exists(cur, app)


def overview(cur: Any, app: str | None = None) -> dict[str, Any]:
    """The admin view: jobs by state and class, what each node runs (cores, jobs), the
    queued and running jobs with why they wait, and the latest failures."""
    mine, args = (" AND app = %s", (app,)) if app else ("", ())

    def rows(sql: str) -> list[dict[str, Any]]:
        cur.execute(sql.format(mine=mine), args)
        return [dict(r) for r in cur.fetchall()]

    cols = "id, sid, app, grp, kind, class, cost, cores, attempts, state, node_id, progress, code, message"
    counts = rows(
        "SELECT state, class, COUNT(*) AS n, COALESCE(SUM(cost), 0) AS cost FROM media_jobs"
        " WHERE TRUE{mine} GROUP BY state, class ORDER BY state, class"
    )
    nodes = rows(
        "SELECT node_id, COUNT(*) AS jobs, SUM(cores) AS cores FROM media_jobs"
        " WHERE state = 'running' AND lease_until > NOW(3){mine} GROUP BY node_id ORDER BY node_id"
    )
    live = rows(
        f"SELECT {cols} FROM media_jobs WHERE state IN ('queued', 'running'){{mine}}"
        " ORDER BY state DESC, class, cost DESC, id LIMIT 200"
    )
    failed = rows(
        f"SELECT {cols} FROM media_jobs WHERE state = 'failed'{{mine}} ORDER BY finished DESC LIMIT 20"
    )
    held = blocked_apps(cur, app)
    for job in live:
        job["waiting"] = (held.get(job["app"]) or "queue") if job["state"] == "queued" else None
    return {"counts": counts, "nodes": nodes, "jobs": live, "failed": failed, "blocked_apps": held}


def retry(cur: Any, job_id: int) -> bool:
    """Queue a failed or cancelled job again, its attempts reset; False if it is not one."""
    cur.execute(
        "UPDATE media_jobs j JOIN files f ON f.sid = j.sid SET j.state = 'queued', j.attempts = 0,"
        " j.code = NULL, j.message = NULL, j.node_id = NULL, j.lease_until = NULL, j.progress = 0,"
        " j.finished = NULL WHERE j.id = %s AND j.state IN ('failed', 'cancelled')",
        (job_id,),
    )
    return bool(cur.rowcount == 1)


def cancel(cur: Any, job_id: int) -> bool:
    """Cancel a queued or running job (its worker stops at its next renewal)."""
    cur.execute(
        "UPDATE media_jobs SET state = 'cancelled', code = 'cancelled', lease_until = NULL,"
        " finished = NOW(3) WHERE id = %s AND state IN ('queued', 'running')",
        (job_id,),
    )
    return bool(cur.rowcount == 1)
