"""Encoders: loading backbones, pooling registry, GGUF conversion."""
