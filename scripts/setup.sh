#!/usr/bin/env bash
# Installs a software Vulkan driver for Dawn on Debian 12 machines without a GPU: libvulkan1 and
# Mesa 25 lavapipe from bookworm-backports (bookworm's Mesa 22 is rejected by Dawn). The backports
# source reuses the URI of the machine's own Debian apt source; no registry host is hard-coded.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh must run as root (it uses apt-get): sudo bash scripts/setup.sh" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "setup.sh supports Debian/Ubuntu (apt-get). Install a Vulkan loader and Mesa >= 24 lavapipe by other means." >&2
  exit 1
fi

suite=bookworm-backports
if ! grep -rqs "$suite" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list)
  fi
  if [ -z "$uri" ]; then
    echo "could not find this machine's Debian apt source URI to derive a $suite source from" >&2
    exit 1
  fi
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  {
    echo "Types: deb"
    echo "URIs: $uri"
    echo "Suites: $suite"
    echo "Components: main"
    [ -f "$keyring" ] && echo "Signed-By: $keyring"
  } > /etc/apt/sources.list.d/backports.sources
  echo "added $suite source from $uri"
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q -t "$suite" libvulkan1 mesa-vulkan-drivers
echo "installed: $(dpkg-query -W -f='${Package} ${Version}\n' libvulkan1 mesa-vulkan-drivers | tr '\n' ' ')"
