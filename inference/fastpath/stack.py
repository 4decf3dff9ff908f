"""A decoder stack stepped over one static KV cache: the language-model half of every fast decoder.

Rows are prefilled from left-padded prompts, then advance one position per step. The step writes
every row's key and value into one cache slot shared by all rows (so the write is a single
``index_copy_`` at a fixed address, which a CUDA graph can replay); each row keeps its own rope
position and its own set of valid keys, which is what lets rows of different prompt lengths, or
different branches of one chunk (VibeVoice's guidance pair), share the cache.
"""

from __future__ import annotations

import torch
from torch import nn

from inference.fastpath.layers import FastLayer, KVCache, rms_norm, rope_table


class CachedStack:
    """``layers`` with their final ``norm``, over a (layers, rows, kv_heads, capacity, head_dim) cache."""

    def __init__(self, layers: list[FastLayer], norm: nn.Module, rotary: nn.Module, rows: int,
                 capacity: int, dtype: torch.dtype, device: torch.device):
        self.layers, self.norm = layers, norm
        self.rows, self.capacity, self.device = rows, capacity, device
        head = layers[0]
        self.cache = KVCache(len(layers), rows, head.kv_heads, capacity, head.head_dim, dtype, device)
        self.cos, self.sin = rope_table(rotary, capacity, dtype, device)
        self.key_valid = torch.zeros(rows, capacity, dtype=torch.bool, device=device)
        self.pos = torch.zeros(rows, dtype=torch.long, device=device)
        self.slot = torch.zeros(1, dtype=torch.long, device=device)

    @property
    def nbytes(self) -> int:
        tables = sum(t.numel() * t.element_size() for t in (self.cos, self.sin, self.key_valid))
        return self.cache.nbytes + tables

    def clear(self) -> None:
        """Zero the cache: garbage must never sit under a masked-out key (0 x NaN = NaN)."""
        self.cache.k.zero_()
        self.cache.v.zero_()

    def ready_for_capture(self) -> None:
        """A state in which a step is well defined: one valid key, so no softmax row is empty."""
        self.key_valid.zero_()
        self.key_valid[:, 0] = True
        self.slot.fill_(1)

    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Run left-padded prompts into the first rows of the cache; returns each row's last state, normed.

        ``embeds`` (rows, seq - start, hidden) are the prompts' positions from ``start`` on: the cache already
        holds the first ``start`` (a prefix every row shares, ``PocketFastDecoder``'s voice), which they attend to.
        """
        rows, seq = mask.shape
        valid = mask.bool()
        positions = prompt_positions(mask)[:, start:]
        cos, sin = self.cos[positions], self.sin[positions]
        causal = torch.ones(seq, seq, dtype=torch.bool, device=self.device).tril()
        # padding queries see themselves only, so no row of the softmax is empty (NaN)
        attn_mask = (causal & valid[:, None, :]) | torch.eye(seq, dtype=torch.bool, device=self.device)
        attn_mask = attn_mask[:, None, start:]
        x = embeds
        for i, layer in enumerate(self.layers):
            q, k, v = layer.qkv(x, cos, sin)
            self.cache.k[i, :rows, :, start:seq] = k.transpose(1, 2)
            self.cache.v[i, :rows, :, start:seq] = v.transpose(1, 2)
            keys, values = self.cache.k[i, :rows, :, :seq], self.cache.v[i, :rows, :, :seq]
            x = layer.finish(x, layer.attend_many(q, keys, values, attn_mask))
        self.key_valid.zero_()
        self.key_valid[:rows, :seq] = valid
        self.slot.fill_(seq)
        self.pos[:rows].copy_(positions[:, -1] + 1)
        return rms_norm(self.norm, x[:, -1:])[:, 0]

    def step(self, x: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """One position for the first rows: (rows, 1, hidden) in, each row's new state (rows, hidden) out,
        normed.

        Writes the current slot; ``advance`` moves on to the next one. ``length`` (eager callers that
        know it) reads only the cache's first positions, the current one included; a graph reads them
        all under the mask.
        """
        rows = x.shape[0]
        self.key_valid.index_fill_(1, self.slot, True)
        mask = self.key_valid[:rows, None, None, :length]
        pos = self.pos[:rows]
        cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]
        for i, layer in enumerate(self.layers):
            q, k, v = layer.qkv(x, cos, sin)
            keys, values = self.cache.k[i, :rows], self.cache.v[i, :rows]
            keys.index_copy_(2, self.slot, k.transpose(1, 2))
            values.index_copy_(2, self.slot, v.transpose(1, 2))
            x = layer.finish(x, layer.attend_one(q, keys[:, :, :length], values[:, :, :length], mask))
        return rms_norm(self.norm, x)[:, 0]

    def advance(self) -> None:
        self.slot += 1
        self.pos += 1


def prompt_positions(mask: torch.Tensor) -> torch.Tensor:
    """Rope positions of left-padded prompts: each row counts from its first real token."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class ModelStack:
    """The model's own decoder module, stepped eagerly over a transformers ``DynamicCache``.

    Offload plans keep some decoder layers off the GPU and bring them in from hooks around each layer's
    ``forward`` (the streamed executor); a captured graph would replay stale weights, and our fused
    layers would bypass the hooks. This stack calls the module as ``generate`` does, so whatever
    executor placed it runs; the rest of the frame (sampling, depth decoder, diffusion head, codecs)
    stays graphed. Same interface as ``CachedStack``.
    """

    def __init__(self, module: nn.Module, rows: int, capacity: int, device: torch.device):
        from transformers import DynamicCache

        self.module, self.rows, self.capacity, self.device = module, rows, capacity, device
        self._new_cache = lambda: DynamicCache(config=module.config)
        self.cache = self._new_cache()
        self.mask = torch.ones(rows, 0, dtype=torch.long, device=device)

    nbytes = 0  # the cache grows with the sequence; the planner's KV budget covers it as for generate

    def clear(self) -> None:
        """Nothing to zero: every request starts a fresh cache."""

    def ready_for_capture(self) -> None:
        """Nothing to prepare: this stack is never captured."""

    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.cache = self._new_cache()
        self.mask = mask.long()
        return self._forward(embeds)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.rows, 1)], dim=1)
        return self._forward(x)

    def advance(self) -> None:
        """The cache advanced itself in ``step``."""

    def _forward(self, embeds: torch.Tensor) -> torch.Tensor:
        out = self.module(inputs_embeds=embeds, attention_mask=self.mask, cache=self.cache, use_cache=True)
        return out.last_hidden_state[:, -1]
