def test_glusterd_runs(host):
    assert host.service("glusterd").is_running
    assert host.service("glusterd").is_enabled


def test_volume_started_with_ping_timeout(host):
    assert "Status: Started" in host.check_output("gluster volume info t1")
    out = host.check_output("gluster volume get t1 network.ping-timeout")
    assert out.splitlines()[-1].split()[1] == "2"


def test_mounted_with_netdev(host):
    mount = host.mount_point("/srv/t1")
    assert mount.exists
    assert mount.filesystem == "fuse.glusterfs"
    assert "_netdev" in host.file("/etc/fstab").content_string


def test_write_through_mount_lands_in_brick(host):
    host.check_output("echo molecule > /srv/t1/probe.txt")
    assert host.file("/bricks/t1/brick/probe.txt").content_string == "molecule\n"
