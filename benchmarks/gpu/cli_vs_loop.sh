#!/usr/bin/env bash
# Issue 20: does `synthembed train` (the whole CLI: loading, data, dev evaluations, saving) keep the rate of
# the benchmark loop on the same shape? BERT-base shape, 512 triplets a step, max length 32, bf16 (auto).
# Prints the CLI's train_steps_per_second without and with dev evaluation; compare with throughput.py's
# "synthembed fit + InfoNCE" and "model fwd+bwd" rows of run.sh's table (same shape, same data).
#   device: bash benchmarks/gpu/cli_vs_loop.sh   (carry [".gpu"], after bash benchmarks/gpu/prepare.sh here)
set -u
PY=${PY:-python3}; G=.gpu; D=$G/data; STEPS=${STEPS:-60}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SITE=/tmp/gpu-site; mkdir -p "$SITE"
for w in "$G"/whl/*.whl; do
  mod=$(basename "$w" | cut -d- -f1 | tr 'A-Z' 'a-z')
  $PY -c "import $mod" 2>/dev/null || $PY -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$w"
done
export PYTHONPATH=$SITE:$PWD/src
M=/tmp/cli-models; $PY benchmarks/gpu/make_models.py $G/tok $M --scale full > /dev/null 2>&1 || exit 1
NLI=(--data "$D/nli/snli_devtest_triplets.tsv" --anchor-column premise --positive-column entailment --negative-column contradiction)
for mode in no-dev dev; do
  extra=(--no-dev); [ $mode = dev ] && extra=(--data-dir "$D" --eval-steps $((STEPS / 4)))
  t0=$(date +%s.%N)
  $PY -m synthembed train "${NLI[@]}" --model $M/bert-base --max-steps $STEPS --batch-size 512 --max-length 32 \
    "${extra[@]}" --output /tmp/cli-run-$mode --no-resume > /tmp/cli-$mode.log 2>&1
  rc=$?; t1=$(date +%s.%N)
  rate=$(grep -o "'train_steps_per_second': '[0-9.]*'" /tmp/cli-$mode.log | tail -1 | grep -o "[0-9.]*'$" | tr -d "'")
  echo "RESULT cli $mode: rc=$rc steps=$STEPS train_steps_per_second=$rate whole_command_s=$(awk "BEGIN{printf \"%.1f\", $t1-$t0}")"
  [ $rc = 0 ] || tail -n 5 /tmp/cli-$mode.log
done
