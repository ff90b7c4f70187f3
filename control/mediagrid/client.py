"""Python client of a mediagrid cluster: the library behind the ``mediagrid`` CLI.

It asks the tracker (through the cluster address) for the user's group and storages,
uploads to the best one and, when a storage fails, retries the next storage of the group.
Downloads and playback go through the gateway with a signed URL.

Calls to the cluster address ride out a moving VIP: a refused or dropped connection and a
502/503/504 are retried with backoff for up to ``retry_for`` seconds, and a download cut
off mid-stream resumes with a Range request where it stopped.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote, unquote, urlencode

import requests

from .signing import TOKEN_MAX_TTL, Scope, file_signature, make_token, signed_headers

Progress = Callable[[int, int | None], None]
CHUNK = 1 << 20
RETRY_STATUSES = {502, 503, 504}
CONNECT_TIMEOUT = 2.0
MAX_RESUMES = 5


class MediagridError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status = status
        self.code = code
        self.message = message


def _raise_for(resp: requests.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        err = resp.json()["error"]
        raise MediagridError(resp.status_code, err["code"], err["message"])
    except (ValueError, KeyError, TypeError):
        raise MediagridError(resp.status_code, "http_error", resp.text[:200] or resp.reason) from None


def _sha256_from(fh: IO[bytes], start: int) -> str:
    """The SHA-256 of ``fh`` from ``start`` to its end (read once more before an upload)."""
    sha = hashlib.sha256()
    fh.seek(start)
    while chunk := fh.read(CHUNK):
        sha.update(chunk)
    fh.seek(start)
    return sha.hexdigest()


class _Body:
    """A sized, re-iterable upload body: requests sends Content-Length and 1 MiB chunks."""

    def __init__(self, fh: IO[bytes], size: int, progress: Progress | None) -> None:
        self.fh, self.size, self.progress = fh, size, progress
        self.start = fh.tell()

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        self.fh.seek(self.start)
        sent = 0
        while True:
            chunk = self.fh.read(CHUNK)
            if not chunk:
                break
            sent += len(chunk)
            if self.progress:
                self.progress(sent, self.size)
            yield chunk


@dataclass
class Client:
    url: str
    app: str
    secret: str
    timeout: float = 30.0
    url_ttl: int = 86400
    retry_for: float = 8.0
    # The CA file that signed the cluster's certificates (https URLs); None: the system's.
    ca_file: str | None = None

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self.session = requests.Session()
        # Passed with each request: requests lets REQUESTS_CA_BUNDLE override a session's own.
        self._verify: str | bool = self.ca_file or True

    # -- plumbing -------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        base: str,
        path: str,
        query: dict[str, Any] | None = None,
        content_sha256: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One signed request over its body (bytes ``data``); an upload passes its file's
        SHA-256 instead (the body is streamed)."""
        extra = kwargs.pop("headers", {})
        ctype = extra.get("Content-Type", "")
        data = kwargs.get("data")
        body = data if isinstance(data, bytes) else None
        signed = signed_headers(
            self.app,
            self.secret,
            method,
            unquote(path),
            query,
            body,
            content_sha256=content_sha256,
            content_type=ctype,
        )
        headers = {**signed, **extra}
        resp = self.session.request(
            method,
            base + path,
            params=query,
            headers=headers,
            verify=self._verify,
            timeout=kwargs.pop("timeout", self.timeout),
            **kwargs,
        )
        _raise_for(resp)
        return resp

    def _retrying(self, what: Callable[[], Any]) -> Any:
        """Run ``what`` until it succeeds, retrying connection failures and 502/503/504
        with backoff for up to ``retry_for`` seconds; the last error is raised."""
        deadline = time.monotonic() + self.retry_for
        pause = 0.1
        while True:
            try:
                return what()
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError):
                if time.monotonic() + pause > deadline:
                    raise
            except MediagridError as err:
                if err.status not in RETRY_STATUSES or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _cluster(self, method: str, path: str, query: dict[str, Any] | None = None) -> requests.Response:
        """A call to the cluster address (tracker, id service, gateway), retried."""
        return self._retrying(
            lambda: self._call(method, self.url, path, query, timeout=(CONNECT_TIMEOUT, self.timeout))
        )

    def _on_group(
        self,
        user: str,
        code: str,
        call: Callable[[str, bool], dict[str, Any]],
        rounds: int = 1,
    ) -> dict[str, Any]:
        """Try ``call(url, retried)`` on each storage of the user's group, best first, until
        one answers; connection failures and 502/503/504 move on to the next, other errors
        are final. ``retried`` says an earlier attempt failed in a way that may have left
        its work done (the answer was lost)."""
        errors: list[str] = []
        for attempt in range(rounds):
            if attempt:
                time.sleep(1)
            for storage in self.storages(user)["storages"]:
                try:
                    return call(storage["url"], bool(errors))
                except requests.RequestException as err:
                    errors.append(f"{storage['node_id']}: {err.__class__.__name__}")
                except MediagridError as err:
                    if err.status not in RETRY_STATUSES:
                        raise
                    errors.append(f"{storage['node_id']}: {err.code}")
        raise MediagridError(503, code, "every storage failed: " + "; ".join(errors))

    @staticmethod
    def _seg(value: str) -> str:
        return quote(value, safe="")

    # -- cluster --------------------------------------------------------------------------
    def storages(self, user: str) -> dict[str, Any]:
        return self._cluster("GET", "/api/v1/storages", {"app": self.app, "user": user}).json()

    def groups(self) -> dict[str, Any]:
        return self._cluster("GET", "/api/v1/groups").json()

    def ids(self, count: int = 1) -> list[int]:
        return self._cluster("POST", "/api/v1/ids", {"count": count}).json()["ids"]

    def token(self, ttl: int = 3600, scope: Scope | None = None) -> str:
        """A bearer token for ``ttl`` seconds (at most TOKEN_MAX_TTL, which the servers
        enforce), app-wide or limited to ``scope``."""
        if ttl > TOKEN_MAX_TTL:
            raise MediagridError(
                400,
                "invalid_ttl",
                f"a token lives at most {TOKEN_MAX_TTL} s (the servers refuse longer ones)",
            )
        return make_token(self.app, self.secret, int(time.time()) + ttl, scope)

    # -- files ----------------------------------------------------------------------------
    def upload(
        self,
        source: str | os.PathLike[str] | IO[bytes],
        user: str,
        file_id: str | None = None,
        overwrite: bool = False,
        progress: Progress | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """Upload a file; retries the next storage of the group when one fails."""
        if isinstance(source, str | os.PathLike):
            with open(source, "rb") as fh:
                name = os.path.basename(os.fspath(source))
                return self._upload(fh, name, user, file_id, overwrite, progress, content_type)
        return self._upload(
            source, getattr(source, "name", ""), user, file_id, overwrite, progress, content_type
        )

    def _upload(
        self,
        fh: IO[bytes],
        name: str,
        user: str,
        file_id: str | None,
        overwrite: bool,
        progress: Progress | None,
        content_type: str | None,
    ) -> dict[str, Any]:
        size = os.fstat(fh.fileno()).st_size - fh.tell()
        body = _Body(fh, size, progress)
        base_path = f"/api/v1/files/{self._seg(self.app)}/{self._seg(user)}"
        query: dict[str, Any] = {}
        if overwrite:
            query["overwrite"] = "1"
        if file_id is None:
            method, path = "POST", base_path
            if name:
                query["filename"] = os.path.basename(str(name))
        else:
            method, path = "PUT", f"{base_path}/{self._seg(file_id)}"
        headers = {"Content-Type": content_type or "application/octet-stream"}
        sha = _sha256_from(fh, body.start)  # signed: the shim stores only these bytes

        def send(base: str, retried: bool) -> dict[str, Any]:
            try:
                return self._call(
                    method, base, path, query, sha, data=body, headers=headers, timeout=(3, self.timeout)
                ).json()
            except MediagridError as err:
                # The attempt that failed may have stored the file and lost only its answer
                # (its node died right after): the same bytes under the id are a success.
                if err.status == 409 and retried and file_id is not None:
                    stored = self._stored_as(user, file_id, sha, size)
                    if stored is not None:
                        return stored
                raise

        return self._on_group(user, "upload_failed", send, rounds=2)  # round 2 re-asks the tracker

    def _stored_as(self, user: str, file_id: str, sha: str, size: int) -> dict[str, Any] | None:
        """The upload answer for ``file_id`` if the cluster holds exactly these bytes."""
        head = self._retrying(lambda: self.session.head(self.playback_url(user, file_id, 600), timeout=10))
        if head.status_code != 200 or int(head.headers.get("Content-Length", -1)) != size:
            return None
        if head.headers.get("X-MG-SHA256") != sha:
            return None
        return {
            "app": self.app,
            "user": user,
            "file_id": file_id,
            "size": size,
            "sha256": sha,
            "content_type": head.headers.get("Content-Type"),
            "path": f"/files/{self.app}/{user}/{file_id}",
            "replaced": False,
            "group": None,  # the answer that would have said where was lost
            "node_id": None,
        }

    def playback_url(self, user: str, file_id: str, ttl: int | None = None) -> str:
        expires = int(time.time()) + (self.url_ttl if ttl is None else ttl)
        sig = file_signature(self.secret, self.app, user, file_id, expires)
        path = f"/files/{self._seg(self.app)}/{self._seg(user)}/{self._seg(file_id)}"
        return f"{self.url}{path}?{urlencode({'expires': expires, 'sig': sig})}"

    def direct_link(self, user: str, file_id: str, ttl: int | None = None) -> dict[str, Any]:
        """A direct link minted by the tracker (``url``, ``expires``, the file's metadata):
        nginx checks and serves it by itself, the fastest way to hand bytes to players."""
        path = f"/api/v1/links/{self._seg(self.app)}/{self._seg(user)}/{self._seg(file_id)}"
        ttl = self.url_ttl if ttl is None else ttl
        return self._cluster("GET", path, {"ttl": ttl}).json()

    def media(self, user: str, file_id: str) -> dict[str, Any]:
        """The file's media processing: state, refusal code, ffprobe's reading, jobs."""
        path = f"/api/v1/media/{self._seg(self.app)}/{self._seg(user)}/{self._seg(file_id)}"
        return self._cluster("GET", path).json()

    def wait_playable(
        self,
        user: str,
        file_id: str,
        timeout: float = 600.0,
        on_state: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the file's media state until its first rendition plays (``hls`` is set) or
        it is final without one (``failed``, ``not_media``); its last state. TimeoutError
        after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        pause = 0.2
        while True:
            got = self.media(user, file_id)
            if on_state is not None:
                on_state(got)
            if got.get("hls") or got["state"] in ("ready", "failed", "not_media", "none"):
                return got
            if time.monotonic() + pause > deadline:
                raise TimeoutError(f"{file_id} is still {got['state']} after {timeout:g} s")
            time.sleep(pause)
            pause = min(pause * 1.5, 2.0)

    def download(
        self, user: str, file_id: str, dest: IO[bytes], progress: Progress | None = None
    ) -> dict[str, Any]:
        """Stream a file into ``dest``; verifies its SHA-256 when the server sends one.
        A transfer cut off mid-stream resumes where it stopped (Range), within ``retry_for``."""
        url = self.playback_url(user, file_id, 600)
        sha, got = hashlib.sha256(), 0
        total: int | None = None
        expected: str | None = None
        ctype: str | None = None
        headers: dict[str, str] = {}

        def fetch() -> requests.Response:
            if got:
                headers["Range"] = f"bytes={got}-"
            timeout = (CONNECT_TIMEOUT, self.timeout)
            resp = self.session.get(url, stream=True, headers=headers, timeout=timeout, verify=self._verify)
            _raise_for(resp)
            if got and resp.status_code != 206:
                resp.close()
                raise MediagridError(502, "resume_failed", "the server did not resume the download")
            return resp

        for resumes in range(MAX_RESUMES + 1):
            resp = self._retrying(fetch)
            if resumes == 0:
                total = int(resp.headers.get("Content-Length", 0)) or None
                expected = resp.headers.get("X-MG-SHA256")
                ctype = resp.headers.get("Content-Type")
            try:
                for chunk in resp.iter_content(CHUNK):
                    dest.write(chunk)
                    sha.update(chunk)
                    got += len(chunk)
                    if progress:
                        progress(got, total)
                break
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                if resumes == MAX_RESUMES:
                    raise
        if expected and expected != sha.hexdigest():
            raise MediagridError(502, "checksum_mismatch", "downloaded bytes do not match")
        return {"size": got, "sha256": sha.hexdigest(), "content_type": ctype}

    def delete(self, user: str, file_id: str) -> dict[str, Any]:
        path = f"/api/v1/files/{self._seg(self.app)}/{self._seg(user)}/{self._seg(file_id)}"
        return self._on_group(user, "delete_failed", lambda base, _: self._call("DELETE", base, path).json())

    # -- live -----------------------------------------------------------------------------
    def live_publish(
        self, stream: str, user: str, record: bool = False, snapshot_every: int | None = None
    ) -> dict[str, Any]:
        """RTMP publish URLs (primary and backup origin, each with its key) and the play URL.
        ``snapshot_every``: seconds between the stream's snapshots (None: the app's)."""
        query: dict[str, Any] = {"user": user, "record": "1" if record else "0"}
        if snapshot_every is not None:
            query["snapshot_every"] = str(snapshot_every)
        path = f"/api/v1/live/{self._seg(self.app)}/{self._seg(stream)}"
        return self._cluster("POST", path, query).json()

    def live_streams(self) -> list[dict[str, Any]]:
        return self._cluster("GET", f"/api/v1/live/{self._seg(self.app)}").json()["streams"]

    def live_stream(self, stream: str) -> dict[str, Any]:
        return self._cluster("GET", f"/api/v1/live/{self._seg(self.app)}/{self._seg(stream)}").json()

    def live_events(self, stream: str) -> list[dict[str, Any]]:
        path = f"/api/v1/live/{self._seg(self.app)}/{self._seg(stream)}/events"
        return self._cluster("GET", path).json()["events"]

    def live_snapshots(self, stream: str, limit: int = 100) -> list[dict[str, Any]]:
        """The stream's snapshots, newest first, each with a direct link (``url``)."""
        path = f"/api/v1/live/{self._seg(self.app)}/{self._seg(stream)}/snapshots"
        return self._cluster("GET", path, {"limit": str(limit)}).json()["snapshots"]

    def live_kick(self, stream: str) -> dict[str, Any]:
        return self._cluster("POST", f"/api/v1/live/{self._seg(self.app)}/{self._seg(stream)}/kick").json()

    def live_ban(self, stream: str, kid: str | None = None) -> dict[str, Any]:
        path = f"/api/v1/live/{self._seg(self.app)}/{self._seg(stream)}/ban"
        return self._cluster("POST", path, {"kid": kid} if kid else None).json()

    def live_play(self, stream: str, rendition: str | None = None) -> dict[str, Any]:
        """The play decision: edge HLS URL, RTMP URL, the viewers' play URL; ``rendition``
        (a rung, ``480p``) for a lower rendition, transcoded while it is watched."""
        query = {"rendition": rendition} if rendition else None
        return self._cluster("GET", f"/api/v1/play/{self._seg(self.app)}/{self._seg(stream)}", query).json()

    def list(self, user: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Every file of the user, following pages."""
        out: list[dict[str, Any]] = []
        after = ""
        path = f"/api/v1/files/{self._seg(self.app)}/{self._seg(user)}"
        while True:
            page = self._cluster("GET", path, {"after": after, "limit": limit}).json()["files"]
            out.extend(page)
            if len(page) < limit:
                return out
            after = page[-1]["file_id"]
