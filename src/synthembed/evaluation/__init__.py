"""Evaluation suite: STS (SentEval protocol), BEIR-style retrieval, reranking, optional MTEB.

Layout (mteb's split of concerns): a *task* holds data and knows its main score (`sts`, `retrieval`,
`reranking`); `encoding` embeds the de-duplicated texts of all tasks once; `metrics` holds the pure
numpy math; `suite.evaluate_model` ties them together into the results.json shape; `dev` is the
sentence-transformers evaluator used for model selection during training (dev sets only).
"""

from synthembed.evaluation.base import TaskUnavailable

__all__ = ["TaskUnavailable"]
