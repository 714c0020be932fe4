#!/usr/bin/env bash
# Sourced by the scripts that install what the project needs from Debian's
# packages (scripts/ensure-*.sh, scripts/validate-kubernetes.sh): defines
# dida_apt_install PACKAGE…, which installs them with apt-get as root, or through
# sudo when not root, updating the package lists once if the first try fails;
# anywhere else it says what to run and fails.

dida_apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $* missing and this is not a Debian-like system (no apt-get); install them by hand" >&2
    return 1
  fi
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "error: $* missing; as root, run: apt-get install -y $*" >&2
      return 1
    fi
    sudo=(sudo)
  fi
  echo "== installing $* (Debian packages)" >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "$@" >&2 ||
    { "${sudo[@]}" apt-get update >&2 &&
      DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "$@" >&2; }
}
