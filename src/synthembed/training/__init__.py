"""Training wiring on sentence-transformers' trainer: data loading, `fit`, callbacks."""
