"""Pocket TTS decoding with a static KV cache and a lean step loop: the CPU tier.

On two CPU cores a Pocket TTS frame is bound by reading the backbone's weights (75M parameters),
and transformers' ``generate`` adds a few milliseconds of cache concatenation, mask building and
Python per frame on top. Here the prompt, embedded as the model embeds it (the voice latents and the
learnt BOS latent in their placeholders), is prefilled through the same fast layers as the frames
(int8 projections on the CPU tier) into a cache allocated once, the voice's keys and values kept for
the next chunks in that voice (benchmarks/cpu_tier_parts.py: prefill). Each frame is: the backbone
step on the previous latent, the end-of-speech logit, and the flow head (``FastFlowHead``) with its
(constant) flow-time embeddings computed once instead of every frame. The end-of-speech rule is
transformers' ``PocketTTSEosThresholdCriteria``, per row.

The cache and its step are the shared ``CachedStack``, the per-row stop state and block loop the
shared ``StopState``, the flow noise ``sampling.normal`` of (chunk seed, frame). On the CPU the cache
is read only up to the current position (shapes may change there) and the stop flags are read every
frame (they are in host memory); the frame function stays free of host synchronisation, so it could
be graph-captured like CSM's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from inference.fastpath.frames import FrameBlock, StopState
from inference.fastpath.layers import FastLayer, fuse_linears, projection
from inference.fastpath.sampling import normal
from inference.fastpath.stack import CachedStack

_GENERATION_DEFAULTS = {"num_flow_steps": 1, "eos_threshold": -4.0, "min_frames_before_eos": 6}


def _setting(config, key: str):
    value = getattr(config, key, None)
    return _GENERATION_DEFAULTS[key] if value is None else value


class PocketFastDecoder(StopState):
    """Static-cache decoding of a PocketTTSForConditionalGeneration for up to ``batch_size`` chunks."""

    stop_checks_every_frame = True

    def __init__(self, model, batch_size: int, capacity: int, weight_dtype: torch.dtype | None = None):
        """``weight_dtype`` (e.g. bf16 on a CPU) stores the backbone's projections in that dtype: see
        ``FastLayer``; int8 (``torch.qint8``) the flow head's too. Activations and norms keep the model's dtype."""
        self.model = model
        self.inner = model.model
        config, generation = model.config, model.generation_config
        self.latent_dim = config.latent_dim
        self.layers = [FastLayer(layer, weight_dtype) for layer in self.inner.layers]
        self.flow_head = FastFlowHead(model.flow_head, weight_dtype if weight_dtype == torch.qint8 else None)
        self.dtype = self.inner.audio_latent_proj.weight.dtype
        self.device = self.inner.audio_latent_proj.weight.device
        self.noise_scale = math.sqrt(generation.temperature or 1.0) if generation.do_sample else 0.0
        self.flow_steps = int(_setting(generation, "num_flow_steps"))
        self.eos_threshold = float(_setting(generation, "eos_threshold"))
        self.min_frames_before_eos = int(_setting(generation, "min_frames_before_eos"))
        self.drifting = config.flow_head_config.flow_type == "drifting"
        self.time_terms = self._time_terms()
        self.check_every = 8
        self.runner = self._frame
        self._voice: tuple | None = None  # ((prefix ids, voice latents), keys, values) of the last voice
        self.reused = 0
        self._allocate(batch_size, capacity)

    def _allocate(self, batch: int, capacity: int) -> None:
        self.batch, self.capacity = batch, capacity
        self.stack = CachedStack(self.layers, self.inner.norm, self.inner.rotary_emb, batch, capacity,
                                 self.dtype, self.device)

    @property
    def nbytes(self) -> int:
        kept = 0 if self._voice is None else sum(t.numel() * t.element_size() for t in self._voice[1:])
        return self.stack.nbytes + kept

    @torch.no_grad()
    def _time_terms(self) -> list[torch.Tensor | None]:
        """What each flow step adds to the condition: the mean of its start- and end-time embeddings.

        The flow times are the same every frame (step / steps, (step + 1) / steps), so transformers'
        per-frame recomputation (two sinusoidal MLPs per step) is done once here.
        """
        if self.drifting:
            return [None]
        head = self.model.flow_head
        terms = []
        for step in range(self.flow_steps):
            times = [torch.full((1, 1), t / self.flow_steps, device=self.device, dtype=self.dtype)
                     for t in (step, step + 1)]
            pairs = zip(head.timestep_embeddings, times, strict=True)
            embedded = sum(embedding(time) for embedding, time in pairs)
            terms.append(embedded / len(times))
        return terms

    # ------------------------------------------------------------------------------- one frame
    def _flow(self, condition: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``sample_latent``: Euler steps of the flow head from ``noise``, conditioned on the backbone."""
        head = self.flow_head
        projected = head.cond_proj(condition)
        if self.drifting:
            return head(noise, projected)
        latents = noise
        for term in self.time_terms:
            latents = latents + head(latents, projected + term) / self.flow_steps
        return latents

    def _noise(self) -> torch.Tensor:
        """The frame's Gaussian noise for every row, scaled by sqrt(temperature); none when greedy."""
        rows = self.condition.shape[0]
        if self.noise_scale == 0.0:
            return torch.zeros(rows, self.latent_dim, device=self.device, dtype=self.dtype)
        return (normal(self.seeds[:rows], self.frame, self.latent_dim) * self.noise_scale).to(self.dtype)

    def _frame(self) -> None:
        """One frame: end-of-speech logit and flow latent from the condition, then the backbone on that
        latent for the next frame's condition."""
        condition = self.condition
        eos_logit = self.model.eos_head(condition)[:, 0].float()
        latent = self._flow(condition, self._noise())
        self.latents.index_copy_(1, self.frame, latent[:, None])
        ended = (eos_logit > self.eos_threshold) & (self.frame >= self.min_frames_before_eos)
        self.update_stop_state(ended, keep=1 + self.after_eos)
        self.length += 1
        self.condition = self.stack.step(self.inner.embed_audio_latents(latent)[:, None], self.length)
        self.stack.advance()
        self.frame += 1

    # ---------------------------------------------------------------------------------- prefill
    def _prefill(self, inputs: dict, max_frames: int) -> torch.Tensor:
        """The prompt through the fast layers (int8 where the frames are): the model's own embeddings of the
        text, the voice latents and the BOS latent (``prompt_embeds``), then the stack's prefill.

        The voice comes first in every prompt and attends to nothing after it, so its keys and values are
        the same for every chunk read in that voice: the first prefill runs it alone and keeps them, the next
        ones copy them into the cache and prefill only the text (where no row is padded: a padded row's voice
        sits elsewhere). ``reused`` says how many positions the last prefill took over.
        """
        mask = inputs["attention_mask"]
        rows, seq = mask.shape
        if rows > self.batch or seq + max_frames > self.capacity:
            self._allocate(max(rows, self.batch), seq + max_frames)
        self.length = seq
        embeds, voice = prompt_embeds(self.inner, inputs), _shared_voice(self.inner.config, inputs)
        self.reused = start = self._restore_voice(voice, rows) if voice is not None else 0
        if voice is not None and not start:  # the voice alone first, so a chunk computes the same either way
            start = len(voice[0])
            self.stack.prefill(embeds[:, :start], mask[:, :start])
            cache = self.stack.cache
            self._voice = (voice, cache.k[:, 0, :, :start].clone(), cache.v[:, 0, :, :start].clone())
        return self.stack.prefill(embeds[:, start:], mask, start)

    def _restore_voice(self, voice: tuple[torch.Tensor, torch.Tensor], rows: int) -> int:
        """Copy the kept voice's keys and values into the first rows of the cache; how many positions (0: another
        voice, or none kept)."""
        if self._voice is None:
            return 0
        (ids, latents), keys, values = self._voice
        if not (torch.equal(ids, voice[0]) and torch.equal(latents, voice[1])):
            return 0
        positions = ids.shape[0]
        self.stack.cache.k[:, :rows, :, :positions] = keys[:, None]
        self.stack.cache.v[:, :rows, :, :positions] = values[:, None]
        return positions

    # --------------------------------------------------------------------------------- decoding
    def generate(self, inputs: dict, seeds: list[int], max_frames: int) -> list[torch.Tensor]:
        """Each row's normalised latents (frames, latent_dim), ended by the end-of-speech rule or the budget.

        ``inputs`` are PocketTTSProcessor outputs (left-padded), including ``frames_after_eos``.
        """
        for block in self.stream(inputs, seeds, max_frames, block=max_frames):
            counts = block.lengths
        return [self.latents[row, :count] for row, count in enumerate(counts)]

    def stream(self, inputs: dict, seeds: list[int], max_frames: int, block: int = 8,
               first_block: int = 2) -> Iterator[FrameBlock]:
        """Yield the latents produced every ``block`` frames (the first block sooner); a row's length is its
        frame count once it has ended (its end-of-speech tail included, as ``generate``'s mask counts
        them), its budget while it runs."""
        inputs = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        rows = inputs["attention_mask"].shape[0]
        self.condition = self._prefill(inputs, max_frames)
        after_eos = inputs.get("frames_after_eos")
        self.after_eos = torch.ones(rows, dtype=torch.long, device=self.device) if after_eos is None else after_eos
        self.allocate_stop_state(rows, self.device)
        self.reset_stop_state(seeds, [max_frames] * rows, never=self.capacity)
        self.latents = torch.zeros(rows, max_frames, self.latent_dim, dtype=self.dtype, device=self.device)
        self.check_every = block
        yield from self.blocks(self.latents, rows, max_frames, first_block)


class FastFlowHead:
    """Pocket TTS's flow head over the model's own weights, one evaluation per call, in fewer kernels.

    Every adaptive-norm projection of an evaluation (three chunks per residual block, two for the final
    layer) reads the same input, the condition through the head's activation (``config.hidden_act``
    everywhere): the seven run as one matmul over their fused weights (``fuse_linears``). The norms are
    ``F.layer_norm`` (transformers writes them out for training's forward-mode gradients: seven kernels).
    Projections are stored in ``weight_dtype`` as ``FastLayer``'s (int8 on the CPU tier); with int8, 0.6x
    the time of ``int8_linears`` over the model's head (benchmarks/cpu_tier_parts.py, flow head).
    """

    def __init__(self, head, weight_dtype: torch.dtype | None = None):
        blocks, final = list(head.layers), head.final_layer
        adaptive = [block.adaln_proj for block in blocks] + [final.adaln_proj]
        self.chunks = [block.num_chunks for block in blocks] + [final.num_chunks]
        self.widths = [p.out_features for p in adaptive]
        self.adaptive = projection(*fuse_linears(adaptive), weight_dtype)
        self.cond_proj, self.input_proj, self.proj = (projection(m.weight, m.bias, weight_dtype)
                                                       for m in (head.cond_proj, head.input_proj, final.proj))
        self.blocks = [(projection(b.fc1.weight, b.fc1.bias, weight_dtype),
                        projection(b.fc2.weight, b.fc2.bias, weight_dtype), b.act_fn, b.norm) for b in blocks]
        self.final_act, self.final_norm = final.act_fn, final.norm

    def __call__(self, latents: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """The head's output for ``latents`` under an already projected ``condition`` (``cond_proj`` plus the
        flow times' term)."""
        modulations = self.adaptive(self.final_act(condition)).split(self.widths, dim=-1)
        hidden = self.input_proj(latents)
        for (fc1, fc2, act, norm), modulation, chunks in zip(self.blocks, modulations[:-1], self.chunks[:-1],
                                                             strict=True):
            shift, scale, gate = modulation.chunk(chunks, dim=-1)
            hidden = hidden + gate * fc2(act(fc1(_layer_norm(norm, hidden) * (1 + scale) + shift)))
        shift, scale = modulations[-1].chunk(self.chunks[-1], dim=-1)
        return self.proj(_layer_norm(self.final_norm, hidden) * (1 + scale) + shift)


def _layer_norm(norm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _shared_voice(config, inputs: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(prefix ids, voice latents) when every row starts with the same voice and none is padded: the ids up to
    the voice's last placeholder, and its latents. None otherwise."""
    ids, latents = inputs["input_ids"], inputs.get("audio_prompt_latents")
    latent_mask = inputs.get("audio_prompt_latents_mask")
    if latents is None or not bool(inputs["attention_mask"].all()):
        return None
    if latent_mask is not None and not bool(latent_mask.all()):
        return None
    placeholders = (ids[0] == config.audio_prompt_token_id).nonzero()
    if len(placeholders) == 0:
        return None
    prefix = ids[0, :int(placeholders[-1]) + 1]
    same_ids = torch.equal(ids[:, :len(prefix)], prefix.expand(len(ids), -1))
    if not (same_ids and torch.equal(latents, latents[:1].expand_as(latents))):
        return None
    return prefix.clone(), latents[0].clone()


def prompt_embeds(inner, inputs: dict) -> torch.Tensor:
    """(rows, seq, hidden) prompt embeddings as ``PocketTTSModel.forward`` builds them: token embeddings, the
    learnt BOS latent at the audio-BOS position, the voice latents (fp32 whatever the model's dtype) projected
    into the voice placeholders."""
    ids, config = inputs["input_ids"], inner.config
    embeds = inner.embed_tokens(ids)
    bos = inner.get_token_mask(ids, embeds, config.audio_bos_token_id)
    embeds = torch.where(bos, inner.embed_audio_latents(inner.bos_latent).to(embeds.dtype), embeds)
    voices = inputs.get("audio_prompt_latents")
    if voices is None:
        return embeds
    if inputs.get("audio_prompt_latents_mask") is not None:
        voices = voices[inputs["audio_prompt_latents_mask"].bool()]
    voices = inner.audio_prompt_proj(voices.to(inner.audio_prompt_proj.weight.dtype)).to(embeds.dtype)
    return embeds.masked_scatter(inner.get_placeholder_mask(ids, embeds, voices, config.audio_prompt_token_id), voices)
