"""User text is plain text: no string in it may reach a model as one of its control tokens.

Every family renders the user's text into a chat template whose markers (``<|endoftext|>``,
``<|im_start|>``, ``<|audio_bos|>``, CSM's ``<|AUDIO|>``) are the tokenizer's added tokens, matched
wherever their string appears. Text from a web page or a book that spells one would end a turn, open a
new one or break the count of audio placeholders: it would steer the model. The rule, for every family:
whatever the model's own tokenizer would read as one of its added or special tokens is replaced by a
space before the text enters the template, until nothing of the kind is left. Asking the tokenizer
(rather than searching for the token strings) also covers tokens matched after its normalizer runs.
"""

from __future__ import annotations

import re
from typing import Any


def control_token_ids(tokenizer: Any) -> set[int]:
    """Ids of every added and special token: the ids user text must never produce."""
    return set(tokenizer.get_added_vocab().values()) | set(tokenizer.all_special_ids)


def plain_text(text: str, tokenizer: Any) -> str:
    """``text`` with every span the tokenizer reads as a control token replaced by a space.

    A space rather than nothing, so ``<|endo<|endoftext|>ftext|>`` does not spell the token again once the
    inner one is gone; repeated until the tokenizer finds none, for tokens that hold a space or are matched
    after normalization. Text that needed no change is returned as is; otherwise runs of spaces collapse.
    """
    controls = control_token_ids(tokenizer)
    changed = False
    while True:
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        spans = [span for token, span in zip(encoding["input_ids"], encoding["offset_mapping"], strict=True)
                 if token in controls and span[1] > span[0]]
        if not spans:
            return re.sub(" {2,}", " ", text).strip() if changed else text
        for start, end in reversed(spans):
            text = f"{text[:start]} {text[end:]}"
        changed = True
