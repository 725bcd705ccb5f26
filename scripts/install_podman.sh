#!/usr/bin/env bash
# Podman, runc, mmdebstrap and podman-compose from Debian's packages, set up to run as root on
# machines like the CI's: runc and cgroupfs (crun and systemd cgroups fail on their cgroup
# layout), and no default ulimits (podman's are above the machines' hard limits).
set -euo pipefail
if ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null \
  || ! command -v podman-compose >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq podman runc mmdebstrap podman-compose >/dev/null
fi
conf=/etc/containers/containers.conf
if ! grep -q "default_ulimits" "$conf" 2>/dev/null; then
  printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n' >>"$conf"
fi
