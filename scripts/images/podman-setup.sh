#!/usr/bin/env bash
# One-time podman setup for `make test-images` on a machine without a Docker engine or registry
# access: runc (crun fails on this cgroup setup), ulimits that rootful podman lacks here, and a
# Debian bookworm base image made with debootstrap (registry bases cannot be pulled). Idempotent.
set -euo pipefail
scripts/install-system-deps.sh podman runc debootstrap

conf=/etc/containers/containers.conf
if ! grep -qs 'runtime = "runc"' "$conf"; then
  echo "==> writing $conf (runc, ulimits)"
  mkdir -p /etc/containers
  cat >>"$conf" <<'CONF'
# Written by voicebot scripts/images/podman-setup.sh: crun fails on this machine's cgroups, and
# containers need explicit ulimits here.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
CONF
fi

base=${VOICEBOT_IMAGES_DEBIAN_BASE:-localhost/voicebot/debian:bookworm}
if ! podman image exists "$base"; then
  echo "==> building $base with debootstrap (about 25 s)"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
  tar -C "$root" -c . | podman import - "$base" >/dev/null
fi
echo "==> podman ready; Debian base $base"
