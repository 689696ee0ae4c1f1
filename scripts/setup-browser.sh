#!/usr/bin/env bash
# Install Debian's Chromium (and its WebDriver) for the report's browser test (tests/test_browser_report.py).
# Idempotent: does nothing when /usr/bin/chromium is already there. Needs root (apt-get); the Python
# driver (playwright, from the `dev` extra) is installed by scripts/setup.sh and never downloads a browser.
# Usage: bash scripts/setup-browser.sh
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "setup-browser: /usr/bin/chromium is missing and installing it needs root:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y chromium chromium-driver" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-browser: /usr/bin/chromium is missing and this machine has no apt-get; install Chromium so that" >&2
  echo "  /usr/bin/chromium exists (or set SYNTHEMBED_CHROMIUM to its path) before running the tests" >&2
  exit 1
fi
echo "setup-browser: installing chromium and chromium-driver with apt-get (about a minute)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
/usr/bin/chromium --version
