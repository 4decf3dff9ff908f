"""The one interface every text-to-speech model family implements.

An adapter says what a model is made of (its components, by module path), how a voice prompt is
built from a reference recording, and how chunks of text become waveforms. The planner, the
executors and the worker only ever talk to this interface, so adding a model family means adding
an adapter module and nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PretrainedConfig

from inference.families import Component, Family, ModelSpec, Role  # noqa: F401  (re-exported)


@dataclass
class VoicePrompt:
    """An encoded reference recording, ready to condition generation for one model.

    ``tensors`` holds whatever the adapter needs (codec latents, codes, input ids); ``to`` moves it
    with the model.
    """

    family: str
    tensors: dict[str, torch.Tensor]
    transcript: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> VoicePrompt:
        moved = {k: v.to(device) for k, v in self.tensors.items()}
        return VoicePrompt(self.family, moved, self.transcript, dict(self.extra))


@dataclass
class LoadedModel:
    """A model and its processor as loaded from one checkpoint folder."""

    model: torch.nn.Module
    processor: Any
    path: Path
    dtype: torch.dtype
    device: torch.device  # the compute device: where inputs go and generation runs


class ModelAdapter(ABC):
    """One model family behind Vesper's interface.

    Subclasses are stateless: everything that belongs to a loaded checkpoint lives in
    ``LoadedModel`` and ``VoicePrompt``, so one adapter serves every model of its family.
    """

    facts: Family  # sample and frame rates, KV copies, transcript need, component facts (torch-free)
    model_class: type  # the transformers model class this family loads
    processor_class: type  # and its processor class (``load`` below reads both)

    @property
    def family(self) -> str:
        return self.facts.family

    @property
    def model_type(self) -> str:
        return self.facts.model_type

    @property
    def sample_rate(self) -> int:
        return self.facts.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.facts.frame_rate

    @property
    def needs_transcript(self) -> bool:
        return self.facts.needs_transcript

    @property
    def kv_cache_copies(self) -> int:
        return self.facts.kv_cache_copies

    def meta_model(self, config: PretrainedConfig) -> torch.nn.Module:
        """The model built on the meta device: real shapes, no memory, no download."""
        with torch.device("meta"):
            return self.model_class._from_config(config)

    @abstractmethod
    def components(self, config: PretrainedConfig) -> list[Component]:
        """The model's parts, by module path; together they cover every parameter."""

    def load(self, path: Path, dtype: torch.dtype, device: torch.device,
             device_map: dict[str, str | int] | None = None) -> LoadedModel:
        """Load weights (safetensors only, no remote code) and processor, eval mode.

        With ``device_map`` None the whole model goes to ``device``; otherwise the map places each
        module and ``device`` is the compute device. Families whose checkpoint is one model and one
        processor folder use this as it is.
        """
        model = self.model_class.from_pretrained(path, dtype=dtype, use_safetensors=True, device_map=device_map)
        if device_map is None:
            model.to(device)
        processor = self.processor_class.from_pretrained(path)
        return LoadedModel(model.eval(), processor, Path(path), dtype, device)

    @abstractmethod
    def build_voice_prompt(self, loaded: LoadedModel, audio: np.ndarray, sample_rate: int,
                           transcript: str | None) -> VoicePrompt:
        """Encode a mono float32 reference recording (any sample rate) for this model."""

    @abstractmethod
    def prompt_inputs(self, loaded: LoadedModel, prompt: VoicePrompt, texts: list[str]) -> Any:
        """The model's inputs for a batch of chunks in this voice (left-padded, on the compute device).

        Plain ``generate`` and the fast decode session both start from these, so they see the same prompt;
        what they are is the family's (input embeddings and a mask, or processor outputs).
        """

    @abstractmethod
    def generate(self, loaded: LoadedModel, prompt: VoicePrompt, texts: list[str],
                 max_frames: int | None = None) -> list[np.ndarray]:
        """Turn a batch of text chunks into mono float32 waveforms at ``sample_rate``.

        Randomness comes from torch's global generator; the caller seeds it, so the same seed
        gives the same audio. ``max_frames`` caps generation per chunk (None: the adapter's own
        budget from the text length).
        """

    def frames_for_text(self, text: str) -> int:
        """Worst-case frames a chunk of text generates (the family's budget); KV caches are sized from it."""
        return self.facts.frames_for_chars(len(text))
