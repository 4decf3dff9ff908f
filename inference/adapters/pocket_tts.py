"""Kyutai's Pocket TTS through transformers: a small causal transformer over the voice, the text and
continuous audio latents, a flow head that samples one latent per 80 ms frame, and a separate codec
(``PocketTTSAudioTokenizerModel``) that the processor holds to encode the reference and decode frames.

Checkpoint layouts that ``load`` accepts:

- the released one (``eustlb/pocket-tts``): the model, tokenizer, chat template and a
  ``processor_config.json`` whose ``audio_tokenizer`` entry (as ``ProcessorMixin.save_pretrained`` writes
  it) names the codec's own repo (``eustlb/pocket-tts-audio-tokenizer``); the processor loads it from
  there through the Hugging Face cache, so that second repo must be downloaded too to work offline;
- a bundled one (Vesper's tiny test checkpoints, or a folder a user assembles): no such entry, and the
  codec saved with ``save_pretrained`` in an ``audio_tokenizer/`` subfolder.

The codec is attached to the loaded model as its ``audio_tokenizer`` submodule, so it has a module path
like every other part (the planner sizes and places it by that path) while the processor keeps using it.
"""

from __future__ import annotations

import json
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from transformers import (
    PocketTTSAudioTokenizerConfig,
    PocketTTSAudioTokenizerModel,
    PocketTTSConfig,
    PocketTTSForConditionalGeneration,
    PocketTTSProcessor,
    PretrainedConfig,
)

from inference.adapters.base import Component, LoadedModel, ModelAdapter, VoicePrompt
from inference.adapters.tokens import plain_text
from inference.audio import resample
from inference.errors import ModelNotFoundError, OfflineModelError
from inference.families import FAMILIES

CODEC = "audio_tokenizer"  # the codec's module path on the loaded model, and its bundled subfolder
CODEC_HUB_ID = "eustlb/pocket-tts-audio-tokenizer"


def real_config() -> PocketTTSConfig:
    """The released model (kyutai's b6369a24 weights): a 6 x 1024 transformer over a 4000-token
    SentencePiece vocabulary plus 4 audio placeholders, and a 6 x 512 flow head on 32-dim latents.
    """
    return PocketTTSConfig(
        vocab_size=4004, hidden_size=1024, num_hidden_layers=6, num_attention_heads=16,
        intermediate_size=4096, latent_dim=32, frame_rate=12.5,
        flow_head_config={"hidden_size": 512, "num_hidden_layers": 6, "latent_dim": 32,
                          "condition_dim": 1024},
    )


def real_codec_config() -> PocketTTSAudioTokenizerConfig:
    """The released codec: Mimi's SEANet (ratios 6, 5, 4, 64 filters) and a 2-layer 512-wide transformer
    on each side, a 32-dim continuous bottleneck, 1920 samples per frame at 24 kHz."""
    return PocketTTSAudioTokenizerConfig(
        hidden_size=512, num_filters=64, upsampling_ratios=[6, 5, 4], num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=8, intermediate_size=2048, sliding_window=250,
        latent_dim=32, latent_stride=16,
    )


class PocketTTSAdapter(ModelAdapter):
    facts = FAMILIES["pocket_tts"]
    model_class = PocketTTSForConditionalGeneration
    processor_class = PocketTTSProcessor  # its own ``load``: the codec comes with the processor

    def meta_model(self, config: PretrainedConfig) -> torch.nn.Module:
        """The language model with the released codec attached, as ``load`` attaches the real one.

        A model config does not describe its codec; the released codec's size is assumed.
        """
        model = super().meta_model(config)
        with torch.device("meta"):
            model.add_module(CODEC, PocketTTSAudioTokenizerModel._from_config(real_codec_config()))
        return model

    def components(self, config: PretrainedConfig) -> list[Component]:
        """The parts by module path. Four tensors sit outside any submodule (``model.bos_latent``, the
        ``latent_mean``/``latent_std`` statistics and their update counter): generation reads them
        outside ``forward``, so ``load`` keeps them on the compute device whatever the device map says.
        """
        part = self.facts.component
        return [
            part("embeddings", ("model.embed_tokens", "model.audio_prompt_proj", "model.audio_latent_proj")),
            # rotary_emb first: it carries the backbone's config, which sizing reads for the KV cache.
            part("backbone", ("model.rotary_emb", "model.layers", "model.norm"), layers_path="model.layers"),
            # The loss weighting is training-only and tiny.
            part("flow_head", ("flow_head", "eos_head", "loss_weighting")),
            part("codec", (CODEC,)),
        ]

    def load(self, path: Path, dtype: torch.dtype, device: torch.device,
             device_map: dict[str, str | int] | None = None) -> LoadedModel:
        lm_map, codec_device = _split_device_map(device_map, device)
        if device_map is not None:
            lm_map = _pin_loose_tensors(PocketTTSConfig.from_pretrained(path), lm_map, device)
        model = PocketTTSForConditionalGeneration.from_pretrained(
            path, dtype=dtype, use_safetensors=True, device_map=lm_map).eval()
        processor = _load_processor(path, dtype, codec_device)
        model.add_module(CODEC, processor.audio_tokenizer.eval())
        return LoadedModel(model, processor, path, dtype, device)

    def build_voice_prompt(self, loaded: LoadedModel, audio: np.ndarray, sample_rate: int,
                           transcript: str | None) -> VoicePrompt:
        """Encode the reference once into codec latents, as the processor does for an ``audio`` item:
        feature extraction (which ends the recording on a short pause), then the codec's encoder."""
        features = loaded.processor.feature_extractor
        audio = resample(audio, sample_rate, features.sampling_rate)
        inputs = features(audio, sampling_rate=features.sampling_rate, return_tensors="pt")
        codec = loaded.processor.audio_tokenizer
        with torch.inference_mode():
            encoded = codec.encode(inputs["input_values"].to(codec.device, codec.dtype),
                                   inputs["padding_mask"].to(codec.device))
        num_frames = int(encoded.latents_mask[0].sum())
        latents = encoded.latents[0, :num_frames].float().cpu()
        return VoicePrompt(self.family, {"audio_prompt_latents": latents}, transcript)

    def generate(self, loaded: LoadedModel, prompt: VoicePrompt, texts: list[str],
                 max_frames: int | None = None) -> list[np.ndarray]:
        """One batch: the processor renders each text with the voice placeholder, left-pads the batch (the
        model generates from the last position of every row) and counts the frames each text gets after its
        end-of-speech frame; ``generate`` returns padded latents and their mask, which ``decode`` turns
        into waveforms. ``max_frames`` None keeps the model's own budget, from the longest text."""
        inputs = self.prompt_inputs(loaded, prompt, texts)
        budget = {} if max_frames is None else {"max_new_tokens": max_frames}
        with torch.inference_mode():
            output = loaded.model.generate(**inputs, return_dict_in_generate=True, **budget)
            waveforms = loaded.processor.decode(output.audio_latents, output.audio_latents_mask)
        return [waveform.numpy() for waveform in waveforms]  # decode returns float32 CPU tensors

    def prompt_inputs(self, loaded: LoadedModel, prompt: VoicePrompt, texts: list[str]) -> dict:
        """Processor outputs for a batch of chunks (voice placeholder, then text; left-padded), on the model's
        device, including the frames each text gets after its end-of-speech frame. Each text goes in as plain
        text (``plain_text``: no string in it becomes a placeholder or marker)."""
        processor = loaded.processor
        conversations = [[{"role": "user", "content": [
            {"type": "audio"}, {"type": "text", "text": plain_text(text, processor.tokenizer)}]}] for text in texts]
        voices = [prompt.tensors["audio_prompt_latents"]] * len(texts)
        return processor(text=processor.apply_chat_template(conversations), audio_prompt_latents=voices,
                         return_tensors="pt", padding=True, padding_side="left").to(loaded.device)


def _split_device_map(device_map: dict[str, str | int] | None,
                      device: torch.device) -> tuple[dict[str, str | int], torch.device]:
    """The language model's part of the map, and the codec's device (the compute device by default)."""
    if device_map is None:
        return {"": str(device)}, device
    if any(key.startswith(f"{CODEC}.") for key in device_map):
        raise ValueError(f"The Pocket TTS codec is placed as one module: map '{CODEC}', not its parts.")
    lm_map = {key: value for key, value in device_map.items() if key != CODEC}
    return lm_map, torch.device(device_map.get(CODEC, device))


def _pin_loose_tensors(config: PocketTTSConfig, device_map: dict[str, str | int],
                       device: torch.device) -> dict[str, str | int]:
    """Map every tensor the map leaves out to the compute device.

    ``model.bos_latent``, ``latent_mean``, ``latent_std`` and ``latent_stats_num_updates`` belong to no
    submodule, so no module path reaches them; accelerate refuses a map that leaves them out (seen on an
    H100), and generation reads them outside ``forward``, so they must sit with the computation.
    """
    if "" in device_map:
        return device_map
    with torch.device("meta"):
        model = PocketTTSForConditionalGeneration._from_config(config)
    names = [name for name, _ in chain(model.named_parameters(), model.named_buffers())]
    loose = [name for name in names
             if not any(name == key or name.startswith(f"{key}.") for key in device_map)]
    return {**device_map, **dict.fromkeys(loose, str(device))}


def _load_processor(path: Path, dtype: torch.dtype, codec_device: torch.device) -> PocketTTSProcessor:
    """The processor with its codec: the repo its config names (released layout), else the bundled one.

    A codec placed on the CPU stays in float32: most CPUs convolve in half precision far slower, and the
    codec is only 80 MB in float32. (Where the CPU computes bf16 natively, the CPU tier's session decodes
    with a bf16 copy of the codec's SEANet: ``fastpath.codec.pocket_decoding_copy``.)
    """
    if codec_device.type == "cpu":
        dtype = torch.float32
    reference = _codec_reference(path)
    if reference is None:
        processor = PocketTTSProcessor.from_pretrained(path)
        processor.audio_tokenizer = _load_bundled_codec(path, dtype, codec_device)
        return processor
    try:
        # dtype and device_map are the kwargs the processor forwards to its codec's from_pretrained.
        return PocketTTSProcessor.from_pretrained(path, dtype=dtype, device_map={"": str(codec_device)})
    except OSError as exc:
        raise OfflineModelError(
            f"The Pocket TTS codec '{reference}' that {path} uses could not be loaded ({exc}). Connect to "
            f"the internet once to download it (or run `hf download {reference}`), then try "
            "again."
        ) from exc


def _codec_reference(path: Path) -> str | None:
    """Where the processor's config says the codec lives (a hub id or a folder), if it says so.

    ``ProcessorMixin.save_pretrained`` writes it into ``processor_config.json``; older processors kept it
    in ``audio_tokenizer_config.json``, which ``from_pretrained`` still reads.
    """
    processor_config = path / "processor_config.json"
    legacy = path / "audio_tokenizer_config.json"
    entry = json.loads(processor_config.read_text()).get(CODEC) if processor_config.is_file() else None
    if entry is None and legacy.is_file():
        entry = json.loads(legacy.read_text())
    return None if entry is None else str(entry["audio_tokenizer_name_or_path"])


def _load_bundled_codec(path: Path, dtype: torch.dtype, device: torch.device) -> PocketTTSAudioTokenizerModel:
    folder = path / CODEC
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(
            f"Pocket TTS checkpoint {path} has no codec: its processor config names no audio tokenizer "
            f"and it has no {CODEC}/ folder. Download the released model (which uses {CODEC_HUB_ID}) or "
            f"save the codec into {folder}.")
    return PocketTTSAudioTokenizerModel.from_pretrained(
        folder, dtype=dtype, use_safetensors=True, device_map={"": str(device)})


ADAPTER = PocketTTSAdapter()
