"""The MariaDB schema, owned by the package: ordered migrations and the command that
applies the missing ones (idempotent, safe to run from several hosts: each step runs
under a named lock).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .db import connect, one

# files.file_id is VARCHAR(200): the longest file id the API accepts. Not a setting, since
# a longer one needs a migration of the column first.
FILE_ID_LENGTH = 200
# App, user and file id compare as bytes, as they do in paths, URLs and the CLI.
NAME_COLLATION = "utf8mb4_bin"
_NAME = f"CHARACTER SET utf8mb4 COLLATE {NAME_COLLATION} NOT NULL"

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "apps, routes, files (partitioned by user), id segments",
        [
            """CREATE TABLE IF NOT EXISTS apps (
                app VARCHAR(64) NOT NULL PRIMARY KEY,
                secret VARCHAR(128) NOT NULL,
                created TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
            ) ENGINE=InnoDB""",
            """CREATE TABLE IF NOT EXISTS routes (
                app VARCHAR(64) NOT NULL,
                user VARCHAR(128) NOT NULL,
                grp VARCHAR(32) NOT NULL,
                created TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
                PRIMARY KEY (app, user),
                KEY routes_grp (grp)
            ) ENGINE=InnoDB""",
            f"""CREATE TABLE IF NOT EXISTS files (
                app VARCHAR(64) NOT NULL,
                user VARCHAR(128) NOT NULL,
                file_id VARCHAR({FILE_ID_LENGTH}) NOT NULL,
                sid BIGINT UNSIGNED NOT NULL,
                grp VARCHAR(32) NOT NULL,
                path VARCHAR(255) NOT NULL,
                size BIGINT UNSIGNED NOT NULL,
                sha256 CHAR(64) NOT NULL,
                content_type VARCHAR(127) NOT NULL,
                created TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
                PRIMARY KEY (app, user, file_id)
            ) ENGINE=InnoDB
            PARTITION BY KEY (user) PARTITIONS 16""",
            """CREATE TABLE IF NOT EXISTS id_segments (
                name VARCHAR(64) NOT NULL PRIMARY KEY,
                max_id BIGINT UNSIGNED NOT NULL,
                step INT UNSIGNED NOT NULL
            ) ENGINE=InnoDB""",
        ],
    ),
    (
        2,
        "uploads in flight (written in place; the agents remove abandoned ones)",
        [
            """CREATE TABLE IF NOT EXISTS uploads (
                sid BIGINT UNSIGNED NOT NULL PRIMARY KEY,
                grp VARCHAR(32) NOT NULL,
                path VARCHAR(255) NOT NULL,
                node VARCHAR(64) NOT NULL,
                started TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
                KEY uploads_grp_started (grp, started)
            ) ENGINE=InnoDB""",
        ],
    ),
    (
        4,
        "signatures seen within their window (replays refused); a second app secret",
        [
            # the previous secret, still valid while an app's secret is rotated
            "ALTER TABLE apps ADD COLUMN IF NOT EXISTS secret2 VARCHAR(128) NULL AFTER secret",
            """CREATE TABLE IF NOT EXISTS seen_signatures (
                sig CHAR(43) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
                expires INT UNSIGNED NOT NULL,
                KEY seen_signatures_expires (expires)
            ) ENGINE=InnoDB""",
        ],
    ),
    (
        5,
        "names compare byte-exact (binary collation); files found by storage id",
        [
            # Names are case-sensitive everywhere else (paths, URLs, the CLI): under
            # utf8mb4_unicode_ci, A.txt collided with a.txt and user Bob read bob's list.
            # MODIFY rebuilds the tables in place (files is re-partitioned by its key).
            f"""ALTER TABLE files
                MODIFY app VARCHAR(64) {_NAME},
                MODIFY user VARCHAR(128) {_NAME},
                MODIFY file_id VARCHAR({FILE_ID_LENGTH}) {_NAME}""",
            "ALTER TABLE files ADD INDEX IF NOT EXISTS files_sid (sid)",
            f"""ALTER TABLE routes
                MODIFY app VARCHAR(64) {_NAME},
                MODIFY user VARCHAR(128) {_NAME}""",
            f"ALTER TABLE apps MODIFY app VARCHAR(64) {_NAME}",
        ],
    ),
    (
        6,
        "admin apps (see the cluster's topology)",
        ["ALTER TABLE apps ADD COLUMN IF NOT EXISTS admin BOOLEAN NOT NULL DEFAULT FALSE"],
    ),
    (
        7,
        "per-app quotas (bytes, files) and usage",
        [
            "ALTER TABLE apps ADD COLUMN IF NOT EXISTS quota_bytes BIGINT UNSIGNED NULL,"
            " ADD COLUMN IF NOT EXISTS quota_files BIGINT UNSIGNED NULL",
            f"""CREATE TABLE IF NOT EXISTS app_usage (
                app VARCHAR(64) {_NAME} PRIMARY KEY,
                bytes BIGINT UNSIGNED NOT NULL DEFAULT 0,
                files BIGINT UNSIGNED NOT NULL DEFAULT 0
            ) ENGINE=InnoDB""",
            # what is stored already counts (an existing cluster upgraded)
            """INSERT INTO app_usage (app, bytes, files)
            SELECT app, SUM(size), COUNT(*) FROM files GROUP BY app
            ON DUPLICATE KEY UPDATE bytes = VALUES(bytes), files = VALUES(files)""",
        ],
    ),
    (
        8,
        "storage nodes an operator removed",
        [
            """CREATE TABLE IF NOT EXISTS removed_nodes (
                node_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
                removed TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
            ) ENGINE=InnoDB""",
        ],
    ),
    (
        9,
        "the media job queue and each file's media state (VOD processing)",
        [
            f"""CREATE TABLE IF NOT EXISTS media_jobs (
                id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                sid BIGINT UNSIGNED NOT NULL,
                app VARCHAR(64) {_NAME},
                grp VARCHAR(32) NOT NULL,
                kind VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
                class TINYINT UNSIGNED NOT NULL,
                cost DOUBLE NOT NULL,
                state ENUM('queued', 'running', 'done', 'failed', 'cancelled') NOT NULL DEFAULT 'queued',
                node_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
                lease_until TIMESTAMP(3) NULL,
                attempts SMALLINT UNSIGNED NOT NULL DEFAULT 0,
                progress DOUBLE NOT NULL DEFAULT 0,
                code VARCHAR(64) NULL,
                message VARCHAR(255) NULL,
                created TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
                started TIMESTAMP(3) NULL,
                finished TIMESTAMP(3) NULL,
                UNIQUE KEY media_jobs_file_kind (sid, kind),
                KEY media_jobs_pick (grp, state, class, cost),
                KEY media_jobs_node (node_id, state)
            ) ENGINE=InnoDB""",
            """CREATE TABLE IF NOT EXISTS media (
                sid BIGINT UNSIGNED NOT NULL PRIMARY KEY,
                state ENUM('queued', 'processing', 'ready', 'failed', 'not_media') NOT NULL DEFAULT 'queued',
                code VARCHAR(64) NULL,
                message VARCHAR(255) NULL,
                info LONGTEXT NULL CHECK (info IS NULL OR JSON_VALID(info)),
                updated TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
            ) ENGINE=InnoDB""",
        ],
    ),
    (
        10,
        "media jobs: the cores a running job holds (a node's budget admits by cores)",
        [
            "ALTER TABLE media_jobs ADD COLUMN IF NOT EXISTS cores DOUBLE NOT NULL DEFAULT 1 AFTER cost",
        ],
    ),
    (
        11,
        "player QoS reports: first-frame time, stalls, quality switches per view",
        [
            """CREATE TABLE IF NOT EXISTS qos_reports (
                id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                sid BIGINT UNSIGNED NOT NULL,
                app VARCHAR(64) NOT NULL,
                first_frame_ms DOUBLE NULL,
                stalls INT UNSIGNED NOT NULL,
                stall_ms DOUBLE NOT NULL,
                switches INT UNSIGNED NOT NULL,
                errors INT UNSIGNED NOT NULL,
                created TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
                KEY qos_reports_sid (sid, created),
                KEY qos_reports_app (app, created)
            ) ENGINE=InnoDB""",
        ],
    ),
    (
        12,
        "per-app media job quotas: concurrent jobs and CPU-seconds per day",
        [
            "ALTER TABLE apps ADD COLUMN IF NOT EXISTS media_max_jobs INT UNSIGNED NULL,"
            " ADD COLUMN IF NOT EXISTS media_cpu_day DOUBLE NULL",
            "ALTER TABLE media_jobs ADD COLUMN IF NOT EXISTS cpu_seconds DOUBLE NOT NULL DEFAULT 0"
            " AFTER cores, ADD KEY IF NOT EXISTS media_jobs_app (app, state, finished)",
        ],
    ),
    (
        13,
        "per-app ABR ladders; one QoS row per player view",
        [
            # rung names, tallest first ("720p,480p"); NULL: the nodes' MEDIA_LADDER
            "ALTER TABLE apps ADD COLUMN IF NOT EXISTS media_ladder VARCHAR(255) NULL",
            # a view's later report (the page going away) updates its first (the first frame)
            "ALTER TABLE qos_reports ADD COLUMN IF NOT EXISTS view_id VARCHAR(64) NULL AFTER app,"
            " ADD COLUMN IF NOT EXISTS event VARCHAR(16) NOT NULL DEFAULT 'report' AFTER view_id,"
            " ADD COLUMN IF NOT EXISTS updated TIMESTAMP(3) NULL,"
            " ADD UNIQUE KEY IF NOT EXISTS qos_reports_view (sid, view_id)",
        ],
    ),
    (
        14,
        "live streams: their owners, stream keys, refused publishes",
        [
            # a stream name belongs to the app's user who first asked to publish it
            """CREATE TABLE IF NOT EXISTS live_streams (
                app VARCHAR(64) NOT NULL,
                stream VARCHAR(64) NOT NULL,
                user VARCHAR(255) NOT NULL,
                record TINYINT(1) NOT NULL DEFAULT 0,
                created TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
                PRIMARY KEY (app, stream)
            ) ENGINE=InnoDB""",
            # every key issued (its MAC is not kept: the origin checks it with its node key)
            """CREATE TABLE IF NOT EXISTS live_keys (
                kid VARCHAR(16) NOT NULL PRIMARY KEY,
                app VARCHAR(64) NOT NULL,
                stream VARCHAR(64) NOT NULL,
                role ENUM('primary', 'backup') NOT NULL,
                node_id VARCHAR(64) NOT NULL,
                expires BIGINT NOT NULL,
                banned TIMESTAMP(3) NULL,
                kicked TIMESTAMP(3) NULL,
                created TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
                KEY live_keys_stream (app, stream)
            ) ENGINE=InnoDB""",
            """CREATE TABLE IF NOT EXISTS live_events (
                id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                app VARCHAR(64) NOT NULL,
                stream VARCHAR(64) NOT NULL,
                node_id VARCHAR(64) NOT NULL,
                event VARCHAR(32) NOT NULL,
                code VARCHAR(64) NULL,
                kid VARCHAR(16) NULL,
                role VARCHAR(16) NULL,
                client VARCHAR(64) NULL,
                created TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
                KEY live_events_stream (app, stream, id)
            ) ENGINE=InnoDB""",
        ],
    ),
    (
        15,
        "live recording and snapshots",
        [
            # whether a key's publisher is recorded: the stream's choice when it was issued
            "ALTER TABLE live_keys ADD COLUMN IF NOT EXISTS record TINYINT(1) NOT NULL DEFAULT 0"
            " AFTER node_id",
            # seconds between snapshots: the stream's own, else the app's, else SNAPSHOT_EVERY
            "ALTER TABLE live_streams ADD COLUMN IF NOT EXISTS snapshot_every INT UNSIGNED NULL AFTER record",
            "ALTER TABLE apps ADD COLUMN IF NOT EXISTS live_snapshot_every INT UNSIGNED NULL",
            # a JPEG of the live picture in the origin's group volume (path relative to it)
            """CREATE TABLE IF NOT EXISTS live_snapshots (
                app VARCHAR(64) NOT NULL,
                stream VARCHAR(64) NOT NULL,
                at BIGINT NOT NULL,
                grp VARCHAR(32) NOT NULL,
                node_id VARCHAR(64) NOT NULL,
                path VARCHAR(255) NOT NULL,
                size INT UNSIGNED NOT NULL,
                PRIMARY KEY (app, stream, at),
                KEY live_snapshots_group (grp, at)
            ) ENGINE=InnoDB""",
        ],
    ),
    (
        16,
        "live transcodes on demand",
        [
            # one lower rendition of a live stream, wanted by a viewer (a tracker writes the
            # row), run by the origin's agent (state, lease) while viewers fetch it (viewed)
            """CREATE TABLE IF NOT EXISTS live_transcodes (
                app VARCHAR(64) NOT NULL,
                stream VARCHAR(64) NOT NULL,
                rung VARCHAR(8) NOT NULL,
                node_id VARCHAR(64) NOT NULL,
                cores DOUBLE NOT NULL,
                state ENUM('wanted', 'running', 'refused') NOT NULL DEFAULT 'wanted',
                code VARCHAR(32) NULL,
                wanted DATETIME(3) NOT NULL,
                ready DATETIME(3) NULL,
                viewed DATETIME(3) NULL,
                lease_until DATETIME(3) NULL,
                PRIMARY KEY (app, stream, rung),
                KEY live_transcodes_node (node_id, state)
            ) ENGINE=InnoDB""",
        ],
    ),
]

LATEST = MIGRATIONS[-1][0]


def current_version(cur: Any) -> int:
    cur.execute(
        """CREATE TABLE IF NOT EXISTS schema_version (
            version INT NOT NULL PRIMARY KEY,
            description VARCHAR(255) NOT NULL,
            applied TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
        ) ENGINE=InnoDB"""
    )
    cur.execute("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version")
    return int(cur.fetchone()["v"])


def applied_versions(cur: Any) -> set[int]:
    """The migrations applied: each one by its number, not every one below the highest
    (migrations written side by side may land out of order: a database may hold 12
    without 11)."""
    current_version(cur)  # creates the table on a fresh database
    cur.execute("SELECT version FROM schema_version")
    return {int(row["version"]) for row in cur.fetchall()}


def upgrade(conf: Mapping[str, Any]) -> list[int]:
    """Apply missing migrations; return the versions applied (empty when up to date)."""
    conn = connect(conf)
    applied: list[int] = []
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT GET_LOCK('mediagrid_schema', 30) AS ok")
            if not one(cur)["ok"]:
                raise RuntimeError("could not take the schema lock")
            try:
                have = applied_versions(cur)
                for version, description, statements in MIGRATIONS:
                    if version in have:
                        continue
                    for sql in statements:
                        cur.execute(sql)
                    cur.execute(
                        "INSERT INTO schema_version (version, description) VALUES (%s, %s)",
                        (version, description),
                    )
                    conn.commit()
                    applied.append(version)
            finally:
                cur.execute("SELECT RELEASE_LOCK('mediagrid_schema')")
    finally:
        conn.close()
    return applied


def version(conf: Mapping[str, Any]) -> int:
    conn = connect(conf)
    try:
        with conn.cursor() as cur:
            return current_version(cur)
    finally:
        conn.close()
