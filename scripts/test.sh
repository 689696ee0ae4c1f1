#!/usr/bin/env bash
# Set up (if needed) and run the default test suite (slow tests excluded; run those with -m slow).
#   bash scripts/test.sh [PYTEST ARGS]            the locked, tested set (what CI runs)
#   bash scripts/test.sh --latest [PYTEST ARGS]   the newest releases, in .venv-latest
#   bash scripts/test.sh --minimum [PYTEST ARGS]  pyproject.toml's lower bounds, in .venv-minimum
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  --latest) export SYNTHEMBED_DEPS=latest; shift ;;
  --minimum) export SYNTHEMBED_DEPS=minimum; shift ;;
esac
venv=$(bash scripts/setup.sh | tail -n 1)
bash scripts/setup-browser.sh  # Debian's chromium for the report's browser test (a no-op once installed)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$venv/bin/python" -m synthembed.env
exec "$venv/bin/python" -m pytest "$@"
