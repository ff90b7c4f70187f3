"""MariaDB access: one PyMySQL connection per worker thread, reused across requests.

A request takes the thread's connection with :func:`get_db`; any database error drops it
so the next request reconnects. Reuse matters: a fresh connection per lookup would cost
more than the lookup itself. Request connections run in autocommit mode, so a lookup is
one round trip and leaves no transaction (nor stale snapshot) behind; writes go through
:func:`transaction`, which opens one explicitly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeAlias

import pymysql
import pymysql.cursors
from flask import Flask, Response, current_app, g
from pymysql.constants import SERVER_STATUS

if TYPE_CHECKING:
    from .config import Settings

_local = threading.local()
IDLE_PING = 1.0  # seconds


# A connection whose cursors return dict rows (PyMySQL's class is generic only in its stubs).
Connection: TypeAlias = "pymysql.connections.Connection[pymysql.cursors.DictCursor]"


def connect(conf: Mapping[str, Any], database: bool = True) -> Connection:
    """Open a connection (dict rows) from a configuration mapping (``DB_*`` keys)."""
    where: dict[str, Any] = (
        {"unix_socket": conf["DB_UNIX_SOCKET"]}
        if conf.get("DB_UNIX_SOCKET")
        else {"host": conf["DB_HOST"], "port": conf["DB_PORT"]}
    )
    if conf.get("DB_SSL_CA"):
        # The server proves its name with a certificate of the cluster's CA.
        where.update(ssl_ca=conf["DB_SSL_CA"], ssl_verify_cert=True, ssl_verify_identity=True)
    return pymysql.connections.Connection(
        user=conf["DB_USER"],
        password=conf["DB_PASSWORD"],
        database=conf["DB_NAME"] if database else None,
        charset="utf8mb4",
        cursorclass=pymysql.cursors.DictCursor,
        connect_timeout=conf["DB_CONNECT_TIMEOUT"],
        read_timeout=30,
        write_timeout=30,
        autocommit=False,
        init_command="SET time_zone = '+00:00'",
        **where,
    )


def one(cur: pymysql.cursors.DictCursor) -> dict[str, Any]:
    """The row of a statement that always returns one (an aggregate, a row just written)."""
    row = cur.fetchone()
    if row is None:
        raise pymysql.err.DataError("the statement returned no row")
    return row


def sids_in(cur: pymysql.cursors.DictCursor, table: str, sids: Sequence[int]) -> set[int]:
    """Which of these storage ids have a row in ``table`` (a table name from the code)."""
    if not sids:
        return set()
    marks = ", ".join(["%s"] * len(sids))
    cur.execute(f"SELECT sid FROM {table} WHERE sid IN ({marks})", tuple(sids))
    return {int(r["sid"]) for r in cur.fetchall()}


def get_db() -> Connection:
    """The current thread's connection, opened on first use.

    A connection idle for more than a second is pinged first (and reopened if the server
    went away meanwhile), so a MariaDB restart costs no failed request per worker thread.
    """
    if "db" not in g:
        conn = getattr(_local, "conn", None)
        if conn is not None and time.monotonic() - getattr(_local, "used", 0.0) > IDLE_PING:
            try:
                conn.ping(reconnect=True)
            except pymysql.MySQLError:
                discard()
                conn = None
        if conn is None or not conn.open:
            conn = connect(current_app.config)
            conn.autocommit(True)
            _local.conn = conn
        _local.used = time.monotonic()
        g.db = conn
    current: Connection = g.db
    return current


def discard() -> None:
    """Forget this thread's connection (after an error) so the next use reconnects."""
    conn = getattr(_local, "conn", None)
    _local.conn = None
    if conn is not None:
        with suppress(Exception):
            conn.close()


def _teardown(exc: BaseException | None) -> None:
    conn = g.pop("db", None)
    if conn is None:
        return
    if exc is not None:
        discard()
        return
    if not conn.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS:
        return  # the usual case: no round trip after a lookup
    try:
        conn.rollback()  # a transaction left open; writes commit explicitly
    except pymysql.MySQLError:
        discard()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_teardown)

    @app.errorhandler(pymysql.MySQLError)  # overrides the generic handler to also reset
    def _db_error(err: pymysql.MySQLError) -> tuple[Response, int]:
        from .errors import error_response

        g.pop("db", None)
        discard()
        current_app.logger.warning("database unavailable: %s", err)
        return error_response(503, "db_unavailable", "the metadata database is unavailable")


class CommitUnknown(pymysql.err.OperationalError):
    """COMMIT was sent but no answer came back (the connection broke, the server restarted,
    the read timed out): the transaction may have committed or not. Whoever must undo
    work on failure finds out first (re-reads what it wrote) instead of assuming either."""


@contextmanager
def transaction() -> Iterator[pymysql.cursors.DictCursor]:
    """A cursor inside a transaction that commits on success and rolls back on error; a
    commit whose outcome is unknown raises :class:`CommitUnknown` (a database error, so
    answered 503 unless the caller finds out), with the connection dropped."""
    conn = get_db()
    try:
        conn.begin()
        with conn.cursor() as cur:
            yield cur
    except BaseException:
        try:
            conn.rollback()
        except pymysql.MySQLError:
            discard()
        raise
    try:
        conn.commit()
    except pymysql.MySQLError as err:
        g.pop("db", None)
        discard()
        raise CommitUnknown(*err.args) from err


class LazyDB:
    """A daemon's own MariaDB connection (the agent's tasks, outside Flask): opened when
    first needed, dropped after an error (the next use reconnects), so MariaDB being down
    only postpones the work."""

    def __init__(self, conf: Settings) -> None:
        self.conf = conf
        self._conn: Connection | None = None

    def get(self) -> Connection:
        if self._conn is None:
            self._conn = connect(self.conf.as_config())
        return self._conn

    def drop(self) -> None:
        if self._conn is not None:
            with suppress(Exception):
                self._conn.close()
        self._conn = None
