"""VibeVoice (Microsoft): a Qwen2.5 language model that emits one acoustic latent per frame through a
diffusion head, with classifier-free guidance, decoded by a sigma-VAE acoustic tokenizer.

Run through transformers' native ``VibeVoiceForConditionalGeneration`` (no remote code). A voice is
cloned by placing the reference recording in the chat template as ``{"type": "audio"}`` next to the
text of the speaker it belongs to; the processor turns it into one audio placeholder per frame and
the model fills them with the acoustic tokenizer's latents.

Audio is 24 kHz at 7.5 frames per second (3200 samples per frame). Each frame runs the language
model twice (the conditioned sequence and the unconditioned one for guidance, each with its own KV
cache), the diffusion head ``num_diffusion_steps`` times (10 unless the checkpoint's generation
config says otherwise), the acoustic decoder and the semantic encoder once.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import VibeVoiceConfig, VibeVoiceForConditionalGeneration, VibeVoiceProcessor

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

        The diffusion head, both audio encoders and the connectors are pinned: generation calls
        ``audio_tower.decode`` / ``.encode`` (methods, so offload hooks never fire) and reads
        ``next(diffusion_head.parameters()).device`` outside any forward. With tied embeddings
        (1.5B) ``lm_head`` holds no tensor of its own, so it is listed only when untied (7B); the two
        scalar parameters ``model.latent_scaling_factor`` / ``latent_bias_factor`` belong to no
        submodule and are always moved to the latents' device by the generation code.
        """
        text = "model.language_model"
        embeddings = (f"{text}.embed_tokens",) + (() if config.tie_word_embeddings else ("lm_head",))
        part = self.facts.component
        return [
            part("embeddings", embeddings),
            # rotary_emb first: it is the one part of the Qwen2 model that carries the text config,
            # which the meta measurement reads from a backbone's first module (KV-cache geometry).
            part("backbone", (f"{text}.rotary_emb", f"{text}.layers", f"{text}.norm"), layers_path=f"{text}.layers"),
            part("diffusion_head", ("model.diffusion_head",)),
            part("acoustic_tokenizer", ("model.audio_tower",)),
            part("semantic_encoder", ("model.semantic_tokenizer_encoder",)),
            part("connectors", ("model.multi_modal_projector", "model.semantic_connector")),
        ]

    def build_voice_prompt(self, loaded: LoadedModel, audio: np.ndarray, sample_rate: int,
                           transcript: str | None) -> VoicePrompt:
        """Keep the reference as 24 kHz samples.

        The model encodes the reference inside ``generate`` and adds fresh sigma-VAE noise to its
        latents there (from the seeded generator), and the processor lays out each chunk's prompt from
        the recording's length; caching latents would change what the model does, so the recording
        itself is the reusable part.
        """
        mono = np.asarray(audio, dtype=np.float32).reshape(-1)
        if mono.size == 0:
            raise BadInputError("The reference recording is empty.")
        mono = resample(mono, sample_rate, self.sample_rate)
        return VoicePrompt(self.family, {"audio": torch.from_numpy(np.ascontiguousarray(mono))}, transcript)

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
        """One batch through ``model.generate``; every chunk gets the same reference voice."""
        inputs = self.prompt_inputs(loaded, prompt, texts)
        budget = max_frames if max_frames is not None else max(self.frames_for_text(t) for t in texts)
        with torch.inference_mode():
            audio = loaded.model.generate(**inputs, max_new_tokens=budget)
        return [_waveform(a) for a in audio]


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
