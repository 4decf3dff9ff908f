"""The one interface every text-to-speech model family implements.

An adapter says what a model is made of (its components, by module path), how a voice prompt is
built from a reference recording, and how chunks of text become waveforms. The planner, the
executors and the worker only ever talk to this interface, so adding a model family means adding
an adapter module and nothing else.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PretrainedConfig


class Role(str, enum.Enum):
    """What a component does; the planner offloads by role (codec to CPU, backbone layers streamed)."""

    EMBEDDINGS = "embeddings"
    BACKBONE = "backbone"
    HEAD = "head"  # depth decoder, flow head, diffusion head: small, runs many times per frame
    CODEC = "codec"  # audio tokenizer / vocoder: encodes the reference, decodes generated frames
    OTHER = "other"


@dataclass(frozen=True)
class Component:
    """One part of a model, addressed by its module path inside the loaded model.

    ``module_paths`` lists every top-level module path that belongs to the component (e.g. a text
    embedding and an lm_head may both count as embeddings). ``layers_path`` names the ModuleList
    of repeated decoder layers, for backbones whose layers can be streamed one at a time.
    ``pinned_to_compute`` marks modules read outside ``forward`` (their device is queried by
    generation code), which must live on the compute device unless the whole model is on CPU.
    ``cpu_real_time_factor`` is the measured time this component takes on a laptop CPU per second
    of audio (None: unknown); the planner moves a codec to the CPU only when this is small.
    """

    name: str
    role: Role
    module_paths: tuple[str, ...]
    layers_path: str | None = None
    pinned_to_compute: bool = False
    cpu_real_time_factor: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: a short name, where it comes from, and its real architecture.

    ``config`` builds the real-size config without any download, so sizes and plans can be shown
    before the weights are fetched.
    """

    name: str
    hub_id: str
    family: str
    description: str
    config: Any  # Callable[[], PretrainedConfig]; Any keeps the frozen dataclass hashable
    # Other hub repos its processor loads (Pocket TTS's codec): downloaded with it, named in offline advice
    # before its processor config is cached.
    companion_hub_ids: tuple[str, ...] = ()


@dataclass
class VoicePrompt:
    """An encoded reference recording, ready to condition generation for one model.

    ``tensors`` holds whatever the adapter needs (codec latents, codes, input ids); ``nbytes`` lets
    the worker's cache account for memory, and ``to`` moves it with the model.
    """

    family: str
    tensors: dict[str, torch.Tensor]
    transcript: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

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

    family: str
    model_type: str  # the ``model_type`` in a checkpoint's config.json that this adapter reads
    sample_rate: int
    frame_rate: float  # generated frames per second of audio
    needs_transcript: bool = False  # whether cloning quality depends on the reference transcript
    model_class: type  # the transformers model class this family loads
    kv_cache_copies: int = 1  # 2 for classifier-free guidance, which runs a second, unconditioned sequence

    def meta_model(self, config: PretrainedConfig) -> torch.nn.Module:
        """The model built on the meta device: real shapes, no memory, no download."""
        with torch.device("meta"):
            return self.model_class._from_config(config)

    @abstractmethod
    def components(self, config: PretrainedConfig) -> list[Component]:
        """The model's parts, by module path; together they cover every parameter."""

    @abstractmethod
    def load(self, path: Path, dtype: torch.dtype, device: torch.device,
             device_map: dict[str, str | int] | None = None) -> LoadedModel:
        """Load weights (safetensors only, no remote code) and processor, eval mode.

        With ``device_map`` None the whole model goes to ``device``; otherwise the map places each
        module and ``device`` is the compute device.
        """

    @abstractmethod
    def build_voice_prompt(self, loaded: LoadedModel, audio: np.ndarray, sample_rate: int,
                           transcript: str | None) -> VoicePrompt:
        """Encode a mono float32 reference recording (any sample rate) for this model."""

    @abstractmethod
    def generate(self, loaded: LoadedModel, prompt: VoicePrompt, texts: list[str],
                 max_frames: int | None = None) -> list[np.ndarray]:
        """Turn a batch of text chunks into mono float32 waveforms at ``sample_rate``.

        Randomness comes from torch's global generator; the caller seeds it, so the same seed
        gives the same audio. ``max_frames`` caps generation per chunk (None: the adapter's own
        budget from the text length).
        """

    def frames_for_text(self, text: str) -> int:
        """Worst-case frames a chunk of text generates; planners size KV caches from it."""
        # ~15 characters per second of speech is a slow narrator; 2 s of slack for the tail.
        return int((len(text) / 15.0 + 2.0) * self.frame_rate)
