"""Encoded reference recordings, kept in a small LRU cache so a voice is encoded once per model.

Encoding a reference runs the model's codec over seconds of audio; a narration uses one voice for
thousands of chunks and a GUI session a handful of voices. Entries are keyed by the audio's content
(not its file name), the transcript, the model and its dtype, so a renamed or copied file hits.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch

from inference.adapters.base import VoicePrompt


def voice_key(audio: np.ndarray, rate: int, transcript: str | None, model: str, dtype: str) -> str:
    """sha256 of everything an encoded prompt depends on."""
    digest = hashlib.sha256(np.ascontiguousarray(audio, dtype=np.float32).tobytes())
    for part in (str(rate), transcript or "", model, dtype):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


class VoiceCache:
    """Least-recently-used voice prompts; ``capacity`` entries at most, evicted ones are dropped.

    Dropping the only reference to a prompt frees its tensors (CUDA's cached blocks are returned by
    the worker's cleanup after the job).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, VoicePrompt] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def fetch(self, key: str, device: torch.device, build: Callable[[], VoicePrompt]) -> VoicePrompt:
        """The prompt for ``key`` on ``device``, built on a miss."""
        prompt = self._entries.pop(key, None)
        if prompt is None:
            self.misses += 1
            prompt = build()
        else:
            self.hits += 1
            if _device_of(prompt) != device:
                prompt = prompt.to(device)  # replaces the entry, so the old copy is freed
        self._entries[key] = prompt
        self._evict()
        return prompt

    def resize(self, capacity: int) -> None:
        """Keep at most ``capacity`` prompts from now on, dropping the least recently used at once."""
        self.capacity = capacity
        self._evict()

    def _evict(self) -> None:
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def to_host(self) -> None:
        """Move every prompt to the CPU, so unloading a model leaves nothing of it on the GPU."""
        for key, prompt in self._entries.items():
            if _device_of(prompt).type != "cpu":
                self._entries[key] = prompt.to("cpu")


def _device_of(prompt: VoicePrompt) -> torch.device:
    return next(iter(prompt.tensors.values())).device if prompt.tensors else torch.device("cpu")
