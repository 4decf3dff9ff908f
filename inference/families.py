"""What Vesper knows about each model family and registered model, without torch.

The planner, the catalogue and the GUI read these facts; the adapters (which need torch) read the
same ones, so each fact lives here once: audio and frame rates, how many KV caches generation keeps,
whether cloning needs the reference's transcript, how many frames a text may take, and for each
component its role, whether it must stay on the compute device and how fast it runs on a CPU.
Where a component's module paths depend on a checkpoint's config, the adapter builds them and takes
the rest of the component from here (``Family.component``).
"""

from __future__ import annotations

import enum
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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
    ``prompt_only`` marks a part that runs only while a voice prompt is encoded (once per voice; the
    worker caches prompts), never per frame: the planner may keep it on the CPU at no per-frame cost,
    and the adapter moves what it computes to the compute device. ``streams_layers`` marks a part other
    than the backbone whose ``layers_path`` layers run through ``forward`` every frame, so the streamed
    executor may stream them like backbone layers even where the part itself is pinned.
    """

    name: str
    role: Role
    module_paths: tuple[str, ...]
    layers_path: str | None = None
    pinned_to_compute: bool = False
    cpu_real_time_factor: float | None = None
    prompt_only: bool = False
    streams_layers: bool = False


@dataclass(frozen=True)
class Part:
    """The config-independent facts of one component of a family."""

    role: Role
    pinned_to_compute: bool = False
    cpu_real_time_factor: float | None = None
    prompt_only: bool = False
    streams_layers: bool = False


def narrator_frames(frame_rate: float, chars: int) -> int:
    """Worst-case frames for ``chars`` characters: ~15 characters per second of speech is a slow
    narrator; 2 s of slack for the tail."""
    return int((chars / 15.0 + 2.0) * frame_rate)


def token_budget_frames(frame_rate: float, chars: int) -> int:
    """An upper bound of a model whose own budget is ``ceil((text_tokens / 3 + 2) * frame_rate)``: a
    token covers at least one character."""
    return math.ceil((chars / 3 + 2) * frame_rate)


@dataclass(frozen=True)
class Family:
    """One model family: its adapter module is ``inference.adapters.<family>``."""

    family: str
    model_type: str  # the ``model_type`` in a checkpoint's config.json that this family reads
    sample_rate: int
    frame_rate: float  # generated frames per second of audio
    parts: dict[str, Part]
    needs_transcript: bool = False  # whether cloning quality depends on the reference transcript
    kv_cache_copies: int = 1  # 2 for classifier-free guidance, which runs a second, unconditioned sequence
    frames: Callable[[float, int], int] = narrator_frames
    # Activation elements per audio sample that the audio towers' convolutions hold at their peak, decoding
    # audio or encoding the reference (``planning.estimates``); 64 is a few dozen channels at the waveform's rate.
    codec_elements_per_sample: int = 64
    codec_streams_frames: bool = False  # the codec decodes (and re-encodes) one frame per step, not a whole chunk
    # Seconds of the reference encoded at a time through a streaming encoder's padding cache (None: all at
    # once): what bounds the voice encoder's activations (``planning.estimates.reference_encode_bytes``).
    encode_piece_seconds: float | None = None
    # Prompt positions around the reference and the text (the chat template's instructions, speaker labels
    # and markers): 32 covers a speaker turn; VibeVoice's template adds a system instruction.
    template_tokens: int = 32

    def frames_for_chars(self, chars: int) -> int:
        """Worst-case frames a chunk of ``chars`` characters generates; KV caches are sized from it."""
        return self.frames(self.frame_rate, chars)

    def component(self, name: str, module_paths: tuple[str, ...], layers_path: str | None = None) -> Component:
        """The component ``name`` at ``module_paths``, with this family's facts about it."""
        part = self.parts[name]
        return Component(name, part.role, module_paths, layers_path, part.pinned_to_compute,
                         part.cpu_real_time_factor, part.prompt_only, part.streams_layers)


FAMILIES: dict[str, Family] = {f.family: f for f in (
    # Pocket's KV cache is small (0.3 MB per second of audio), so its generous frame budget is cheap.
    Family("pocket_tts", "pocket_tts", 24_000, 12.5, {
        "embeddings": Part(Role.EMBEDDINGS),
        "backbone": Part(Role.BACKBONE),
        # The flow head runs num_flow_steps times per frame from the generation loop itself.
        "flow_head": Part(Role.HEAD, pinned_to_compute=True),
        # 0.09 s per second of audio on 2 CPU threads (fp32, real size; docs/measurements.md, "Codecs on the CPU").
        "codec": Part(Role.CODEC, cpu_real_time_factor=0.09),
    }, frames=token_budget_frames),  # the voice is the reference's codec latents alone
    # The reference is a conversation turn; without its words the model must guess what was said.
    Family("csm", "csm", 24_000, 12.5, {
        "text_embeddings": Part(Role.EMBEDDINGS),
        "backbone": Part(Role.BACKBONE),
        # The depth decoder's generate is called from the parent's sampling loop, 31 times per frame.
        "depth_decoder": Part(Role.HEAD, pinned_to_compute=True),
        # Mimi: 0.07 s per second of audio on 2 CPU threads (fp32, real size; docs/measurements.md).
        "codec": Part(Role.CODEC, cpu_real_time_factor=0.07),
    }, needs_transcript=True),
    # Classifier-free guidance runs an unconditioned sequence beside each chunk: two KV caches. The
    # reference's latents condition the model; its words are never read. CPU factors (docs/measurements.md):
    # decoding and re-encoding each frame on 2 CPU threads takes 2.3 s per second of audio. The acoustic
    # tokenizer's encoder reads only the reference, once per voice (the adapter's ``build_voice_prompt``);
    # its decoder and the semantic encoder run every frame (the adapter's docstring says when each runs).
    Family("vibevoice", "vibevoice", 24_000, 7.5, {
        "embeddings": Part(Role.EMBEDDINGS),
        "backbone": Part(Role.BACKBONE),
        "diffusion_head": Part(Role.HEAD, pinned_to_compute=True),
        # 2.4 s of CPU per second of reference on 2 threads (docs/measurements.md): a 20 s voice, once.
        "acoustic_encoder": Part(Role.CODEC, prompt_only=True, cpu_real_time_factor=2.4),
        # Per frame, called as methods (pinned), but their widest stage's blocks run through forward: they
        # may stream, when the whole backbone streaming is not enough (4 GB cards).
        "acoustic_decoder": Part(Role.CODEC, pinned_to_compute=True, cpu_real_time_factor=1.35, streams_layers=True),
        "semantic_encoder": Part(Role.CODEC, pinned_to_compute=True, cpu_real_time_factor=0.91, streams_layers=True),
        "connectors": Part(Role.OTHER, pinned_to_compute=True),
    # The towers' first ConvNeXt stages hold 32-128 channels at 24 kHz (an RMS norm in fp32, a 4x
    # feed-forward): encoding a 20 s reference in 8 s pieces on the CPU peaked at 765 fp32 elements per
    # sample encoded at once (docs/measurements.md, "VibeVoice's voice encoder"); 1024 leaves room.
    # The acoustic encoder is causal and streams (the semantic encoder is the same network, run per frame):
    # 8 s pieces through its padding cache give the whole reference's latents up to float rounding (3e-7 on
    # the tiny checkpoint), and the 5-15 s references the README asks for take one or two.
    # Its chat template's system instruction (20 English words) and "Voice input / Text input / Speech output"
    # labels: about 50 tokens of Qwen2.5's tokenizer (estimated; not measured here), 71-77 of the full-size
    # checkpoints' stand-in (tests.tiny_models.subwords; a prompt's positions less the reference's and the text's).
    }, kv_cache_copies=2, codec_elements_per_sample=1024, codec_streams_frames=True, encode_piece_seconds=8.0,
       template_tokens=72),
)}


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: a short name, where it comes from, and its real architecture.

    ``config_builder`` names the function in the family's adapter module that builds the real-size
    config without any download; ``config()`` calls it (that needs transformers). The planner and the
    catalogue use the sizes stored in ``inference/model_sizes.json`` instead, so they need no torch.
    ``checkpoint_dtype`` is the dtype the hub's safetensors hold (the download size follows from it).
    """

    name: str
    hub_id: str
    family: str
    description: str
    config_builder: str
    checkpoint_dtype: str = "bfloat16"
    companions: tuple[str, ...] = ()  # hub repos downloaded with it (a codec the processor loads)

    def config(self) -> Any:
        """The real-size transformers config (imports the adapter module, and so torch)."""
        module = importlib.import_module(f"inference.adapters.{self.family}")
        return getattr(module, self.config_builder)()


SPECS: tuple[ModelSpec, ...] = (
    ModelSpec("pocket-tts", "eustlb/pocket-tts", "pocket_tts",
              "Kyutai Pocket TTS: 90M-parameter flow language model + 20M codec, English, 24 kHz; "
              "fast even on CPU. Its codec comes from eustlb/pocket-tts-audio-tokenizer.", "real_config",
              "float32", ("eustlb/pocket-tts-audio-tokenizer",)),
    ModelSpec("csm-1b", "sesame/csm-1b", "csm",
              "Sesame CSM-1B: 1.63B parameters, conversational voice cloning from a reference turn, "
              "English, 24 kHz", "csm_1b_config", "float32"),
    ModelSpec("vibevoice-1.5b", "vibevoice/VibeVoice-1.5B-hf", "vibevoice",
              "VibeVoice 1.5B: expressive long-form speech, 2.7B parameters in all (5.0 GiB in bf16)",
              "vibevoice_1_5b_config"),
    ModelSpec("vibevoice-7b", "vibevoice/VibeVoice-7B-hf", "vibevoice",
              "VibeVoice 7B: the larger, more natural VibeVoice, 9.3B parameters (17.4 GiB in bf16)",
              "vibevoice_7b_config"),
)
