"""Fast sessions: a loaded model plus its preallocated decode state, serving chunks as streamed audio.

A session is opened once per model load (its caches and graph are sized by the plan and captured
in ``warm_up``) and then serves any number of requests. ``stream`` yields audio per chunk as the
frames come out; ``generate`` collects it, with the same contract as ``ModelAdapter.generate``
except that every chunk carries its own seed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from inference.adapters.base import LoadedModel, ModelAdapter, VoicePrompt
from inference.fastpath.codec import MimiStream, pocket_decoding_copy
from inference.fastpath.csm import CsmFastDecoder, sampling_of
from inference.fastpath.frames import FrameBlock
from inference.fastpath.pocket import PocketFastDecoder
from inference.fastpath.vibevoice import VibeVoiceFastDecoder, noise_scheduler


@dataclass
class AudioPiece:
    """The next samples of chunk ``row`` (float32 mono at the adapter's rate); ``final`` closes the chunk."""

    row: int
    audio: np.ndarray
    final: bool


class FastSession(ABC):
    """Fast decoding for one loaded model, on the plan its executor placed."""

    kind: str  # shown in plans and benchmarks
    codec_outside_graph = True  # audio is decoded from the frames on the codec's own device
    cpu_tier = False  # written to beat plain generate on a CPU as well
    steps_offloaded_models = False  # can step a language model an offload executor swaps in, outside its graph

    @classmethod
    def unsupported(cls, loaded: LoadedModel) -> str | None:
        """Why this loaded model cannot take the fast path (a generation setting it cannot reproduce)."""
        return None

    @classmethod
    @abstractmethod
    def describe(cls, graphs: bool, model_step: bool = False) -> str:
        """One line for the plan: how the session decodes."""

    @abstractmethod
    def warm_up(self) -> float:
        """Allocate and capture what the first request would otherwise pay for; returns seconds."""

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Device bytes the session holds on top of the weights (caches, buffers)."""

    @abstractmethod
    def stream(self, prompt: VoicePrompt, texts: list[str], seeds: list[int],
               max_frames: int | None = None) -> Iterator[AudioPiece]:
        """Audio of every chunk, piece by piece, as it is generated."""

    def generate(self, prompt: VoicePrompt, texts: list[str], seeds: list[int],
                 max_frames: int | None = None) -> list[np.ndarray]:
        """Every chunk's whole waveform."""
        pieces: list[list[np.ndarray]] = [[] for _ in texts]
        for piece in self.stream(prompt, texts, seeds, max_frames):
            pieces[piece.row].append(piece.audio)
        return [np.concatenate(p) if p else np.zeros(0, dtype=np.float32) for p in pieces]


class GraphedSession(FastSession):
    """A session over a ``GraphedDecoder``: warm-up and memory are the decoder's."""

    steps_offloaded_models = True
    decoder: object

    def __init__(self, adapter: ModelAdapter, loaded: LoadedModel, first_block: int):
        self.adapter = adapter
        self.loaded = loaded
        self.first_block = first_block

    @torch.inference_mode()
    def warm_up(self) -> float:
        return self.decoder.warm_up()

    @property
    def nbytes(self) -> int:
        return self.decoder.nbytes


class CsmSession(GraphedSession):
    """CSM through ``CsmFastDecoder`` and a streaming Mimi decode."""

    @classmethod
    def unsupported(cls, loaded: LoadedModel) -> str | None:
        try:
            sampling_of(loaded.model)
        except ValueError as exc:
            return str(exc)
        return None

    @classmethod
    def describe(cls, graphs: bool, model_step: bool = False) -> str:
        if model_step:
            return (f"{_graphed(graphs)} for sampling and the depth decoder, the backbone stepped through the "
                    "offload executor, stop checks every 8 frames, streamed Mimi decode")
        return (f"static KV cache sized by the plan, {_graphed(graphs)}, sampling on the device, stop checks "
                "every 8 frames, streamed Mimi decode")

    def __init__(self, adapter: ModelAdapter, loaded: LoadedModel, batch_size: int, capacity: int,
                 use_graph: bool | None = None, check_every: int = 8, first_block: int = 2,
                 model_step: bool = False):
        super().__init__(adapter, loaded, first_block)
        self.decoder = CsmFastDecoder(loaded.model, batch_size, capacity, use_graph=use_graph,
                                      check_every=check_every, model_step=model_step)
        self.kind = "csm: " + _kind(self.decoder.runner.use_graph, model_step)

    @torch.inference_mode()
    def stream(self, prompt: VoicePrompt, texts: list[str], seeds: list[int],
               max_frames: int | None = None) -> Iterator[AudioPiece]:
        embeds, mask = self.adapter.prompt_inputs(self.loaded, prompt, texts)
        budgets = [max_frames or self.adapter.frames_for_text(text) for text in texts]
        codec = MimiStream(self.loaded.model.codec_model)
        blocks = self.decoder.stream(embeds, mask, seeds, budgets, first_block=self.first_block)
        yield from _pieces(blocks, codec.push, codec.samples_per_frame, len(texts))


class VibeVoiceSession(GraphedSession):
    """VibeVoice through ``VibeVoiceFastDecoder``: the frame's audio comes out of the graph itself."""

    codec_outside_graph = False  # each frame's audio is re-encoded to make the next input

    @classmethod
    def unsupported(cls, loaded: LoadedModel) -> str | None:
        try:
            noise_scheduler(loaded.model)
        except (ImportError, ValueError) as exc:
            return f"no noise scheduler ({exc})"
        return None

    @classmethod
    def describe(cls, graphs: bool, model_step: bool = False) -> str:
        frame = "token choice, guided diffusion, acoustic decode and semantic re-encode"
        if model_step:
            return (f"{_graphed(graphs)} ({frame}), the language model stepped through the offload "
                    "executor for the guidance pair, stop checks every 8 frames")
        return (f"one static KV cache for the guidance pair sized by the plan, {_graphed(graphs)} ({frame}), "
                "stop checks every 8 frames")

    def __init__(self, adapter: ModelAdapter, loaded: LoadedModel, batch_size: int, capacity: int,
                 use_graph: bool | None = None, check_every: int = 8, first_block: int = 2,
                 noise: str = "counter", model_step: bool = False, codec_step: bool | None = None):
        super().__init__(adapter, loaded, first_block)
        self.decoder = VibeVoiceFastDecoder(loaded.model, batch_size, capacity, use_graph=use_graph,
                                            check_every=check_every, noise=noise, model_step=model_step,
                                            codec_step=codec_step)
        self.kind = "vibevoice, guidance pair: " + _kind(self.decoder.runner.use_graph, model_step)
        if self.decoder.codec_step:
            self.kind += ", audio towers stepped by it too"

    @torch.inference_mode()
    def stream(self, prompt: VoicePrompt, texts: list[str], seeds: list[int],
               max_frames: int | None = None) -> Iterator[AudioPiece]:
        inputs = self.adapter.prompt_inputs(self.loaded, prompt, texts)
        budgets = [max_frames or self.adapter.frames_for_text(text) for text in texts]
        # the voice's latents, encoded once per voice by build_voice_prompt
        blocks = self.decoder.stream(inputs, seeds, budgets, prompt.tensors["latents"], first_block=self.first_block)
        yield from _pieces(blocks, lambda frames: frames.flatten(1), self.decoder.samples_per_frame, len(texts))


class PocketSession(FastSession):
    """Pocket TTS through ``PocketFastDecoder`` and a streaming decode of its codec (CPU tier)."""

    cpu_tier = True

    @classmethod
    def describe(cls, graphs: bool, model_step: bool = False) -> str:
        return "static KV cache sized by the plan, lean step loop, streamed codec"

    def __init__(self, adapter: ModelAdapter, loaded: LoadedModel, batch_size: int, capacity: int,
                 check_every: int = 8, first_block: int = 2, weight_dtype: torch.dtype | None = None,
                 codec_dtype: torch.dtype | None = None):
        """``weight_dtype``: the backbone's projections (``PocketFastDecoder``); int8 also quantizes the
        codec transformer's (0.43-0.53x fp32's time: benchmarks/cpu_tier_parts.py).
        ``codec_dtype``: the codec decodes in that dtype (bf16 where the CPU computes it natively)."""
        self.adapter = adapter
        self.loaded = loaded
        self.check_every, self.first_block = check_every, first_block
        self.decoder = PocketFastDecoder(loaded.model, batch_size, capacity, weight_dtype)
        codec, int8 = loaded.processor.audio_tokenizer, weight_dtype == torch.qint8
        self.codec = pocket_decoding_copy(codec, codec_dtype, int8) if int8 or codec_dtype else codec
        self.kind = "pocket_tts: static KV cache, lean step loop"
        if int8:
            self.kind += ", int8 projections (backbone, flow head, codec transformer)"
        elif weight_dtype is not None:
            self.kind += f", {weight_dtype} weights"
        if codec_dtype is not None:
            self.kind += f", codec in {str(codec_dtype).removeprefix('torch.')}"

    def warm_up(self) -> float:
        return 0.0  # nothing to capture; the caches exist from the start

    @property
    def nbytes(self) -> int:
        return self.decoder.nbytes

    @torch.inference_mode()
    def stream(self, prompt: VoicePrompt, texts: list[str], seeds: list[int],
               max_frames: int | None = None) -> Iterator[AudioPiece]:
        processor, model = self.loaded.processor, self.loaded.model
        inputs = self.adapter.prompt_inputs(self.loaded, prompt, texts)
        budget = max_frames or max(self.adapter.frames_for_text(text) for text in texts)
        codec = MimiStream.for_pocket(self.codec)
        blocks = self.decoder.stream(inputs, seeds, budget, block=self.check_every,
                                     first_block=self.first_block)
        rate = processor.feature_extractor.sampling_rate
        fade = torch.linspace(0, 1, int(processor.fade_in_duration * rate))
        done = [0] * len(texts)
        for piece in _pieces(blocks, lambda latents: codec.push(model.denormalize_latents(latents)),
                             codec.samples_per_frame, len(texts)):
            audio = piece.audio
            fading = fade[done[piece.row]:done[piece.row] + len(audio)].numpy()
            if len(fading):  # processor.decode's fade-in of each chunk's first samples
                audio = audio.copy()
                audio[:len(fading)] *= fading
            done[piece.row] += len(audio)
            yield AudioPiece(piece.row, audio, piece.final)


def _graphed(graphs: bool) -> str:
    return "one CUDA graph replay per frame" if graphs else "eager steps (no CUDA graphs on the CPU)"


def _kind(graph: bool, model_step: bool) -> str:
    frame = "CUDA graph per frame" if graph else "eager frame step"
    return frame + (", language model stepped by its executor" if model_step else ", static KV cache")


def _pieces(blocks: Iterator[FrameBlock], decode, per_frame: int, rows: int) -> Iterator[AudioPiece]:
    """Decode each block for every row together and hand out each still-open row's share of it."""
    open_rows = set(range(rows))
    for block in blocks:
        audio = decode(block.frames).float().cpu().numpy()
        for row in sorted(open_rows):
            keep = max(0, min(block.lengths[row], block.stop) - block.start)
            final = block.lengths[row] <= block.stop or block.done
            yield AudioPiece(row, audio[row, :keep * per_frame], final)
            if final:
                open_rows.discard(row)
