"""`synthembed train` runs unchanged under `torchrun` (2 CPU processes, gloo): one model folder, world size 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

ROWS = [("A man is playing a guitar.", "Someone plays an instrument.", "A woman is sleeping."),
        ("Two dogs run on the beach.", "Dogs are running by the sea.", "The dogs are asleep indoors."),
        ("A child eats an apple.", "A kid is eating fruit.", "A child throws an apple away."),
        ("The train is late again.", "The train has not arrived on time.", "The train came early.")] * 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_train_under_torchrun(tmp_path: Path, tiny_bert_dir: Path) -> None:
    data = tmp_path / "triplets.tsv"
    data.write_text("anchor\tpositive\tnegative\n" + "".join("\t".join(r) + "\n" for r in ROWS), encoding="utf-8")
    output = tmp_path / "model"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), "-m", "synthembed", "train", "--data", str(data), "--model", str(tiny_bert_dir),
               "--pooling", "mean", "--batch-size", "4", "--max-steps", "2", "--no-dev", "--output", str(output)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    record = yaml.safe_load((output / "train_config.yaml").read_text(encoding="utf-8"))
    assert record["fit"]["world_size"] == 2 and record["result"]["steps_done"] == 2
    assert (output / "modules.json").is_file() and not list(tmp_path.glob(".model.saving"))

    from synthembed.models.encoder import load_encoder

    assert load_encoder(str(output)).encode(["a test"]).shape[0] == 1
