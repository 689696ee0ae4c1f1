"""Collect run.sh's part statuses and RESULT lines into one markdown report (printed; run.sh saves it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

parts_file, results_file = Path(sys.argv[1]), Path(sys.argv[2])
parts = [line.split("\t") for line in parts_file.read_text().splitlines() if line.strip()] if parts_file.exists() else []
results = []
if results_file.exists():
    for line in results_file.read_text().splitlines():
        try:
            results.append(json.loads(line.split("RESULT ", 1)[1]))
        except (IndexError, ValueError):
            pass

print("## parts\n\n| part | exit | seconds | note |\n|---|---|---|---|")
for name, rc, seconds, *note in parts:
    status = {"0": "ok", "124": "TIMED OUT", "137": "KILLED (time)", "skip": "skipped: time budget spent"}.get(rc, f"FAILED ({rc})")
    print(f"| {name} | {status} | {seconds} | {' '.join(note)} |")

rows = [r for r in results if r.get("part") == "throughput"]
if rows:
    print("\n## throughput (steps/s after warm-up; peak device memory)\n")
    print("| model | side | steps/s | triplets/s | x ST trainer | peak GB | notes |\n|---|---|---|---|---|---|---|")
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        ref = next((r["steps_per_s"] for r in mine if r.get("side", "").startswith("sentence-transformers") and "steps_per_s" in r), None)
        for r in mine:
            if "error" in r:
                print(f"| {model} | {r['side']} | - | - | - | - | error: {r['error'][:120]} |")
                continue
            ratio = f"{r['steps_per_s'] / ref:.2f}" if ref else "-"
            notes = ", ".join(f"{k} {r[k]}" for k in ("tokenize_ms", "real_token_share", "workers") if k in r)
            print(f"| {model} | {r['side']} | {r['steps_per_s']:.2f} | {r['triplets_per_s']:.0f} | {ratio} | {r.get('peak_gb')} | "
                  f"batch {r['batch']} x len {r['max_length']} {r['precision']}; {notes} |")

mgh = [r for r in results if r.get("part") == "mgh-shape"]
for r in mgh[-1:]:  # the last row: final, or the latest partial one when the part ran out of time
    print("\n## MGH shape\n")
    print(" | ".join(f"{k}={v}" for k, v in r.items() if k != "part"))
    verdict = "FITS" if r.get("fits") else "DOES NOT FIT"
    print(f"\n{verdict}: {r.get('shape')} LoRA r {r.get('lora_r')}, checkpointing, cached loss (mini-batch "
          f"{r.get('mini_batch')}), {r.get('batch')} triplets x length {r.get('max_length')}: "
          f"{r.get('triplets_per_s')} triplets/s over {r.get('steps_timed')} timed step(s), peak {r.get('peak_gb')} GB"
          + (" (partial: the part ran out of time after this step)" if r.get("partial") else ""))
