#!/bin/sh
# Print the Debian package mirror to use for the lab images.
# LAB_APT_MIRROR overrides; otherwise the first Debian URI found in the
# host's apt configuration (deb822 .sources files, then sources.list).
set -eu
if [ -n "${LAB_APT_MIRROR:-}" ]; then
  echo "$LAB_APT_MIRROR"
  exit 0
fi
uri=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -r "$f" ] || continue
  uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")
  [ -n "$uri" ] && break
done
if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
  uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { print $i; exit } }' /etc/apt/sources.list)
fi
if [ -z "$uri" ]; then
  echo "apt-mirror: no Debian mirror found in /etc/apt; set LAB_APT_MIRROR" >&2
  exit 1
fi
echo "$uri"
