#!/usr/bin/env bash
# Installs the Debian packages the tests, `make dev` and `make bench` run for real on this
# machine: MariaDB, nginx with nginx-rtmp, wrk, curl, ffmpeg, Chromium, npm. Skips what is
# present.
set -euo pipefail
need=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need+=(libnginx-mod-rtmp)  # live origins and edges
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)        # test media, ffprobe (e2e)
command -v chromium >/dev/null 2>&1 || need+=(chromium)    # headless playback (e2e)
command -v npm >/dev/null 2>&1 || need+=(npm)              # hls.js for the player page (make player)
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
