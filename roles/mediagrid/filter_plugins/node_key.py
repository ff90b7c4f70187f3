"""mediagrid_node_key: a storage node's own credential, as mediagrid.signing.node_key
derives it (base64url HMAC-SHA256 of "node\\n<id>\\n<address>" under the node master
key, unpadded). The role renders it into the node's configuration; the master key stays
on the nodes that check nodes. control/tests/unit checks both derivations agree."""

from __future__ import annotations

import base64
import hashlib
import hmac


def mediagrid_node_key(master: str, node_id: str, address: str) -> str:
    mac = hmac.new(master.encode(), f"node\n{node_id}\n{address}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"mediagrid_node_key": mediagrid_node_key}
