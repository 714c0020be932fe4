#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver (Debian's chromium and
# chromium-driver packages) when chromedriver is missing, so that the dashboard's
# browser test (crates/dida/tests/dashboard.rs) drives a real browser. Sourced by
# scripts/test.sh. Installs with apt-get as root, or through sudo when not root;
# anywhere else it says what to run and fails.
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium and chromium-driver (the dashboard's browser test)" >&2
  packages=(chromium chromium-driver)
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: chromedriver is missing and this is not a Debian-like system (no apt-get); install Chromium and its chromedriver by hand" >&2
    false
  elif [[ $(id -u) -eq 0 ]]; then
    apt-get install -y "${packages[@]}" || { apt-get update && apt-get install -y "${packages[@]}"; }
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get install -y "${packages[@]}" || { sudo apt-get update && sudo apt-get install -y "${packages[@]}"; }
  else
    echo "error: chromedriver is missing; as root, run: apt-get install -y ${packages[*]}" >&2
    false
  fi
fi
