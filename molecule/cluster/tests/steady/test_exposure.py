"""What each node exposes on the cluster network (issue 11): the group volumes mount
only from the cluster's own nodes."""

from __future__ import annotations

import pytest

from lab import ADDRESSES, FRONT, GROUPS, node


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_volume_allows_only_cluster_nodes(group):
    hosts, _ = GROUPS[group]
    out = node(hosts[0]).check_output(f"gluster volume get {group} auth.allow")
    allowed = set(out.splitlines()[-1].split()[1].split(","))
    assert allowed == {ADDRESSES[h] for h in hosts + FRONT}


def _mounts(name: str, group: str) -> bool:
    """Whether ``name`` can mount the group's volume (then unmounted again)."""
    host, path = node(name), f"/mnt/probe-{group}"
    host.check_output(f"mkdir -p {path}")
    try:
        # mount.glusterfs exits 0 even when the server refuses the client: what counts is
        # whether the FUSE mount is there afterwards.
        host.run(f"mount -t glusterfs {ADDRESSES[GROUPS[group][0][0]]}:/{group} {path}")
        return f" {path} fuse.glusterfs " in host.file("/proc/mounts").content_string
    finally:
        host.run(f"umount -l {path}; rmdir {path}")


def test_volume_mounts_from_cluster_node_only():
    # db1 has the FUSE client (the lab image has every package) but is not a client of
    # the volumes: the bricks refuse it ("Authentication failed"); a front node mounts.
    assert not _mounts("db1", "g1")
    assert _mounts(FRONT[0], "g1")


# What may listen on each tier: (process, address, port or a (low, high) range). Docker's
# embedded DNS (127.0.0.11, in the container's namespace but served by dockerd) is not
# the node's. glusterfsd takes a brick port from GlusterFS's range (base-port..max-port).
GLUSTER_BRICK_PORTS = (49152, 60999)
EXPECTED = {
    "front": {
        ("nginx", "0.0.0.0", 80),
        ("nginx", "0.0.0.0", 443),
        ("nginx", "0.0.0.0", 8444),  # the backup store, on the last front node
        ("nginx", "0.0.0.0", 1935),  # RTMP players (a live edge)
        ("nginx", "127.0.0.1", 8019),  # nginx-rtmp's statistics
        ("gunicorn", "127.0.0.1", 8001),
        ("gunicorn", "127.0.0.1", 8002),
        ("gunicorn", "127.0.0.1", 8003),
    },
    "storage": {
        ("nginx", "0.0.0.0", 8080),
        ("nginx", "0.0.0.0", 8443),
        ("nginx", "0.0.0.0", 1935),  # RTMP publishers and the edges' pulls (a live origin)
        ("nginx", "127.0.0.1", 8019),  # nginx-rtmp's statistics, for the agent
        # nginx's lines on live playlists' fetches (UDP): the node's own on loopback, each
        # viewer's from the edges (the agent takes lines from their addresses only)
        ("mediagrid-agent", "0.0.0.0", 8018),
        ("gunicorn", "127.0.0.1", 8010),
        ("glusterd", "0.0.0.0", 24007),
        ("glusterfsd", "0.0.0.0", GLUSTER_BRICK_PORTS),
    },
    "db": {("mariadbd", "{db}", 3306)},
}


def test_live_hls_of_an_origin_is_for_the_edges_only():
    # an origin's HLS (the storage server block's /live-hls/) reaches viewers through an
    # edge, which checks their token: the front nodes fetch it, nobody else
    url = f"http://{ADDRESSES[GROUPS['g1'][0][0]]}:8080/live-hls/demo.none/index.m3u8"
    probe = f"curl -s -o /dev/null -w '%{{http_code}}' {url}"
    assert node("db1").check_output(probe) == "403"
    assert node(FRONT[0]).check_output(probe) == "404"
    # and so are the renditions its agent transcodes
    rendition = probe.replace("/demo.none/", "/demo.none.240p/")
    assert node("db1").check_output(rendition) == "403"
    assert node(FRONT[0]).check_output(rendition) == "404"


def test_an_edge_s_rtmp_statistics_are_for_the_origins_only():
    # the origins' agents count each edge's RTMP players from them; the statistics name
    # the players' addresses, so nobody else reads them (nor, through them, the control)
    url = f"http://{ADDRESSES[FRONT[0]]}/_edge/rtmp-stat"
    probe = f"curl -s -o /dev/null -w '%{{http_code}}' {url}"
    origin = GROUPS["g1"][0][0]
    assert node("db1").check_output(probe) == "403"
    assert node(FRONT[1]).check_output(probe) == "403"
    assert node(origin).check_output(probe) == "200"
    assert "<rtmp>" in node(origin).check_output(f"curl -s {url}")
    assert node(origin).check_output(probe.replace("rtmp-stat", "control/drop/publisher")) == "404"


def _listening(name: str) -> list[tuple[str, str, int]]:
    """(process, address, port) of every listening TCP/UDP socket on a node."""
    found = []
    for line in node(name).check_output("ss -ltnupH").splitlines():
        fields = line.split()
        address, _, port = fields[4].rpartition(":")
        if address.startswith("127.0.0.11"):
            continue
        process = fields[6].split('"')[1] if len(fields) > 6 and '"' in fields[6] else "?"
        found.append((process, address.strip("[]"), int(port)))
    return found


def _allowed(tier: str, name: str, sock: tuple[str, str, int]) -> bool:
    process, address, port = sock
    for want_process, want_address, want_port in EXPECTED[tier]:
        want_address = want_address.format(db=ADDRESSES[name])
        in_range = want_port[0] <= port <= want_port[1] if isinstance(want_port, tuple) else port == want_port
        if process == want_process and address == want_address and in_range:
            return True
    return False


TIERS = {"front": FRONT, "db": ["db1"], "storage": [n for hosts, _ in GROUPS.values() for n in hosts]}


@pytest.mark.parametrize(("tier", "name"), [(t, n) for t, names in TIERS.items() for n in names])
def test_node_listens_only_on_its_tiers_sockets(tier, name):
    # A node runs only what its role assigns: no socket-activated MariaDB on a storage or
    # front node, no nginx or GlusterFS on the database node.
    unexpected = [s for s in _listening(name) if not _allowed(tier, name, s)]
    assert unexpected == []
