"""Sesame CSM (Conversational Speech Model) through transformers' CsmForConditionalGeneration.

CSM clones a voice from conversational context: the reference recording becomes an earlier turn of
speaker 0 (its transcript, then its Mimi codes), and the text to speak is the next turn of the same
speaker. Each generated frame is one backbone step (codebook 0) plus a depth-decoder pass for the
other 31 codebooks; Mimi turns the frames into 24 kHz audio.

``generate`` does what ``processor.apply_chat_template(...)`` + ``model.generate(**inputs)`` do, with
one change: the reference is encoded by Mimi once, in ``build_voice_prompt``, and its codes are
embedded here, where transformers would re-encode the recording for every chunk of every batch.
The result is bit-identical to the plain transformers call (tests/test_csm.py checks it).
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import CsmConfig, CsmForConditionalGeneration, CsmProcessor

from inference.adapters.base import Component, LoadedModel, ModelAdapter, VoicePrompt
from inference.adapters.tokens import plain_text
from inference.audio import resample
from inference.families import FAMILIES

SPEAKER = "0"  # the cloned voice's speaker id: the context turn and the target turn both use it


class CsmAdapter(ModelAdapter):
    facts = FAMILIES["csm"]  # 24 kHz: Mimi's rate, which CsmProcessor hard-codes
    model_class = CsmForConditionalGeneration
    processor_class = CsmProcessor

    def components(self, config: CsmConfig) -> list[Component]:
        """Parts by module path; each parameter is listed once.

        ``backbone_model`` also holds the audio-codebook embedding table (its ``embed_tokens``),
        which the depth decoder's ``model.embed_tokens`` shares by weight tying; the depth decoder
        component therefore lists its own sub-modules without that table. ``lm_head`` (codebook 0)
        sits with the depth decoder: generate sends inputs to ``model.device``, the device of the
        first parameter, which is ``lm_head``'s; the depth decoder's ``generate`` is called from the
        parent's sampling loop, outside any forward, 31 times per frame.
        """
        depth = ("depth_decoder.model.layers", "depth_decoder.model.norm", "depth_decoder.model.rotary_emb",
                 "depth_decoder.model.inputs_embeds_projector", "depth_decoder.codebooks_head")
        part = self.facts.component
        return [
            part("text_embeddings", ("embed_text_tokens",)),
            part("backbone", ("backbone_model",), layers_path="backbone_model.layers"),
            part("depth_decoder", ("lm_head", *depth)),
            part("codec", ("codec_model",)),
        ]

    def build_voice_prompt(self, loaded: LoadedModel, audio: np.ndarray, sample_rate: int,
                           transcript: str | None) -> VoicePrompt:
        """Mimi codes of the reference, (frames, codebooks), plus its transcript.

        Without a transcript the context turn carries empty text: the processor and model accept it
        and the voice still comes through the codes, but the model cannot align the recording with
        words, so cloning is weaker.
        """
        model, processor = loaded.model, loaded.processor
        audio = resample(np.asarray(audio, dtype=np.float32), sample_rate, self.sample_rate)
        values = processor.feature_extractor(audio, sampling_rate=self.sample_rate,
                                             return_tensors="pt")["input_values"]
        codec = model.codec_model
        values = values.to(_device_of(codec, loaded), next(codec.parameters()).dtype)
        with torch.inference_mode():
            codes = codec.encode(values).audio_codes
        frames = codes[0].transpose(0, 1).to(loaded.device)
        text = plain_text(transcript or "", processor.tokenizer)
        return VoicePrompt(self.family, {"codes": frames}, text, {"speaker": SPEAKER})

    def generate(self, loaded: LoadedModel, prompt: VoicePrompt, texts: list[str],
                 max_frames: int | None = None) -> list[np.ndarray]:
        model = loaded.model
        budget = max_frames or max(self.frames_for_text(text) for text in texts)
        with torch.inference_mode():
            embeds, attention_mask = self.prompt_inputs(loaded, prompt, texts)
            sequences = model.generate(inputs_embeds=embeds, attention_mask=attention_mask,
                                       max_new_tokens=budget)
            return [self._decode(loaded, frames) for frames in sequences]

    def prompt_inputs(self, loaded: LoadedModel, prompt: VoicePrompt,
                      texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The backbone's input embeddings and attention mask for a batch of chunks (left-padded).

        Plain ``generate`` and the fast decode path both start from these, so they see the same prompt.
        """
        input_ids, attention_mask = self._tokenize(loaded, prompt, texts)
        return self._inputs_embeds(loaded, input_ids, attention_mask, prompt.tensors["codes"]), attention_mask

    def _tokenize(self, loaded: LoadedModel, prompt: VoicePrompt,
                  texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids as CsmProcessor makes them: chat template, one audio token per reference frame."""
        processor = loaded.processor
        n_frames = prompt.tensors["codes"].shape[0]
        speaker = prompt.extra.get("speaker", SPEAKER)
        rendered = []
        for text in texts:
            context = [{"type": "text", "text": prompt.transcript or ""}, {"type": "audio"}]
            target = [{"type": "text", "text": plain_text(text, processor.tokenizer)}]
            conversation = [{"role": speaker, "content": context}, {"role": speaker, "content": target}]
            template = processor.apply_chat_template(conversation, tokenize=False)
            rendered.append(template.replace(processor.audio_token, processor.audio_token * n_frames))
        encoding = processor.tokenizer(rendered, padding=True, padding_side="left", add_special_tokens=False,
                                       return_tensors="pt")
        return encoding["input_ids"].to(loaded.device), encoding["attention_mask"].to(loaded.device)

    def _inputs_embeds(self, loaded: LoadedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       codes: torch.Tensor) -> torch.Tensor:
        """Text embeddings with the reference's frames and the audio-eos frame put in place.

        The same arithmetic as ``CsmForConditionalGeneration._merge_input_ids_with_input_values``,
        from codes instead of raw audio.
        """
        model, config = loaded.model, loaded.model.config
        embeds = _embed(model.embed_text_tokens, input_ids, loaded)
        audio_rows = (input_ids == config.audio_token_id) & attention_mask.bool()
        frames = _embed(model.backbone_model.embed_tokens, codes.unsqueeze(0), loaded)[0]
        embeds[audio_rows] = frames.repeat(input_ids.shape[0], 1)
        eos_frame = torch.full((1, 1, config.num_codebooks), config.codebook_eos_token_id, dtype=torch.long)
        embeds[input_ids == config.audio_eos_token_id] = _embed(model.backbone_model.embed_tokens, eos_frame,
                                                                loaded)[0, 0]
        return embeds

    def _decode(self, loaded: LoadedModel, frames: torch.Tensor) -> np.ndarray:
        """Mimi-decode one sequence of (frames, codebooks) codes up to its end-of-audio frame.

        Generation stops a sequence at the first frame whose codebooks but the last are all the
        end-of-audio code; transformers' ``output_audio`` only cuts at all-codebook matches, so it
        can decode that frame and, in a batch, whatever the sequence sampled after it. Cutting by
        the stopping rule keeps those out.
        """
        model = loaded.model
        eos = model.config.codebook_eos_token_id
        ended = (frames[:, :-1] == eos).all(dim=-1).nonzero()
        if ended.numel():
            frames = frames[: int(ended[0, 0])]
        if frames.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        codec = model.codec_model
        # Codes past the codebook (the backbone's special ids; a broken or random checkpoint samples them) are
        # clamped as the fast path's decoder does (``fastpath.codec``), rather than failing the chunk.
        frames = frames.clamp(0, codec.config.codebook_size - 1)
        audio = codec.decode(frames.transpose(0, 1).unsqueeze(0).to(_device_of(codec, loaded))).audio_values
        return audio[0, 0].float().cpu().numpy()


def _device_of(module: torch.nn.Module, loaded: LoadedModel) -> torch.device:
    """Where a module computes: the codec or an embedding may live apart from the compute device.

    Weights on the meta device are held elsewhere by accelerate hooks that copy them to the compute
    device for each call.
    """
    device = next(module.parameters()).device
    return loaded.device if device.type == "meta" else device


def _embed(module: torch.nn.Module, ids: torch.Tensor, loaded: LoadedModel) -> torch.Tensor:
    """Run an embedding where it computes and bring the result to the compute device and dtype."""
    return module(ids.to(_device_of(module, loaded))).to(loaded.device, loaded.dtype)


def csm_1b_config() -> CsmConfig:
    """sesame/csm-1b: Llama backbone 16x2048, depth decoder 4x1024, 32 codebooks of 2051, Mimi codec.

    CsmConfig's defaults are CSM-1B's; the codec default is kyutai/mimi's config. The RoPE scaling
    is what transformers' conversion script writes (Llama-3 scaling rescaled to 2048 / 33 positions).
    """
    def llama3_rope(high: float, low: float, original: int) -> dict:
        return {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "high_freq_factor": high,
                "low_freq_factor": low, "original_max_position_embeddings": original}

    return CsmConfig(rope_parameters=llama3_rope(0.5, 0.125, 1024),
                     depth_decoder_config={"rope_parameters": llama3_rope(0.0078125, 0.001953125, 16)})


ADAPTER = CsmAdapter()
