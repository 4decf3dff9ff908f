"""VibeVoice decoding with one static cache for the guidance pair and one CUDA-graph replay per frame.

A VibeVoice frame (133 ms of audio) is: pick the next token among the four the model may emit; run
the diffusion head ``num_diffusion_steps`` times on the conditioned and the unconditioned state
(classifier-free guidance) to draw the frame's acoustic latent; decode it to 3200 samples with the
streaming acoustic decoder; encode those samples again with the streaming semantic encoder; feed
both back as the next input of the two language-model branches. transformers' ``generate`` makes
each of these separate Python calls, thousands of small kernels per frame (168 ms per frame for the
1.5B on an H100: slower than real time). Here the frame is one function over preallocated tensors,
captured once and replayed:

- the conditioned and the unconditioned ("negative") rows of every chunk step together, 2 x batch
  rows of one ``CachedStack``; negative rows start from a lone audio-start token, as in ``generate``;
- the token choice reads only the four allowed rows of the LM head (``generate`` masks every other
  logit to -inf), not the whole vocabulary, and breaks ties the same way (lowest token id);
- the noise scheduler is a private copy of the checkpoint's own (diffusers' DPM-Solver); its
  coefficients are the same every frame, so its Python runs once at capture and replays as kernels;
- the codecs' streaming padding caches are transformers' own: fixed buffers updated in place.

A chunk is one speech segment: a row ends at the first token that is not an audio frame (end of
speech or of text) or at its frame budget. ``generate`` would let a model that ended its speech open
a new segment in the same chunk; a single-speaker narration chunk has one.

Noise: a row's diffusion noise is ``sampling.normal`` of (chunk seed, frame), so a chunk's audio does
not depend on its batch, and the sigma-VAE noise of its reference encoding comes from torch's
generator seeded with the chunk seed, as ``generate`` draws it for a batch of one. ``noise="torch"``
(eager steps only) draws the diffusion noise from torch's generator exactly as ``generate`` does,
which is how the tests compare the two.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from transformers.models.vibevoice_acoustic_tokenizer.modeling_vibevoice_acoustic_tokenizer import (
    VibeVoiceAcousticTokenizerConv1dPaddingCache as PaddingCache,
)

from inference.adapters.vibevoice import prompt_embeds, reference_latents
from inference.fastpath.frames import FrameBlock, GraphedDecoder
from inference.fastpath.graphs import StepRunner
from inference.fastpath.layers import FastLayer
from inference.fastpath.sampling import normal
from inference.fastpath.stack import CachedStack, ModelStack

POSITION_ALIGN = 64


def noise_scheduler(model):
    """A private instance of the scheduler ``generate`` would build from the checkpoint's generation config."""
    generation = model.generation_config
    scheduler = getattr(generation, "noise_scheduler", None)
    if scheduler is not None:
        return copy.deepcopy(scheduler)
    return model._build_default_noise_scheduler(generation)


def _ids(value) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


class VibeVoiceFastDecoder(GraphedDecoder):
    """Static-cache, graph-replayed decoding of a VibeVoiceForConditionalGeneration for up to
    ``batch_size`` chunks of ``capacity`` positions (prompt plus frames) each, sized by the plan."""

    def __init__(self, model, batch_size: int, capacity: int, use_graph: bool | None = None,
                 check_every: int = 8, noise: str = "counter", model_step: bool = False,
                 codec_step: bool | None = None):
        if noise not in ("counter", "torch"):
            raise ValueError(f"unknown noise source {noise!r}")
        config, generation = model.config, model.generation_config
        self.model, self.inner = model, model.model
        self.text = self.inner.language_model
        self.dtype = self.text.embed_tokens.weight.dtype
        self.device = self.text.embed_tokens.weight.device
        self.audio_token = config.audio_token_id
        self.audio_bos = config.audio_bos_token_id
        allowed = sorted({config.audio_bos_token_id, config.audio_eos_token_id, config.audio_token_id,
                          *_ids(config.eos_token_id)})
        self.allowed = torch.tensor(allowed, device=self.device)
        self.choice_weight = model.lm_head.weight.detach()[self.allowed].clone()
        self.scheduler = noise_scheduler(model)
        self.steps = getattr(generation, "num_diffusion_steps", None) or 10
        self.guidance = generation.guidance_scale if generation.guidance_scale is not None else 1.0
        self.latent_size = config.diffusion_head_config.latent_size
        self.samples_per_frame = config.audio_config.hop_length
        # model_step: the LM's layers belong to an offload executor; fusing them would unbind it
        self.model_step = model_step
        # codec_step: the towers' layers stream too (their weights are not on the device between frames), so
        # decoding and re-encoding the frame run eagerly with the language model; None: look
        self.codec_step = model_step and (not self._towers_resident() if codec_step is None else codec_step)
        self.layers = [] if model_step else [FastLayer(layer) for layer in self.text.layers]
        self.check_every = check_every
        self.noise = noise
        self._use_graph = False if noise == "torch" else use_graph
        if noise == "torch" and use_graph:
            raise ValueError("torch's generator cannot be replayed in a CUDA graph: use noise='counter'")
        self.runner: StepRunner | None = None
        self._allocate(batch_size, capacity)

    # ----------------------------------------------------------------------------------- memory
    def _allocate(self, batch: int, capacity: int) -> None:
        self.batch = batch
        self.capacity = -(-capacity // POSITION_ALIGN) * POSITION_ALIGN
        dev = self.device
        if self.model_step:
            self.stack = ModelStack(self.text, 2 * batch, self.capacity, dev)
        else:
            self.stack = CachedStack(self.layers, self.text.norm, self.text.rotary_emb, 2 * batch,
                                     self.capacity, self.dtype, dev)
        self.hidden = torch.zeros(2 * batch, self.text.config.hidden_size, dtype=self.dtype, device=dev)
        self.next_embeds = torch.zeros(batch, self.text.config.hidden_size, dtype=self.dtype, device=dev)
        self.audio_out = torch.zeros(batch, self.capacity, self.samples_per_frame, dtype=self.dtype, device=dev)
        self.latent = torch.zeros(batch, self.latent_size, dtype=self.dtype, device=dev)
        self.acoustic_cache, self.semantic_cache = PaddingCache(), PaddingCache()
        self.scheduler.set_timesteps(num_inference_steps=self.steps)
        # generate hands the diffusion head each timestep in the latents' dtype (bf16 rounds 999 to 1000)
        self.timestep_rows = [t.repeat(2 * batch).to(dev, self.dtype) for t in self.scheduler.timesteps]
        self.allocate_stop_state(batch, dev)
        self.build_runner(dev)

    @property
    def nbytes(self) -> int:
        """Device memory of the caches and buffers (the graph's private pool comes on top)."""
        buffers = sum(t.numel() * t.element_size() for t in (self.hidden, self.audio_out))
        return self.stack.nbytes + buffers

    # ---------------------------------------------------------------------------------- one frame
    def _towers_resident(self) -> bool:
        """Whether the acoustic decoder and the semantic encoder hold every weight on the compute device
        (a streamed layer points at its host copy outside its forward)."""
        towers = (self.inner.audio_tower.decoder, self.inner.semantic_tokenizer_encoder)
        return all(p.device == self.device for tower in towers for p in tower.parameters())

    def _head(self) -> None:
        """Choose and draw one frame per row, then (towers resident) decode and re-encode it."""
        cond, uncond = self.hidden[:self.batch], self.hidden[self.batch:]
        choice = self.allowed[F.linear(cond, self.choice_weight).float().argmax(dim=-1)]
        self.latent.copy_(self._diffuse(cond, uncond))
        self.update_stop_state(choice != self.audio_token)
        if not self.codec_step:
            self._render()

    def _render(self) -> None:
        """Decode the frame's latent to samples and re-encode them: ``next_embeds`` is the LM's next input."""
        audio, embeds = self._codec(self.latent)
        self.audio_out.index_copy_(1, self.frame, audio[:, None])
        self.next_embeds.copy_(embeds)

    def _eager(self) -> None:
        """Outside the graph with ``model_step``: the towers (when they stream), then the language model."""
        if self.codec_step:
            self._render()
        self._tail()

    def _tail(self) -> None:
        """Both branches consume the frame: the conditioned and the unconditioned state of the next one."""
        self.hidden.copy_(self.stack.step(torch.cat([self.next_embeds, self.next_embeds])[:, None]))
        self.stack.advance()
        self.frame += 1

    def _diffuse(self, cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
        """One acoustic latent per row: the guided denoising loop of ``generate``'s ``_sample_audio_latent``.

        ``generate`` carries a second, unused half of noise through the scheduler; every scheduler
        operation is elementwise, so stepping only the used half gives the same values.
        """
        condition = torch.cat([cond, uncond])
        latent = self._noise().to(self.dtype)
        scheduler = self.scheduler
        scheduler.set_timesteps(num_inference_steps=self.steps)
        for timestep, rows in zip(scheduler.timesteps, self.timestep_rows, strict=True):
            eps = self.inner.diffusion_head(torch.cat([latent, latent]), rows, condition=condition)
            cond_eps, uncond_eps = eps.split(self.batch)
            guided = uncond_eps + self.guidance * (cond_eps - uncond_eps)
            latent = scheduler.step(guided, timestep, latent).prev_sample
        return latent

    def _noise(self) -> torch.Tensor:
        if self.noise == "torch":  # generate's draw: randn for both halves, on the host
            return torch.randn(2 * self.batch, self.latent_size)[:self.batch].to(self.device)
        return normal(self.seeds, self.frame, self.latent_size)

    def _codec(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples (rows, 3200) of the frame, and the next LM input (rows, hidden) made from it."""
        inner, latent = self.inner, latent[:, None]
        scaled = latent / inner.latent_scaling_factor - inner.latent_bias_factor
        audio = inner.audio_tower.decode(scaled, padding_cache=self.acoustic_cache, use_cache=True).audio
        semantic = inner.semantic_tokenizer_encoder(audio, padding_cache=self.semantic_cache,
                                                    use_cache=True).latents
        embeds = inner.multi_modal_projector(latent) + inner.semantic_connector(semantic)
        return audio[:, 0], embeds[:, 0]

    # ------------------------------------------------------------------------------------ request
    def _prompt_embeds(self, inputs, seeds: list[int], reference: torch.Tensor) -> torch.Tensor:
        """Text embeddings with the reference's latents (the voice prompt's, encoded once per voice) in the
        audio placeholders, as the model's forward makes them: each row adds its own sigma-VAE noise, drawn
        from torch's generator seeded with the row's seed exactly as ``generate`` draws it for one row."""
        noisy = []
        for seed in seeds:
            torch.manual_seed(seed)
            noisy.append(reference_latents(self.model, reference, 1))
        return prompt_embeds(self.model, inputs, torch.cat(noisy))

    def _start(self, inputs, seeds: list[int], max_frames: list[int], reference: torch.Tensor) -> int:
        """Prefill both branches for a request; rows beyond it repeat row 0 and start finished."""
        embeds, mask = self._prompt_embeds(inputs, seeds, reference), inputs["attention_mask"]
        rows = mask.shape[0]
        embeds, mask = self.fit_request(embeds, mask, max_frames)
        # Negative rows: the audio-start token alone, at position 0 (left-padded to the prompt's length).
        negative = self.text.embed_tokens(torch.full_like(mask, self.audio_bos))
        negative_mask = torch.zeros_like(mask)
        negative_mask[:, -1] = 1
        both = torch.cat([embeds, negative]).to(self.device, self.dtype)
        self.hidden.copy_(self.stack.prefill(both, torch.cat([mask, negative_mask]).to(self.device)))
        for cache in (self.acoustic_cache, self.semantic_cache):
            for layer in cache.layers.values():
                layer.cache.zero_()
        self.reset_stop_state(seeds, max_frames, never=self.capacity)
        return rows

    # --------------------------------------------------------------------------------- decoding
    def stream(self, inputs, seeds: list[int], max_frames: list[int], reference: torch.Tensor,
               first_block: int = 2) -> Iterator[FrameBlock]:
        """Decode, yielding every row's new samples (rows, frames, 3200) every ``check_every`` frames.

        ``reference`` is the voice prompt's acoustic latents (1, frames, 64), before the sigma-VAE noise.
        """
        rows = self._start(inputs, seeds, max_frames, reference)
        yield from self.blocks(self.audio_out, rows, max(max_frames), first_block)
