"""MTEB loads a saved SynthEmbed model like any other sentence-transformers model and scores it offline.

mteb's loader for sentence-transformers models is ``SentenceTransformerEncoderWrapper(model=<name or
path>)`` (what ``mteb.get_model`` returns for a hub model whose card says sentence-transformers);
``mteb.get_model`` itself asks the hub for the metadata first, which cannot work offline or for a
local path, so the test calls the wrapper with the folder. ``mteb.evaluate`` then runs an STS task
built from local data (STS-B dev pairs from ../shared/data); the score equals a direct computation."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

N_PAIRS = 64


def _local_stsb_task(data_dir: Path):
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.abstasks.task_metadata import TaskMetadata

    with (data_dir / "sts" / "stsb.dev.tsv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[:N_PAIRS]

    class LocalSTSBDev(AbsTaskSTS):
        metadata = TaskMetadata(
            name="LocalSTSBDev",
            description="The first STS Benchmark dev pairs, read from the local shared data folder.",
            reference="https://ixa2.si.ehu.eus/stswiki/index.php/STSbenchmark",
            dataset={"path": "local/stsb-dev", "revision": "local"},
            type="STS",
            category="t2t",
            modalities=["text"],
            eval_splits=["test"],
            eval_langs=["eng-Latn"],
            main_score="cosine_spearman",
            date=("2017-01-01", "2017-12-31"),
            domains=["News", "Written"],
            task_subtypes=[],
            license="cc-by-sa-4.0",
            annotations_creators="human-annotated",
            dialect=[],
            sample_creation="found",
            bibtex_citation="",
        )
        min_score = 0
        max_score = 5

        def load_data(self, **kwargs) -> None:
            self.dataset = DatasetDict({"test": Dataset.from_dict({
                "sentence1": [r["sentence1"] for r in rows],
                "sentence2": [r["sentence2"] for r in rows],
                "score": [float(r["score"]) for r in rows],
            })})
            self.data_loaded = True

    return LocalSTSBDev(), rows


# runs in the default suite (about 30 s, most of it importing mteb)
def test_mteb_loads_and_scores_a_saved_model(tiny_bert_dir: Path, shared_data_dir: Path, tmp_path: Path) -> None:
    mteb = pytest.importorskip("mteb", minversion="2.0")  # the 2.x API: evaluate(), SentenceTransformerEncoderWrapper
    from scipy.stats import spearmanr

    from synthembed.models.encoder import load_encoder
    from synthembed.models.export import save_portable

    folder = tmp_path / "model"
    ours = load_encoder(tiny_bert_dir, pooling="mean").eval()
    save_portable(ours, folder)

    task, rows = _local_stsb_task(shared_data_dir)
    from mteb.models import SentenceTransformerEncoderWrapper

    model = SentenceTransformerEncoderWrapper(model=str(folder))  # mteb loads the folder itself
    result = mteb.evaluate(model, task, cache=None, show_progress_bar=False)
    score = result.task_results[0].get_score()

    a = ours.encode([r["sentence1"] for r in rows], normalize_embeddings=True)
    b = ours.encode([r["sentence2"] for r in rows], normalize_embeddings=True)
    expected = spearmanr((a * b).sum(axis=1), [float(r["score"]) for r in rows]).statistic
    assert np.isclose(score, expected, atol=1e-4), (score, expected)
