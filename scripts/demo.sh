#!/usr/bin/env bash
# Set up (if needed) and run the main job on the embedded defaults, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
DATA_DIR=${SYNTHEMBED_DATA:-../shared/data}
exec .venv/bin/synthembed evaluate embedded --tasks sts7 --data-dir "$DATA_DIR" --output runs/demo/results.json "$@"
