#!/usr/bin/env bash
# One device call (issue 20): CUDA smoke test of the CLI (train, evaluate, refine, ATA, LoRA), the throughput
# table at SynCSE's shape (ours vs sentence-transformers' trainer vs the model's own step rate; peak memory)
# and the MGH shape (Mistral-7B-shaped decoder, LoRA r 16, checkpointing, cached loss, 512 x 128).
#
#   here:        bash benchmarks/gpu/prepare.sh
#   device:      bash benchmarks/gpu/run.sh      (carry [".gpu"]; writes $OUT/{table.md,results.jsonl,*.log})
#   rehearsal:   SCALE=tiny PY=.venv/bin/python OUT=/tmp/gpu-rehearsal bash benchmarks/gpu/run.sh   (CPU, tiny shapes)
#
# Every part runs under its own time limit inside one overall budget (BUDGET seconds, default 345), so the
# whole call stays near 6 minutes and the table is printed even when a part fails or runs out of time.
# TIME_SCALE multiplies every limit and the budget (default 1; 8 for SCALE=tiny: a CPU is slower).
# ONLY (an extended regex, default: every part) picks parts by name, e.g. ONLY='smoke' for a second call
# when the first one spent its budget before the smoke parts.
set -u
SCALE=${SCALE:-full}
PY=${PY:-python3}
O=${OUT:-/tmp/gpu-out}
if [ "$SCALE" = tiny ]; then TIME_SCALE=${TIME_SCALE:-8}; else TIME_SCALE=${TIME_SCALE:-1}; fi
BUDGET=$(( ${BUDGET:-345} * TIME_SCALE ))
G=.gpu; K=benchmarks/gpu; D=$G/data
mkdir -p "$O"; : > "$O/parts.tsv"; : > "$O/results.jsonl"
START=$(date +%s)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
[ -d "$G/data" ] || { echo "run.sh: no .gpu/ (run benchmarks/gpu/prepare.sh here first; carry [\".gpu\"])" >&2; exit 2; }

# wheels only for what this Python cannot import (the device image lacks datasets and friends)
SITE=/tmp/gpu-site; mkdir -p "$SITE"
for w in "$G"/whl/*.whl; do
  [ -e "$w" ] || continue
  mod=$(basename "$w" | cut -d- -f1 | tr 'A-Z' 'a-z')
  $PY -c "import $mod" 2>/dev/null || $PY -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$w"
done
export PYTHONPATH=$SITE:$PWD/src

if [ "$SCALE" = full ]; then
  TB=512; TL=32; TSTEPS=12; TWARM=3; MB=512; ML=128; MSTEPS=2; MMINI=128; SB=256; SL=128; SSTEPS=6
else
  TB=16; TL=16; TSTEPS=3; TWARM=1; MB=16; ML=32; MSTEPS=3; MMINI=4; SB=16; SL=16; SSTEPS=3
fi
M=/tmp/gpu-models; R=/tmp/gpu-runs; rm -rf "$R"; mkdir -p "$R"

part() {  # part NAME LIMIT_S COMMAND...: run under min(LIMIT, what the budget has left); record exit and time
  local name=$1 limit=$(( $2 * TIME_SCALE )); shift 2
  if [ "$name" != models ] && ! [[ "$name" =~ ${ONLY:-.} ]]; then return; fi
  local left=$(( BUDGET - ($(date +%s) - START) ))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 10 ]; then printf '%s\tskip\t0\n' "$name" >> "$O/parts.tsv"; echo "=== $name: skipped (budget)"; return; fi
  echo "=== $name (limit ${limit}s)"
  local t0=$(date +%s.%N)
  timeout --kill-after=5 "$limit" "$@" > "$O/$name.log" 2>&1
  local rc=$?
  local secs=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}")
  local note=$(grep -E "Error|error:" "$O/$name.log" | grep -v "^RESULT" | tail -n 1 | cut -c1-150)
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$secs" "$([ "$rc" = 0 ] || echo "$note")" >> "$O/parts.tsv"
  grep -h "^RESULT" "$O/$name.log" >> "$O/results.jsonl"
  tail -n 3 "$O/$name.log" | cut -c1-200; echo "--- rc=$rc ${secs}s"
}

SE="$PY -m synthembed"
NLI=(--data "$D/nli/snli_devtest_triplets.tsv" --anchor-column premise --positive-column entailment --negative-column contradiction)
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, transformers, sentence_transformers as st; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'sentence-transformers', st.__version__)"
  $PY -c "import peft; print('peft', peft.__version__)" || echo "peft missing"; } | tee "$O/env.txt"

part models 60 $PY $K/make_models.py $G/tok $M --scale "$SCALE"
part throughput-bert-base 75 $PY $K/throughput.py $M/bert-base "$D/nli/snli_devtest_triplets.tsv" --batch-size $TB --max-length $TL --steps $TSTEPS --warmup $TWARM
part throughput-minilm 55 $PY $K/throughput.py $M/minilm "$D/nli/snli_devtest_triplets.tsv" --batch-size $TB --max-length $TL --steps $TSTEPS --warmup $TWARM
part mgh-shape 140 $PY $K/mgh_shape.py $M/llama "$D/nli/snli_devtest_triplets.tsv" --scale "$SCALE" --batch-size $MB --max-length $ML --steps $MSTEPS --mini-batch-size $MMINI
part smoke-lora 40 $SE train "${NLI[@]}" --model $M/llama --pooling mean --limit 1024 --max-steps $SSTEPS --batch-size $SB --max-length $SL --lora-r 8 --gradient-checkpointing --mini-batch-size 32 --eval-steps 3 --data-dir $D --output $R/lora --no-resume
part smoke-lora-evaluate 25 $SE evaluate $R/lora --tasks stsb --split dev --data-dir $D --no-progress
part smoke-train 40 $SE train "${NLI[@]}" --model $M/minilm --limit 2048 --max-steps $SSTEPS --batch-size $SB --max-length 32 --eval-steps 3 --data-dir $D --output $R/minilm --no-resume
part smoke-evaluate 25 $SE evaluate $R/minilm --tasks stsb,sickr --split dev --data-dir $D --no-progress
part smoke-ata-lora 35 $SE train "${NLI[@]}" --model $M/llama --pooling ata --lora-r 4 --limit 1024 --max-steps $SSTEPS --batch-size $SB --max-length $SL --no-dev --output $R/ata --no-resume
part smoke-refine 35 $SE refine --data $D/chains.jsonl --model $R/minilm --output $R/refined --limit 64 --batch-size 8 --eval-steps 4 --data-dir $D

$PY $K/table.py "$O/parts.tsv" "$O/results.jsonl" | tee "$O/table.md"
echo "total $(( $(date +%s) - START )) s (budget ${BUDGET} s)"
