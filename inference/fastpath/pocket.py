"""Pocket TTS decoding with a static KV cache and a lean step loop: the CPU tier.

On two CPU cores a Pocket TTS frame is bound by reading the backbone's weights (75M parameters),
and transformers' ``generate`` adds a few milliseconds of cache concatenation, mask building and
Python per frame on top. Here the prompt is prefilled by the model itself (it places the voice
latents and the learnt BOS latent), its keys and values are copied into a cache allocated once,
and each frame is: the backbone step on the previous latent, the end-of-speech logit, and the
flow head with its (constant) flow-time embeddings computed once instead of every frame. The
end-of-speech rule is transformers' ``PocketTTSEosThresholdCriteria``, per row.

On the CPU the cache is read only up to the current position (shapes may change there); the
frame function stays free of host synchronisation, so it could be graph-captured like CSM's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from inference.fastpath.frames import FrameBlock
from inference.fastpath.layers import FastLayer, KVCache, rope_table
from inference.fastpath.sampling import uniform

_GENERATION_DEFAULTS = {"num_flow_steps": 1, "eos_threshold": -4.0, "min_frames_before_eos": 6}


def _setting(config, key: str):
    value = getattr(config, key, None)
    return _GENERATION_DEFAULTS[key] if value is None else value


class PocketFastDecoder:
    """Static-cache decoding of a PocketTTSForConditionalGeneration for up to ``batch_size`` chunks."""

    def __init__(self, model, batch_size: int, capacity: int, weight_dtype: torch.dtype | None = None):
        """``weight_dtype`` (e.g. bf16 on a CPU) stores the backbone's projections in that dtype: see
        ``FastLayer``; activations, norms, the flow head and the codec keep the model's dtype."""
        self.model = model
        self.inner = model.model
        config, generation = model.config, model.generation_config
        self.latent_dim = config.latent_dim
        self.layers = [FastLayer(layer, weight_dtype) for layer in self.inner.layers]
        self.dtype = self.inner.audio_latent_proj.weight.dtype
        self.device = self.inner.audio_latent_proj.weight.device
        self.noise_scale = math.sqrt(generation.temperature or 1.0) if generation.do_sample else 0.0
        self.flow_steps = int(_setting(generation, "num_flow_steps"))
        self.eos_threshold = float(_setting(generation, "eos_threshold"))
        self.min_frames_before_eos = int(_setting(generation, "min_frames_before_eos"))
        self.drifting = config.flow_head_config.flow_type == "drifting"
        self.time_terms = self._time_terms()
        self._allocate(batch_size, capacity)

    def _allocate(self, batch: int, capacity: int) -> None:
        self.batch, self.capacity = batch, capacity
        first = self.layers[0]
        self.cache = KVCache(len(self.layers), batch, first.kv_heads, capacity, first.head_dim, self.dtype,
                             self.device)
        self.cos, self.sin = rope_table(self.inner.rotary_emb, capacity, self.dtype, self.device)
        self.key_valid = torch.zeros(batch, capacity, dtype=torch.bool, device=self.device)

    @property
    def nbytes(self) -> int:
        return self.cache.nbytes

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
        head = self.model.flow_head
        if self.drifting:
            return head(noise, condition)
        latents = noise
        projected = head.cond_proj(condition)
        for term in self.time_terms:
            step_condition = projected + term
            hidden = head.input_proj(latents)
            for layer in head.layers:
                hidden = layer(hidden, step_condition)
            latents = latents + head.final_layer(hidden, step_condition) / self.flow_steps
        return latents

    def _step(self, latent: torch.Tensor) -> torch.Tensor:
        """The backbone on the previous latent at the next cache slot; returns the normed hidden state."""
        x = self.inner.embed_audio_latents(latent)[:, None]
        rows, slot = x.shape[0], self.slot
        self.key_valid[:rows, slot] = True
        length = slot + 1
        mask = self.key_valid[:rows, None, None, :length]
        cos, sin = self.cos[self.pos][:, None], self.sin[self.pos][:, None]
        for i, layer in enumerate(self.layers):
            q, k, v = layer.qkv(x, cos, sin)
            self.cache.k[i, :rows, :, slot] = k[:, 0]
            self.cache.v[i, :rows, :, slot] = v[:, 0]
            keys, values = self.cache.k[i, :rows, :, :length], self.cache.v[i, :rows, :, :length]
            x = layer.finish(x, layer.attend_one(q, keys, values, mask))
        self.slot += 1
        self.pos += 1
        return self.inner.norm(x)[:, 0]

    def _noise(self, seeds: torch.Tensor, frame: int) -> torch.Tensor:
        """Gaussian noise from the counter-based uniforms (Box-Muller), scaled by sqrt(temperature)."""
        if self.noise_scale == 0.0:
            return torch.zeros(len(seeds), self.latent_dim, device=self.device, dtype=self.dtype)
        u = uniform(seeds, torch.tensor([frame], device=self.device), 2, self.latent_dim)
        normal = torch.sqrt(-2.0 * torch.log(u[:, 0])) * torch.cos(2 * math.pi * u[:, 1])
        return (normal * self.noise_scale).to(self.dtype)

    # ---------------------------------------------------------------------------------- prefill
    def _prefill(self, inputs: dict, max_frames: int) -> torch.Tensor:
        """The prompt through the model's own forward (voice latents, BOS latent), copied into the cache."""
        mask = inputs["attention_mask"]
        rows, seq = mask.shape
        if rows > self.batch or seq + max_frames > self.capacity:
            self._allocate(max(rows, self.batch), seq + max_frames)
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        out = self.inner(input_ids=inputs["input_ids"], attention_mask=mask, position_ids=positions,
                         audio_prompt_latents=inputs.get("audio_prompt_latents"),
                         audio_prompt_latents_mask=inputs.get("audio_prompt_latents_mask"), use_cache=True)
        for i, layer in enumerate(out.cache.layers):
            self.cache.k[i, :rows, :, :seq] = layer.keys
            self.cache.v[i, :rows, :, :seq] = layer.values
        self.key_valid.zero_()
        self.key_valid[:rows, :seq] = mask.bool()
        self.slot, self.pos = seq, positions[:, -1] + 1
        return out.last_hidden_state[:, -1]

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
        condition = self._prefill(inputs, max_frames)
        seed_tensor = torch.tensor(seeds, device=self.device)
        after_eos = inputs.get("frames_after_eos")
        after_eos = torch.ones(rows, dtype=torch.long, device=self.device) if after_eos is None else after_eos
        remaining = torch.full((rows,), -1, dtype=torch.long, device=self.device)
        frames = torch.zeros(rows, dtype=torch.long, device=self.device)
        running = torch.ones(rows, dtype=torch.bool, device=self.device)
        self.latents = latents = torch.zeros(rows, max_frames, self.latent_dim, dtype=self.dtype,
                                             device=self.device)
        start, check = 0, min(first_block, max_frames)
        for frame in range(max_frames):
            eos_logit = self.model.eos_head(condition)[:, 0].float()
            latent = self._flow(condition, self._noise(seed_tensor, frame))
            latents[:, frame] = latent
            frames += running
            ended = (remaining < 0) & (eos_logit > self.eos_threshold) & (frame >= self.min_frames_before_eos)
            remaining = torch.where(ended, after_eos, remaining)
            running &= remaining != 0
            remaining = torch.where(remaining > 0, remaining - 1, remaining)
            done = not bool(running.any()) or frame + 1 == max_frames
            if frame + 1 == check or done:
                lengths = torch.where(running, max_frames, frames).tolist()  # running rows: their budget
                yield FrameBlock(start, frame + 1, latents[:, start:frame + 1], lengths, done)
                start, check = frame + 1, min(check + block, max_frames)
            if done:
                return
            condition = self._step(latent)
