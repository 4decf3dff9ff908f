"""CSM decoding with static caches and one CUDA-graph replay per audio frame.

A CSM frame is one backbone step (16 layers) that picks codebook 0, then 31 depth-decoder steps (4
layers each) that pick codebooks 1..31. transformers runs each as a separate ``forward`` with
Python, cache bookkeeping and a host synchronisation around it, so the GPU idles most of the frame
(161-225 ms per 80 ms frame on an H100: docs/measurements.md, benchmarks/results/realtime.md). Here
the frame is one function over preallocated tensors: sample codebook 0 from the backbone's last
hidden state, run the depth decoder with its positions known in advance (its cache slices are
static, no masks), record the frame, then run the backbone on the frame for the next one. On CUDA
that function is captured once and replayed.

A batch decodes several chunks together (left-padded prompts, one shared cache slot per frame,
per-row rope positions); each row stops on its own (an all-EOS frame or its own frame budget) and
the host looks at the stop flags only every few frames. Sampling is ``sampling.pick``: per-chunk
seeds, reproducible whatever the batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from inference.fastpath.frames import FrameBlock, GraphedDecoder
from inference.fastpath.graphs import StepRunner
from inference.fastpath.layers import FastLayer, KVCache, rms_norm, rope_table
from inference.fastpath.sampling import Sampling, gumbel, noise_width, pick
from inference.fastpath.stack import CachedStack, ModelStack

POSITION_ALIGN = 64  # cache lengths rounded up: aligned rows suit the fused attention kernels


def sampling_of(model) -> tuple[Sampling, Sampling]:
    """The backbone's and the depth decoder's sampling, from the loaded generation configs."""
    return (Sampling.from_generation_config(model.generation_config),
            Sampling.from_generation_config(model.depth_decoder.generation_config))


def _draw(noise: torch.Tensor | None, stream: int) -> torch.Tensor | None:
    return None if noise is None else noise[:, stream]


def _aligned(n: int) -> int:
    return -(-n // POSITION_ALIGN) * POSITION_ALIGN


class CsmFastDecoder(GraphedDecoder):
    """Static-cache, graph-replayed decoding of a CsmForConditionalGeneration for up to ``batch_size`` chunks.

    ``capacity`` is the backbone positions one chunk may use (prompt plus generated frames); the
    planner sizes it (never a default maximum length). A request that needs more reallocates.
    """

    def __init__(self, model, batch_size: int, capacity: int,
                 sampling: tuple[Sampling, Sampling] | None = None,
                 use_graph: bool | None = None, check_every: int = 8, model_step: bool = False):
        self.model = model
        config = model.config
        self.codebooks = config.num_codebooks
        self.vocab = config.vocab_size
        self.eos = config.codebook_eos_token_id
        self.backbone = model.backbone_model
        self.depth = model.depth_decoder
        self.dtype = model.lm_head.weight.dtype
        self.device = model.lm_head.weight.device
        self.backbone_sampling, self.depth_sampling = sampling or sampling_of(model)
        self.check_every = check_every
        self._use_graph = use_graph
        # model_step: the backbone's layers belong to an offload executor; fusing them would unbind it
        self.model_step = model_step
        self.bb_layers = [] if model_step else [FastLayer(layer) for layer in self.backbone.layers]
        self.dd_layers = [FastLayer(layer) for layer in self.depth.model.layers]
        self.noise_width = noise_width([self.backbone_sampling, self.depth_sampling], self.vocab)
        self.runner: StepRunner | None = None
        self._allocate(batch_size, capacity)

    # ----------------------------------------------------------------------------------- memory
    def _allocate(self, batch: int, capacity: int) -> None:
        self.batch, self.capacity = batch, _aligned(capacity)
        dev, dd = self.device, self.dd_layers[0]
        if self.model_step:
            self.stack = ModelStack(self.backbone, batch, self.capacity, dev)
        else:
            self.stack = CachedStack(self.bb_layers, self.backbone.norm, self.backbone.rotary_emb, batch,
                                     self.capacity, self.dtype, dev)
        self.dd_cache = KVCache(len(self.dd_layers), batch, dd.kv_heads, self.codebooks, dd.head_dim,
                                self.dtype, dev)
        self.dd_cos, self.dd_sin = rope_table(self.depth.model.rotary_emb, self.codebooks, self.dtype, dev)
        long = {"dtype": torch.long, "device": dev}
        self.hidden = torch.zeros(batch, self.backbone.config.hidden_size, dtype=self.dtype, device=dev)
        self.out_codes = torch.zeros(batch, self.capacity, self.codebooks, **long)
        self.codes = torch.zeros(batch, self.codebooks, **long)
        self.allocate_stop_state(batch, dev)
        self.build_runner(dev)

    @property
    def nbytes(self) -> int:
        """Device memory of the caches and buffers (the graph's private pool comes on top)."""
        buffers = sum(t.numel() * t.element_size() for t in (self.out_codes, self.hidden))
        return self.stack.nbytes + self.dd_cache.nbytes + buffers

    def _clear(self) -> None:
        """Zero the caches: warm-up garbage must never reach a masked-out position (0 x NaN = NaN)."""
        self.stack.clear()
        self.dd_cache.k.zero_()
        self.dd_cache.v.zero_()

    # ---------------------------------------------------------------------------------- one frame
    def _head(self) -> None:
        """Pick a whole frame from ``hidden`` and record it in ``codes`` and ``out_codes``."""
        noise = None
        if self.backbone_sampling.do_sample or self.depth_sampling.do_sample:
            noise = gumbel(self.seeds, self.frame, self.codebooks, self.noise_width)
        first = pick(self.model.lm_head(self.hidden), self.backbone_sampling, _draw(noise, 0))
        self.codes.copy_(self._depth_frame(first, noise))
        self._record(self.codes)

    def _tail(self) -> None:
        """Step the backbone on the recorded frame; ``hidden`` becomes the next frame's state."""
        self.hidden.copy_(self.stack.step(self.backbone.embed_tokens(self.codes[:, None, :])))
        self.stack.advance()
        self.frame += 1

    def _depth_frame(self, first: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Codebooks 1..N-1 from the backbone state and codebook 0; positions are static, so no masks."""
        inner = self.depth.model
        picked = [first]
        x = torch.stack([self.hidden, inner.embed_tokens(first)], dim=1)
        x = self._depth_layers(inner.inputs_embeds_projector(x), 0)
        head = self.depth.codebooks_head.weight
        for index in range(1, self.codebooks):
            logits = F.linear(rms_norm(inner.norm, x[:, -1]), head[index - 1].T)
            token = pick(logits, self.depth_sampling, _draw(noise, index))
            picked.append(token)
            if index < self.codebooks - 1:
                embedded = inner.embed_tokens(token + index * self.vocab)[:, None]
                x = self._depth_layers(inner.inputs_embeds_projector(embedded), index + 1)
        return torch.stack(picked, dim=1)

    def _depth_layers(self, x: torch.Tensor, start: int) -> torch.Tensor:
        seq = x.shape[1]
        stop = start + seq
        cos, sin = self.dd_cos[None, start:stop], self.dd_sin[None, start:stop]
        for i, layer in enumerate(self.dd_layers):
            q, k, v = layer.qkv(x, cos, sin)
            self.dd_cache.k[i, :, :, start:stop] = k.transpose(1, 2)
            self.dd_cache.v[i, :, :, start:stop] = v.transpose(1, 2)
            keys, values = self.dd_cache.k[i, :, :, :stop], self.dd_cache.v[i, :, :, :stop]
            attend = layer.attend_one if seq == 1 else layer.attend_many
            x = layer.finish(x, attend(q, keys, values, None))
        return x

    def _record(self, codes: torch.Tensor) -> None:
        """Store the frame and update the stop state: an all-EOS frame (codebooks 0..N-2) or the budget."""
        self.out_codes.index_copy_(1, self.frame, codes[:, None])
        self.update_stop_state((codes[:, :-1] == self.eos).all(dim=-1))

    # ------------------------------------------------------------------------------------ request
    def _start(self, embeds: torch.Tensor, mask: torch.Tensor, seeds: list[int],
               max_frames: list[int]) -> int:
        """Reset the state for a request; rows beyond the request repeat row 0 and start finished."""
        rows = mask.shape[0]
        embeds, mask = self.fit_request(embeds, mask, max_frames)
        self.reset_stop_state(seeds, max_frames, never=self.capacity)
        self.hidden.copy_(self.stack.prefill(embeds.to(self.device, self.dtype), mask.to(self.device)))
        return rows

    # --------------------------------------------------------------------------------- decoding
    def stream(self, embeds: torch.Tensor, mask: torch.Tensor, seeds: list[int], max_frames: list[int],
               first_block: int = 2) -> Iterator[FrameBlock]:
        """Decode, yielding the frames produced every ``check_every`` frames (the first block sooner).

        Only here does the host wait for the device: one small read of the stop state per block.
        """
        rows = self._start(embeds, mask, seeds, max_frames)
        yield from self.blocks(self.out_codes, rows, max(max_frames), first_block)

    def generate(self, embeds: torch.Tensor, mask: torch.Tensor, seeds: list[int],
                 max_frames: list[int], include_eos: bool = False) -> list[torch.Tensor]:
        """Every row's frames (frames, codebooks), without its end-of-speech frame unless ``include_eos``."""
        lengths: list[int] = []
        for block in self.stream(embeds, mask, seeds, max_frames, first_block=self.check_every):
            lengths = block.lengths
        ends = [n + 1 if include_eos and n < budget else n
                for n, budget in zip(lengths, max_frames, strict=True)]
        return [self.out_codes[row, :end].clone() for row, end in enumerate(ends)]
