"""Training losses (one per file, sentence-transformers style: `compute_loss_from_embeddings`)."""
