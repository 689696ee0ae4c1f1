"""`synthembed export`: rewrite a model folder into the portable sentence-transformers form."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="rewrite a model (e.g. one saved by an older SynthEmbed) so plain sentence-transformers loads it",
        description=(
            "Load MODEL (any reference load_encoder accepts) and write OUT: sentence-transformers' own modules "
            "wherever they exist (Pooling, Dense), ATA as a custom module whose code is in the folder "
            "(load with trust_remote_code=True), train-only heads left out, and a hub-ready model card."
        ),
    )
    parser.add_argument("model", help="model folder or reference (load_encoder)")
    parser.add_argument("output", type=Path, help="folder to write (must not exist unless --overwrite)")
    parser.add_argument("--license", default=None, help="licence id for the card's metadata, e.g. apache-2.0")
    parser.add_argument("--model-id", default=None, help="hub id to show in the card's usage snippet (user/name)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from synthembed.models.export import export_model

    out = export_model(args.model, args.output, license=args.license, model_id=args.model_id, overwrite=args.overwrite)
    types = [entry["type"] for entry in json.loads((out / "modules.json").read_text(encoding="utf-8"))]
    custom = [t for t in types if not t.startswith("sentence_transformers.")]
    print(f"wrote {out}: modules {', '.join(types)}")
    if custom:
        print(f"load with SentenceTransformer({str(out)!r}, trust_remote_code=True) (custom code: {', '.join(custom)})")
    else:
        print(f"load with SentenceTransformer({str(out)!r})")
    return 0
