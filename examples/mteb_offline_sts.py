"""mteb 2.x with SynthEmbed: run ``mteb.evaluate`` on an STS task built from local pairs (no hub access) and
compare with SynthEmbed's own STS evaluator on the same pairs (SentEval protocol: cosine, Spearman x100).

    python examples/mteb_offline_sts.py                         # built-in pairs, packaged MiniLM
    python examples/mteb_offline_sts.py --tsv shared/data/sts/stsb.dev.tsv   # any score/sentence1/sentence2 TSV

Registered mteb tasks (``synthembed evaluate --tasks mteb-sts`` for MTEB(eng, v2)'s STS tasks) need the hub.
"""

from __future__ import annotations

import argparse

import numpy as np

PAIRS = [
    ("A man is playing a guitar.", "A man plays an instrument.", 4.6),
    ("Two dogs run in a field.", "Dogs are running outside.", 4.2),
    ("A woman is cooking dinner.", "A woman is swimming.", 0.8),
    ("Kids play football in the park.", "Children are playing a game.", 3.9),
    ("A red car drives fast.", "A red car is parked.", 2.1),
    ("The old man reads a book.", "An elderly person is reading.", 4.4),
    ("A bird sings on a tree.", "The stock market fell.", 0.1),
    ("People wait for the bus.", "Commuters are waiting.", 4.0),
]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help="anything load_encoder accepts (default: packaged MiniLM)")
    parser.add_argument("--tsv", default=None, help="STS file with columns score, sentence1, sentence2")
    args = parser.parse_args(argv)

    from synthembed.evaluation.encoding import encode_texts
    from synthembed.evaluation.mteb_runner import local_sts_task, run_mteb_task
    from synthembed.evaluation.sts import STSTask, read_sts_file
    from synthembed.models.encoder import load_encoder

    if args.tsv:
        from pathlib import Path

        ours_task = read_sts_file(Path(args.tsv), name="sts", split="test")
    else:
        ours_task = STSTask("sts", "test", [a for a, _, _ in PAIRS], [b for _, b, _ in PAIRS],
                            np.array([s for _, _, s in PAIRS]), "built-in pairs")
    model = load_encoder(args.model)
    ours = ours_task.score(encode_texts(model, ours_task.texts()))["spearman"]
    task = local_sts_task("LocalSTS", ours_task.sentences1, ours_task.sentences2, ours_task.scores,
                          source=ours_task.source)
    theirs = run_mteb_task(model, task)
    print(f"{len(ours_task)} pairs: SynthEmbed STS Spearman {ours:.4f}; mteb.evaluate cosine_spearman "
          f"{theirs['main_score']:.4f} (mteb {theirs['mteb_version']})")
    return {"ours": ours, "mteb": theirs["main_score"]}


if __name__ == "__main__":
    main()
