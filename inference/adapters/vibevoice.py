"""VibeVoice (Microsoft): a Qwen2.5 language model that emits one acoustic latent per frame through a
diffusion head, with classifier-free guidance, decoded by a sigma-VAE acoustic tokenizer.

Run through transformers' native ``VibeVoiceForConditionalGeneration`` (no remote code). A voice is
cloned by placing the reference recording in the chat template as ``{"type": "audio"}`` next to the
text of the speaker it belongs to; the processor turns it into one audio placeholder per frame and
the model fills them with the acoustic tokenizer's latents.

Audio is 24 kHz at 7.5 frames per second (3200 samples per frame). What runs when (transformers 5.24,
``modeling_vibevoice.py`` and ``generation_vibevoice.py``):

- **Once per voice** (``build_voice_prompt``; the worker caches prompts): the feature extractor brings
  the reference to -25 dB FS and pads it to a multiple of 3200 samples, and the acoustic tokenizer's
  *encoder* (``model.audio_tower.encoder``, a causal-convolution stack that downsamples 3200x; half of
  the tokenizer's weights) turns it into (1, frames, 64) latents, without noise. Nothing else ever
  reads the reference: the semantic encoder never sees it (``get_audio_features`` calls
  ``audio_tower.encode`` alone). transformers' ``generate`` would run this encoder inside the prefill
  of every call, for every row of the batch; here ``generate`` gets the prompt's embeddings instead,
  built from the kept latents with the very noise draws ``generate`` makes, so the encoder runs once
  per voice and may live on the CPU (the family marks it ``prompt_only``).
- **Once per chunk** (prefill): sigma-VAE noise is added to the latents (a scale drawn per row from
  N(0, ``vae_std``), then Gaussian noise), they are shifted and scaled by ``latent_bias_factor`` /
  ``latent_scaling_factor``, projected by ``multi_modal_projector`` (the acoustic connector) into the
  audio placeholders, and the language model prefills the conditioned prompt and the unconditioned
  one (a lone audio-start token).
- **Every frame**: the language model steps both sequences (each with its own KV cache), the diffusion
  head runs ``num_diffusion_steps`` times (10 unless the checkpoint's generation config says otherwise)
  on both conditions, the acoustic tokenizer's *decoder* (``audio_tower.decode``, streaming through a
  padding cache) turns the latent into 3200 samples, the semantic encoder
  (``model.semantic_tokenizer_encoder``, streaming too) encodes those samples again, and
  ``multi_modal_projector(latent) + semantic_connector(semantic)`` is the next input of both sequences.
  So the decoder, the semantic encoder, the head and both connectors are per-frame parts.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import VibeVoiceConfig, VibeVoiceForConditionalGeneration, VibeVoiceProcessor
from transformers.models.vibevoice_acoustic_tokenizer.modeling_vibevoice_acoustic_tokenizer import (
    VibeVoiceAcousticTokenizerConv1dPaddingCache as PaddingCache,
)

from inference.adapters.base import Component, LoadedModel, ModelAdapter, VoicePrompt
from inference.adapters.tokens import plain_text
from inference.audio import resample
from inference.errors import BadInputError
from inference.families import FAMILIES

SPEAKER = "0"  # the chat template's role names are speaker numbers; Vesper narrates with one voice


class VibeVoiceAdapter(ModelAdapter):
    facts = FAMILIES["vibevoice"]
    model_class = VibeVoiceForConditionalGeneration
    processor_class = VibeVoiceProcessor

    def components(self, config: VibeVoiceConfig) -> list[Component]:
        """Parts by module path.

        The per-frame parts are pinned: generation calls ``audio_tower.decode`` (a method, so offload
        hooks never fire) and reads ``next(diffusion_head.parameters()).device`` outside any forward. The
        acoustic encoder is not: it runs only in ``build_voice_prompt``, whose result is moved to the
        compute device, wherever the encoder computes. With tied embeddings
        (1.5B) ``lm_head`` holds no tensor of its own, so it is listed only when untied (7B); the two
        scalar parameters ``model.latent_scaling_factor`` / ``latent_bias_factor`` belong to no
        submodule and are always moved to the latents' device by the generation code.
        """
        text = "model.language_model"
        last_stage = len(config.semantic_model_config.downsampling_ratios) - 1
        embeddings = (f"{text}.embed_tokens",) + (() if config.tie_word_embeddings else ("lm_head",))
        part = self.facts.component
        return [
            part("embeddings", embeddings),
            # rotary_emb first: it is the one part of the Qwen2 model that carries the text config,
            # which the meta measurement reads from a backbone's first module (KV-cache geometry).
            part("backbone", (f"{text}.rotary_emb", f"{text}.layers", f"{text}.norm"), layers_path=f"{text}.layers"),
            part("diffusion_head", ("model.diffusion_head",)),
            part("acoustic_encoder", ("model.audio_tower.encoder",)),
            # The towers' widest stage (2048 channels, 8 ConvNeXt blocks of 64 MiB in bf16: 80% of each
            # tower) is what may stream: the decoder's first stage, the semantic encoder's last.
            part("acoustic_decoder", ("model.audio_tower.decoder",),
                 layers_path="model.audio_tower.decoder.stem.stage"),
            part("semantic_encoder", ("model.semantic_tokenizer_encoder",),
                 layers_path=f"model.semantic_tokenizer_encoder.conv_layers.{last_stage}.stage"),
            part("connectors", ("model.multi_modal_projector", "model.semantic_connector")),
        ]

    def build_voice_prompt(self, loaded: LoadedModel, audio: np.ndarray, sample_rate: int,
                           transcript: str | None) -> VoicePrompt:
        """The reference as 24 kHz samples and its acoustic latents, on the compute device.

        The samples lay out each chunk's prompt (the processor gives the recording one placeholder per
        frame); the latents are the acoustic encoder's output without the sigma-VAE noise, which
        ``generate`` adds per chunk from the seeded generator (``reference_latents``).
        """
        mono = np.asarray(audio, dtype=np.float32).reshape(-1)
        if mono.size == 0:
            raise BadInputError("The reference recording is empty.")
        mono = resample(mono, sample_rate, self.sample_rate)
        values = loaded.processor.feature_extractor(mono, sampling_rate=self.sample_rate)["input_values"]
        with torch.inference_mode():
            latents = encode_reference(loaded, values)
        return VoicePrompt(self.family, {"audio": torch.from_numpy(np.ascontiguousarray(mono)), "latents": latents},
                           transcript)

    def prompt_inputs(self, loaded: LoadedModel, prompt: VoicePrompt, texts: list[str]) -> dict:
        """Processor outputs for a batch of chunks, left-padded, on the model's device.

        Plain ``generate`` and the fast decode path both start from these, so they see the same prompt.
        """
        reference = prompt.tensors["audio"].detach().to("cpu", torch.float32).numpy()
        conversations = [_conversation(plain_text(text, loaded.processor.tokenizer), reference) for text in texts]
        return loaded.processor.apply_chat_template(
            conversations, tokenize=True, return_dict=True, return_tensors="pt",
            # Left padding: a batch of chunks of different lengths must all end where generation starts.
            processor_kwargs={"padding": True, "padding_side": "left"},
        ).to(loaded.device, loaded.dtype)

    def generate(self, loaded: LoadedModel, prompt: VoicePrompt, texts: list[str],
                 max_frames: int | None = None) -> list[np.ndarray]:
        """One batch through ``model.generate``; every chunk gets the same reference voice.

        ``generate`` is given the prompt's embeddings rather than the recording, so it does not encode
        the reference again; they are what its own prefill computes (``prompt_embeds``).
        """
        inputs = self.prompt_inputs(loaded, prompt, texts)
        budget = max_frames if max_frames is not None else max(self.frames_for_text(t) for t in texts)
        with torch.inference_mode():
            latents = reference_latents(loaded.model, prompt.tensors["latents"], len(texts))
            embeds = prompt_embeds(loaded.model, inputs, latents)
            audio = loaded.model.generate(input_ids=inputs["input_ids"], inputs_embeds=embeds,
                                          attention_mask=inputs["attention_mask"], max_new_tokens=budget)
        return [_waveform(a) for a in audio]


def encode_reference(loaded: LoadedModel, values: torch.Tensor) -> torch.Tensor:
    """The acoustic encoder's latents (1, frames, 64) of the feature extractor's ``values``, without noise,
    on the compute device in its dtype.

    The encoder is causal: a reference longer than the family's ``encode_piece_seconds`` is encoded a
    piece at a time through its padding cache (the latents of the whole, up to float rounding), which
    bounds the activations the planner counts. The input goes to the compute device in the compute dtype,
    as ``generate`` would hand it over; an encoder the plan keeps on the CPU takes it from there
    (``executors.base.on_cpu_island``).
    """
    tower = loaded.model.model.audio_tower
    hop = tower.config.hop_length
    piece = int(ADAPTER.facts.encode_piece_seconds * ADAPTER.sample_rate) // hop * hop
    pieces = values.split(piece, dim=-1)
    cache = PaddingCache() if len(pieces) > 1 else None
    latents = [tower.encode(p.to(loaded.device, loaded.dtype), padding_cache=cache, use_cache=cache is not None,
                            sample=False).latents.to(loaded.device, loaded.dtype) for p in pieces]
    # Joined in the encoder's own layout (channels by frames, its output a transposed view): the noise
    # ``randn_like`` draws follows a tensor's layout, so this is the tensor ``generate`` would add it to.
    return torch.cat([part.transpose(1, 2) for part in latents], dim=2).transpose(1, 2)


def reference_latents(model, latents: torch.Tensor, rows: int) -> torch.Tensor:
    """A voice prompt's ``latents`` for ``rows`` chunks with the sigma-VAE noise ``audio_tower.encode``
    adds when sampling: a scale per row from N(0, ``vae_std``), then Gaussian noise, drawn from torch's
    generator in that order on the latents' device, as ``generate`` draws them for a batch of ``rows``."""
    latents = latents.expand(rows, -1, -1)
    scale = model.model.audio_tower.config.vae_std * torch.randn(rows, device=latents.device, dtype=latents.dtype)
    return latents + scale[:, None, None] * torch.randn_like(latents)


def prompt_embeds(model, inputs, latents: torch.Tensor) -> torch.Tensor:
    """Text embeddings with ``latents`` (noisy, one row per chunk) in the audio placeholders, as the
    model's forward places them (``get_audio_features``, then ``masked_scatter``)."""
    inner, config = model.model, model.config
    features = (latents + inner.latent_bias_factor) * inner.latent_scaling_factor
    frames = torch.ceil(inputs["padding_mask"].sum(dim=-1) / config.audio_config.hop_length).to(torch.int64)
    kept = torch.arange(features.shape[1], device=frames.device) < frames[:, None]
    audio = inner.multi_modal_projector(features)[kept.to(features.device)]
    ids = inputs["input_ids"]
    embeds = model.get_input_embeddings()(ids)
    placeholders = (ids == config.audio_token_id)[..., None].expand_as(embeds)
    return embeds.masked_scatter(placeholders, audio.to(embeds))


def _conversation(text: str, reference: np.ndarray) -> list[dict]:
    """One speaker turn with its voice sample.

    Whitespace is collapsed: the template writes one ``Speaker N: text`` line per turn, and a newline
    inside the text would start a script line with no speaker.
    """
    return [{"role": SPEAKER, "content": [{"type": "text", "text": " ".join(text.split())},
                                          {"type": "audio", "audio": reference}]}]


def _waveform(audio: torch.Tensor | None) -> np.ndarray:
    """A chunk's generated audio as mono float32; a chunk that ended before any frame is empty."""
    if audio is None:
        return np.zeros(0, dtype=np.float32)
    return audio.detach().to("cpu", torch.float32).numpy().reshape(-1)


def _config(text: dict, diffusion_intermediate_size: int) -> VibeVoiceConfig:
    """A released VibeVoice: Qwen2.5 text model, default acoustic (64-d) and semantic (128-d) tokenizers.

    The diffusion head is 4 layers of width ``hidden_size`` with a 3x feed-forward (``head_ffn_ratio``
    3.0 in the original configs); transformers copies the width from the text model but not the
    feed-forward size, so it is set here.
    """
    common = {"model_type": "qwen2", "num_hidden_layers": 28, "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6,
              "hidden_act": "silu"}
    return VibeVoiceConfig(text_config={**common, **text},
                           diffusion_head_config={"intermediate_size": diffusion_intermediate_size})


def vibevoice_1_5b_config() -> VibeVoiceConfig:
    """microsoft/VibeVoice-1.5B's config.json: Qwen2.5-1.5B (28 x 1536, tied embeddings)."""
    return _config({"hidden_size": 1536, "intermediate_size": 8960, "num_attention_heads": 12,
                    "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 65536,
                    "tie_word_embeddings": True}, diffusion_intermediate_size=3 * 1536)


def vibevoice_7b_config() -> VibeVoiceConfig:
    """vibevoice/VibeVoice-7B's config.json: Qwen2.5-7B (28 x 3584, untied embeddings)."""
    return _config({"hidden_size": 3584, "intermediate_size": 18944, "num_attention_heads": 28,
                    "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 32768,
                    "tie_word_embeddings": False}, diffusion_intermediate_size=3 * 3584)


ADAPTER = VibeVoiceAdapter()
