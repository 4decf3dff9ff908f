"""A loaded model under a plan: voice prompts in, waveforms out, one chunk at a time.

The engine is what runs inside the worker process. It owns the model's memory; everything it is
given (text, a decoded reference recording) and gives back (numpy audio) is plain data, so the
caller never needs torch.
"""

from __future__ import annotations

import numpy as np
import torch

from inference.adapters.base import LoadedModel, VoicePrompt
from inference.audio import resample
from inference.models import ModelRef, fetch
from inference.planner import Plan


def chunk_seed(seed: int, index: int) -> int:
    """Each chunk draws from its own seed, so any chunk can be regenerated alone (resume, retry)."""
    return seed + index


class Engine:
    """One model loaded for one plan."""

    def __init__(self, ref: ModelRef, plan: Plan, loaded: LoadedModel):
        self.ref = ref
        self.plan = plan
        self.loaded = loaded

    @classmethod
    def load(cls, ref: ModelRef, plan: Plan) -> Engine:
        """Fetch the checkpoint if needed and load it where the plan says."""
        if plan.device == "cpu":
            # Oversubscribing cores slows every op down; torch's default can exceed the physical count.
            torch.set_num_threads(max(1, torch.get_num_threads()))
        dtype = getattr(torch, plan.dtype)
        device_map = None if plan.device_map == {"": plan.device} else plan.device_map
        loaded = ref.adapter.load(fetch(ref), dtype, torch.device(plan.device), device_map)
        return cls(ref, plan, loaded)

    @property
    def sample_rate(self) -> int:
        return self.ref.adapter.sample_rate

    def voice_prompt(self, audio: np.ndarray, rate: int, transcript: str | None) -> VoicePrompt:
        """Encode a reference recording (any rate) for this model."""
        with torch.inference_mode():
            target = self.ref.adapter.sample_rate
            return self.ref.adapter.build_voice_prompt(self.loaded, resample(audio, rate, target), target,
                                                       transcript)

    def synthesize(self, prompt: VoicePrompt, text: str, seed: int) -> np.ndarray:
        """One chunk of text as a mono float32 waveform at ``sample_rate``."""
        torch.manual_seed(seed)
        with torch.inference_mode():
            return self.ref.adapter.generate(self.loaded, prompt, [text])[0]
