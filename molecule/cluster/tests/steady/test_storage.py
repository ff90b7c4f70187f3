"""Storage nodes: glusterd, nginx, keepalived and their group's mount."""

import pytest

from lab import ADDRESSES, FRONT, MEDIA_ROOT

testinfra_hosts = ["ansible://storage"]


@pytest.mark.parametrize(
    "service",
    [
        "glusterd",
        "nginx",
        "mediagrid-rtmp",
        "keepalived",
        "mediagrid-storage",
        "mediagrid-agent",
        "mediagrid-worker",
    ],
)
def test_service_runs(host, service):
    assert host.service(service).is_running
    assert host.service(service).is_enabled


def test_nginx_listens(host):
    assert host.socket("tcp://0.0.0.0:8080").is_listening


def test_mounts_its_group(host):
    # The inventory group storage_<name> declares the node's group <name>.
    (inv_group,) = [g for g in host.ansible.get_variables()["group_names"] if g.startswith("storage_")]
    group = inv_group.removeprefix("storage_")
    mount = host.mount_point(f"{MEDIA_ROOT}/{group}")
    assert mount.exists
    assert mount.filesystem == "fuse.glusterfs"
    assert "_netdev" in host.file("/etc/fstab").content_string


def test_agent_runs_unprivileged_with_only_its_heal_query(host):
    # The agent removes files whose paths come from the database: it runs as the service
    # user, and sudo lets it run its heal query as root and nothing else.
    assert host.check_output("systemctl show -p User --value mediagrid-agent") == "mediagrid"
    pid = host.check_output("systemctl show -p MainPID --value mediagrid-agent")
    assert host.check_output(f"ps -o user= -p {pid}").strip() == "mediagrid"
    volume = next(g for g in host.ansible.get_variables()["group_names"] if g.startswith("storage_"))
    volume = volume.removeprefix("storage_")
    as_agent = "runuser -u mediagrid -- sudo -n "
    heal = host.run(as_agent + f"/usr/sbin/gluster --mode=script volume heal {volume} info summary")
    assert heal.rc == 0 and "Number of entries in heal pending" in heal.stdout
    assert host.run(as_agent + "/usr/bin/id").rc != 0
    assert host.run(as_agent + f"/usr/sbin/gluster --mode=script volume info {volume}").rc != 0


def test_worker_runs_niced_with_its_engines_and_no_keys(host):
    # The media worker runs ffmpeg on uploads: the service user, below the shim's CPU
    # priority, and it holds a database login only (no node key, no cluster secret).
    assert host.check_output("systemctl show -p User --value mediagrid-worker") == "mediagrid"
    assert host.check_output("systemctl show -p Nice --value mediagrid-worker") == "10"
    assert host.exists("ffmpeg") and host.exists("ffprobe")
    conf = host.file("/etc/mediagrid/worker.toml")
    assert conf.mode == 0o640 and conf.group == "mediagrid"
    text = host.check_output("cat /etc/mediagrid/worker.toml")
    assert "WORKER_BUDGET" in text
    assert "NODE_KEY" not in text and "CLUSTER_SECRET" not in text and "LINK_KEY" not in text


def test_recordings_are_nginx_s_and_the_services_group_s(host):
    # nginx-rtmp's workers write the parts; the shim and the agent (group mediagrid, setgid
    # directory) move, read and delete them; nobody else enters
    rec = host.file("/var/lib/mediagrid-live/rec")
    assert rec.is_directory
    assert (rec.user, rec.group, rec.mode) == ("www-data", "mediagrid", 0o2770)
    config = host.file("/etc/mediagrid/agent.toml").content_string
    assert 'LIVE_RECORD_DIR = "/var/lib/mediagrid-live/rec"' in config
    assert "record all;" in host.file("/etc/nginx/mediagrid-rtmp.conf").content_string


def test_live_renditions_are_the_agent_s_and_served_to_the_edges_only(host):
    # the agent's ffmpeg writes the renditions it transcodes on demand; nginx's workers
    # read them through the group; the agent hears of playlist fetches over UDP: its nginx's
    # on loopback, each viewer's from the edges, whose addresses alone it takes lines from
    out = host.file("/var/lib/mediagrid-live/renditions")
    assert (out.user, out.group, out.mode) == ("mediagrid", "www-data", 0o2750)
    config = host.file("/etc/mediagrid/agent.toml").content_string
    assert 'LIVE_RENDITIONS_DIR = "/var/lib/mediagrid-live/renditions"' in config
    assert "LIVE_VIEWS_PORT = 8018" in config and "WORKER_BUDGET" in config
    assert host.socket("udp://0.0.0.0:8018").is_listening
    edges = ", ".join(f'"{ADDRESSES[name]}"' for name in FRONT)
    assert f"LIVE_VIEWS_FROM = [{edges}]" in config
    site = host.file("/etc/nginx/sites-enabled/mediagrid-storage.conf").content_string
    assert "syslog:server=127.0.0.1:8018,tag=mgviews" in site
    # a rendition that does not run is not found; nothing outside the folder is reachable
    missing = host.run(
        "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/live-hls/demo.none.240p/index.m3u8"
    )
    assert missing.stdout == "404"


def test_the_record_hook_answers_nginx_rtmp_only(host):
    # the shim's hook refuses what it is not nginx-rtmp's to send: a path outside the
    # recordings is ignored, and the storage server block does not proxy /rtmp/ at all
    with host.sudo():
        ignored = host.run("curl -s -d path=/etc/passwd -d k=x http://127.0.0.1:8010/rtmp/record_done").stdout
    assert '"ignored"' in ignored
    outside = host.run(
        "curl -s -o /dev/null -w '%{http_code}' -d path=x http://127.0.0.1:8080/rtmp/record_done"
    )
    assert outside.stdout in ("403", "404")
