#!/usr/bin/env bash
# Refresh requirements/lock.txt: resolve the newest releases that pyproject.toml admits in a throw-away
# virtual environment, then pin every installed distribution (the full closure) with the sha256 of the
# exact file pip installs. Run it, then run the whole suite on the new lock (bash scripts/test.sh) and
# commit the lock only when it passes.
# Usage: bash scripts/lock.sh            (about 2-5 minutes; needs the package index)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
PIP=("$work/venv/bin/python" -m pip -q --disable-pip-version-check)
install_latest "${PIP[@]}"
"$work/venv/bin/python" -m pip freeze --exclude-editable --disable-pip-version-check \
  | grep -v '^#' | sed 's/^torch==\([0-9.]*\)+cpu$/torch==\1/' | sort -f > "$work/pins.txt"
# Every file pip would install for these pins (wheels; an sdist where a package only ships one), hashed.
"${PIP[@]}" download --no-deps -r "$work/pins.txt" -d "$work/files"
"$work/venv/bin/python" scripts/write_lock.py "$work/pins.txt" "$work/files" requirements/lock.txt
echo "wrote requirements/lock.txt ($(grep -c '==' requirements/lock.txt) pins); now run: bash scripts/test.sh"
