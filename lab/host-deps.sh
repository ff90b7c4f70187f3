#!/bin/sh
# Make this Debian host ready for the lab: Docker engine (Debian's package),
# debootstrap, npm (the player's hls.js), and a running dockerd. Idempotent; safe to call every time.
# The host has no systemd as PID 1, so dockerd is started directly.
set -eu
need=""
command -v dockerd >/dev/null 2>&1 || need="$need docker.io"
command -v debootstrap >/dev/null 2>&1 || need="$need debootstrap"
command -v python3 >/dev/null 2>&1 || need="$need python3"
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need="$need python3-venv"
command -v npm >/dev/null 2>&1 || need="$need npm"            # hls.js for the player (make player)
if [ -n "$need" ]; then
  echo "host-deps: installing$need"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi
# A pid file left by a daemon that died with its session would block a new one.
if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
  rm -f /var/run/docker.pid
fi
echo "host-deps: starting dockerd (log: /var/log/dockerd.log)"
# Only stdio is passed on: a daemon must not inherit a caller's other descriptors (the lab
# lock that `flock /tmp/mediagrid-lab.lock make lab` holds would stay held by dockerd).
# dash cannot close descriptors above 9, so python3 starts it (close_fds, its own session).
python3 - <<'PY'
import subprocess

with open("/var/log/dockerd.log", "ab") as log:
    subprocess.Popen(["dockerd"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                     close_fds=True, start_new_session=True)
PY
i=0
until docker info >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -gt 60 ]; then
    echo "host-deps: dockerd did not answer within 30 s" >&2
    tail -20 /var/log/dockerd.log >&2
    exit 1
  fi
  sleep 0.5
done
echo "host-deps: dockerd is up"
