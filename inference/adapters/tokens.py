"""User text is plain text: no string in it may reach a model as one of its control tokens.

Every family renders the user's text into a chat template whose markers (``<|endoftext|>``,
``<|im_start|>``, ``<|audio_bos|>``, CSM's ``<|AUDIO|>``) are the tokenizer's added tokens, matched
wherever their string appears. Text from a web page or a book that spells one would end a turn, open a
new one or break the count of audio placeholders: it would steer the model. The rule, for every family:
each string that spells one of the model's added or special tokens is replaced by a space before the text
enters the template. The tokenizer then checks the result, so a token it would still find (one matched
only after its normalizer rewrote the text) is refused in one line rather than passed on.
"""

from __future__ import annotations

import re
from typing import Any

from inference.errors import BadInputError


def control_token_ids(tokenizer: Any) -> set[int]:
    """Ids of every added and special token: the ids user text must never produce."""
    return set(tokenizer.get_added_vocab().values()) | set(tokenizer.all_special_ids)


def plain_text(text: str, tokenizer: Any) -> str:
    """``text`` with every control-token string replaced by a space; text without one is returned as is.

    A space rather than nothing, so ``<|endo<|endoftext|>ftext|>`` does not spell the token again once the
    inner one is gone; repeated until none is left, since a token string could hold a space. Works with
    every tokenizer class: it needs only the token strings and ``encode``.
    """
    markers = sorted(set(tokenizer.get_added_vocab()) | set(tokenizer.all_special_tokens), key=len, reverse=True)
    changed = False
    while found := [marker for marker in markers if marker in text]:
        for marker in found:
            text = text.replace(marker, " ")
        changed = True
    if changed:
        text = re.sub(" {2,}", " ", text).strip()  # the spaces put in, and any they doubled, as one
    _check(text, tokenizer)
    return text


def _check(text: str, tokenizer: Any) -> None:
    """Refuse text the tokenizer still reads a control token in (after normalizing it)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    hit = next((i for i in ids if i in control_token_ids(tokenizer)), None)
    if hit is not None:
        raise BadInputError(f"The text holds characters the model reads as its control token "
                            f"{tokenizer.convert_ids_to_tokens(hit)}; rewrite that part in plain letters.")
