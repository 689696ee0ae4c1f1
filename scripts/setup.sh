#!/usr/bin/env bash
# Create the virtual environment (if missing) and install SynthEmbed into it.
#   default:                  .venv, exactly the tested set in requirements/lock.txt (hash-checked)
#   SYNTHEMBED_DEPS=latest:   .venv-latest, the newest releases pyproject.toml admits (how we learn
#                             about the next upstream break before users do; torch stays at the CPU pin)
#   SYNTHEMBED_DEPS=minimum:  .venv-minimum, the lower bounds pyproject.toml publishes
# Usage: bash scripts/setup.sh   (idempotent: re-running only checks a stamp of what is installed)
# Prints the virtual environment's path as its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
PYTHON=${PYTHON:-python3}
mode=${SYNTHEMBED_DEPS:-locked}
case "$mode" in
  locked) venv=.venv ;;
  latest) venv=.venv-latest ;;
  minimum) venv=.venv-minimum ;;
  *) echo "setup.sh: SYNTHEMBED_DEPS must be 'locked', 'latest' or 'minimum', got '$mode'" >&2; exit 2 ;;
esac
if [ ! -x "$venv/bin/python" ]; then
  "$PYTHON" -m venv "$venv"
fi
PIP=("$venv/bin/python" -m pip -q --disable-pip-version-check)
stamp=$venv/.synthembed-installed
want="$(cat pyproject.toml requirements/*.txt scripts/setup.sh scripts/deps.sh | sha256sum | cut -c1-16)"
if [ "$mode" = latest ]; then
  want="$want-$(date +%F)"  # re-resolve the newest releases once a day
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "install_$mode" "${PIP[@]}"
  echo "$want" > "$stamp"
fi
echo "$venv"
