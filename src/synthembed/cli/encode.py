"""`synthembed encode`: embed sentences from a file (or stdin) and save them as .npy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("encode", help="embed sentences (one per line) into a .npy matrix")
    parser.add_argument("model", help="model reference accepted by load_encoder (e.g. embedded)")
    parser.add_argument("--input", type=Path, default=None, help="text file, one sentence a line (default: stdin)")
    parser.add_argument("--output", type=Path, required=True, help="where to write the (n, dim) float32 .npy")
    parser.add_argument("--pooling", default=None, help="replace the model's pooling (registry name, options after a colon)")
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from synthembed.io.outputs import claim_output

    with claim_output(args.output, "encode", "file"):  # checked and locked before the model loads
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import io

    import numpy as np

    from synthembed.io.atomic import atomic_write_bytes
    from synthembed.io.tables import read_text_lines
    from synthembed.models.encoder import load_encoder

    if args.input is None:
        sentences = [line.strip() for line in sys.stdin if line.strip()]
    else:
        sentences = [text for _, text in read_text_lines(args.input)]
    model = load_encoder(args.model, pooling=args.pooling, max_length=args.max_length)
    embeddings = model.encode(sentences, batch_size=args.batch_size, convert_to_numpy=True).astype(np.float32)
    buffer = io.BytesIO()
    np.save(buffer, embeddings)
    atomic_write_bytes(args.output, buffer.getvalue())
    print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {args.output}")
    return 0
