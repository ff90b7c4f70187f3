"""A TCP proxy between services and MariaDB that loses a commit's answer for real.

Armed, it lets the COMMIT of a transaction that inserted into ``files`` reach MariaDB,
waits for MariaDB's answer (so the commit has happened), drops that answer and cuts both
connections: what a restart, a network cut or a read timeout does to a shim that is
waiting for the answer. It can also refuse the next new connections. It reads the MySQL
protocol's packet framing only (3-byte length, sequence number, command byte).
"""

from __future__ import annotations

import contextlib
import socket
import threading

COM_QUERY = 3


class DbProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.cut_commits = 0  # answers of file-recording COMMITs still to lose
        self.refuse_next = 0  # new connections still to refuse
        self.cuts = 0
        self.refused = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, cut_commits: int = 1, refuse_next: int = 0) -> None:
        with self.lock:
            self.cut_commits, self.refuse_next = cut_commits, refuse_next
            self.cuts = self.refused = 0

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                refuse = self.cuts > 0 and self.refuse_next > 0
                if refuse:
                    self.refuse_next -= 1
                    self.refused += 1
            if refuse:
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.target_port))
            _Link(self, client, server)

    def take_cut(self) -> bool:
        with self.lock:
            if self.cut_commits <= 0:
                return False
            self.cut_commits -= 1
            self.cuts += 1
            return True


class _Link:
    """One proxied connection: a thread each way."""

    def __init__(self, proxy: DbProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy, self.client, self.server = proxy, client, server
        self.inserted = False  # the open transaction inserted into files
        self.cut = threading.Event()  # lose the next answer and cut
        threading.Thread(target=self._up, daemon=True).start()
        threading.Thread(target=self._down, daemon=True).start()

    def _close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _command(self, packet: bytes) -> None:
        if packet[3] != 0 or len(packet) < 5 or packet[4] != COM_QUERY:
            return  # not the start of a command (the handshake, a continuation)
        query = packet[5:].decode(errors="replace").strip().upper()
        if query.startswith(("BEGIN", "START TRANSACTION")):
            self.inserted = False
        elif query.startswith("INSERT INTO FILES"):
            self.inserted = True
        elif query == "COMMIT" and self.inserted and self.proxy.take_cut():
            self.cut.set()  # before the COMMIT goes on: its answer is the next thing back

    def _up(self) -> None:
        buf = b""
        try:
            while data := self.client.recv(65536):
                buf += data
                while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:3], "little"):
                    size = 4 + int.from_bytes(buf[:3], "little")
                    packet, buf = buf[:size], buf[size:]
                    self._command(packet)
                    self.server.sendall(packet)
        except OSError:
            pass
        self._close()

    def _down(self) -> None:
        try:
            while data := self.server.recv(65536):
                if self.cut.is_set():
                    break  # MariaDB answered the COMMIT: it happened; the answer is lost
                self.client.sendall(data)
        except OSError:
            pass
        self._close()
