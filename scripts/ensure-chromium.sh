#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver (Debian's chromium and
# chromium-driver packages) when chromedriver is missing, so that the dashboard's
# browser test (crates/dida/tests/dashboard.rs) drives a real browser. Sourced by
# scripts/test.sh. Installs through scripts/apt-install.sh.
source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium and chromium-driver (the dashboard's browser test)" >&2
  dida_apt_install chromium chromium-driver
fi
