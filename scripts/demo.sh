#!/usr/bin/env bash
# Set up (if needed) and run the main job on the embedded defaults, offline: configs/demo.yaml
# (synthesize SynCSE triplets and ranked chains with SmolLM2, train + refine all-MiniLM-L6-v2,
# evaluate before/after, write runs/demo/report.html). A second run reuses every finished stage.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/synthembed run configs/demo.yaml "$@"
