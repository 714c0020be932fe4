#!/usr/bin/env bash
# Sourced by scripts/build-image.sh and scripts/test-containers.sh: installs what
# the container image needs from Debian's packages when it is missing (podman, and
# runc as its runtime) and points podman at a containers.conf that works where the
# default one does not.
#
# Why a containers.conf of our own: on the development machines podman's default
# runtime, crun, fails ("cgroups in hybrid mode not supported", then
# "setrlimit …"), while Debian's runc works once podman stops setting
# its default ulimits (`default_ulimits = []`). The file is written under target/
# and exported as CONTAINERS_CONF; a CONTAINERS_CONF already set is kept as is, so
# a machine with its own working configuration keeps it.
#
source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"

dida_missing=()
command -v podman >/dev/null 2>&1 || dida_missing+=(podman)
command -v runc >/dev/null 2>&1 || dida_missing+=(runc)
if [[ ${#dida_missing[@]} -gt 0 ]]; then
  dida_apt_install "${dida_missing[@]}"
fi
unset dida_missing

if [[ -z ${CONTAINERS_CONF:-} ]]; then
  dida_podman_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/podman"
  mkdir -p "$dida_podman_dir"
  # runc: crun fails on hybrid cgroups here. default_ulimits = []: runc then sets
  # no rlimits (setting podman's default ones is refused here). cgroupfs and file events:
  # no systemd or journald needed. k8s-file: `podman logs` without journald.
  cat >"$dida_podman_dir/containers.conf" <<'EOF'
# Written by scripts/ensure-podman.sh (dida); see docs/containers.md.
[containers]
default_ulimits = []
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  export CONTAINERS_CONF="$dida_podman_dir/containers.conf"
  unset dida_podman_dir
fi
