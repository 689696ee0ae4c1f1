"""Synthesis: input rows -> LLM requests -> parsed, filtered records in a resumable sharded folder.

- `inputs`: rows from text files, table columns, Hugging Face datasets (stable row ids);
- `records`: layer (a), the resumable sharded `RecordStore` (manifest, drops with raw answers);
- `runner`: layer (b), `run_task` (cache, filters, token budget, progress) for `LLMTask`s;
- `filters`: the cleaning rules of METHODS.md 1.3;
- `syncse`: the SynCSE method (partial and scratch).
"""
