"""The storage shim's client of the id service: fetches ids in batches, signed with the
cluster secret, trying each configured id server in turn."""

from __future__ import annotations

import threading
from collections import deque

import requests

from .errors import APIError
from .signing import signed_headers


class IdClient:
    def __init__(self, urls: list[str], node_id: str, secret: str, batch: int) -> None:
        self.urls = urls
        self.node_id = node_id
        self.secret = secret
        self.batch = max(1, min(batch, 1000))
        self._ids: deque[int] = deque()
        self._lock = threading.Lock()
        self._session = requests.Session()

    def _fetch(self) -> list[int]:
        path = "/api/v1/ids"
        query = {"count": self.batch}
        for base in self.urls:
            headers = signed_headers(self.node_id, self.secret, "POST", path, query, b"", cluster=True)
            try:
                resp = self._session.post(base + path, params=query, headers=headers, timeout=3)
            except requests.RequestException:
                continue
            if resp.status_code == 200:
                return [int(i) for i in resp.json()["ids"]]
        raise APIError(503, "id_service_unavailable", "no id server answered")

    def take(self) -> int:
        with self._lock:
            if not self._ids:
                self._ids.extend(self._fetch())
            return self._ids.popleft()
