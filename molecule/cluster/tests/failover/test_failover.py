"""After side_effect stopped the cluster VIP holder, the VIP has moved."""

import json
import subprocess
import time

from lab import CLUSTER_VIP, EPHEMERAL, FRONT, GROUPS, has_address, http_get, wait_until

STATE = json.loads((EPHEMERAL / "failover.json").read_text())
OLD = STATE["holder"]
NEW = next(name for name in FRONT if name != OLD)


def test_old_holder_is_stopped():
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", OLD], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "false"


def test_vip_moved_to_the_other_front_node():
    assert wait_until(lambda: has_address(NEW, CLUSTER_VIP), 10)


def test_nginx_answers_on_vip_from_the_other_node():
    answer = wait_until(lambda: http_get(CLUSTER_VIP, 80, "/healthz", timeout=0.5), 10)
    assert answer is not None
    status, served_by, _ = answer
    assert status == 200
    assert served_by == NEW
    print(
        f"VIP {CLUSTER_VIP} answered by {NEW} "
        f"{time.time() - STATE['stopped_at']:.2f} s after docker stop of {OLD} was issued"
    )


G1_OLD = STATE["g1_holder"]
G1_VIP = STATE["g1_vip"]
G1_NEW = next(name for name in GROUPS["g1"][0] if name != G1_OLD)


def test_dead_nginx_moves_group_vip():
    assert wait_until(lambda: has_address(G1_NEW, G1_VIP), 10)
    assert not has_address(G1_OLD, G1_VIP)


def test_group_vip_answers_from_the_other_node():
    answer = wait_until(lambda: http_get(G1_VIP, 8080, "/healthz", timeout=0.5), 10)
    assert answer is not None
    assert answer[0] == 200
    assert answer[1] == G1_NEW
