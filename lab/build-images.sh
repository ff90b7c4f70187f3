#!/bin/sh
# Build the lab images locally (no registry): a debootstrap base image, then
# the node image FROM it. The base is built only when missing; the node image
# is rebuilt with Docker's layer cache (seconds when nothing changed).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
base=${LAB_BASE_IMAGE:-mediagrid/debian-base:bookworm}
node=${LAB_NODE_IMAGE:-mediagrid/node:bookworm}
suite=${LAB_SUITE:-bookworm}

if ! docker image inspect "$base" >/dev/null 2>&1; then
  mirror=$("$here/apt-mirror.sh")
  rootfs=$(mktemp -d /tmp/mediagrid-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  echo "build-images: debootstrap $suite from $mirror"
  debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >/tmp/mediagrid-debootstrap.log 2>&1 \
    || { tail -20 /tmp/mediagrid-debootstrap.log >&2; exit 1; }
  rm -rf "$rootfs/var/cache/apt/archives/"*.deb
  tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
  echo "build-images: imported $base"
fi

docker build -q --build-arg "LAB_BASE_IMAGE=$base" -t "$node" "$here/node" >/dev/null
echo "build-images: $node ready"
