"""Keep plain sentences plain: stop sentence-transformers 6 from wrapping them in a chat template.

sentence-transformers 6 gives a backbone whose tokenizer has a chat template (SmolLM2-Instruct and
most instruct LLMs) a ``"message"`` modality and then converts *every* text input to a chat message
("Always convert to the message format if it's supported"). For SmolLM2 that prepends its default
system turn (``<|im_start|>system\\nYou are a helpful AI assistant named SmolLM ...<|im_end|>``, 24
tokens) to each sentence; at max length 32 the sentence keeps only ~6 tokens and mean pooling
averages mostly the shared preamble. That is why the untrained SmolLM2 scored 33.9 on STS-B dev
through a plain sentence-transformers model but 54.3 with raw Hugging Face mean pooling.

`pin_text_modality` removes the ``message`` modality so strings are tokenized as they are (no
template, no added special tokens beyond the tokenizer's own). The change is stored in the module's
saved config, so a saved model keeps encoding plain text.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def pin_text_modality(model: Any) -> bool:
    """Drop the chat-template ``message`` modality of `model`'s Transformer modules; True if one was dropped."""
    changed = False
    for module in model:
        config = getattr(module, "modality_config", None)
        if isinstance(config, dict) and "message" in config and "text" in config:
            del config["message"]
            changed = True
    if changed:
        logger.info("encoding plain text without the backbone's chat template")
    return changed
