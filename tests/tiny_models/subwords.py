"""English subword merges for the stand-in tokenizers of full-size checkpoints.

The tiny checkpoints tokenize byte by byte: one token per character. The released tokenizers (Qwen2.5's,
Llama-3's) are subword tokenizers, and the planner sizes prompts and KV caches for two characters a token
(``planning.estimates.prompt_tokens``). A full-size checkpoint with byte tokens made VibeVoice prompts 1.6x
the planned positions on the H200 (543 where 332 were planned), so the fast session grew its caches mid-job
and the memory figures measured an overflow no released checkpoint has. Byte-level BPE merges trained
offline on this repository's own documentation give 2.6 characters a token on the benchmarks' English
prose (benchmarks/vibevoice_memory.py's paragraph: 305 characters, 114-115 tokens as the docs change); the
vocabulary stays a few thousand entries.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

REPO = Path(__file__).resolve().parents[2]
CORPUS = (REPO / "README.md", REPO / "docs" / "measurements.md", REPO / "benchmarks" / "README.md")
MERGES = 4000


@cache
def english_bpe() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """The vocabulary (bytes first, then merged pieces) and merges of a byte-level BPE trained on ``CORPUS``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + MERGES, initial_alphabet=alphabet,
                                  show_progress=False, min_frequency=2)
    lines = [line for path in CORPUS for line in path.read_text(encoding="utf-8").splitlines()]
    tokenizer.train_from_iterator(lines, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = tuple(tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"])
    return dict(model["vocab"]), merges
