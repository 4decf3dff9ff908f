"""Decoder-layer steps over preallocated KV caches, reusing a transformers model's own weights.

A CSM frame is bound by how many kernels it launches, not by arithmetic (the depth decoder alone
runs 124 layer steps per frame), so each layer step here is written for few kernels: one matmul
for q, k and v, one for the MLP's gate and up projections, rotary embedding applied to q and k
together, RMSNorm through ``F.rms_norm``. The formulas are transformers' Llama ones (fp32 norm
statistics, rotate-half rotary), so the fast path computes the same function as ``generate``.
Every shape is fixed once the caches are allocated, which is what lets a CUDA graph replay a step.
"""

from __future__ import annotations

import copy
import warnings
import weakref

import torch
import torch.nn.functional as F
from torch import nn

_FUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # first module -> (weight, bias)


def fuse_linears(linears: list[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight (and bias) for several projections of the same input, without a second copy.

    The modules' parameters become views into the fused tensor, so the model keeps working for
    plain ``generate`` and the weights stay in memory once. Fusing the same modules again (a second
    session on one model) returns the first fusion.
    """
    if linears[0] in _FUSED:
        return _FUSED[linears[0]]
    with torch.no_grad():
        fused = torch.cat([m.weight.detach() for m in linears])
        bias = None if linears[0].bias is None else torch.cat([m.bias.detach() for m in linears])
        start = 0
        for m in linears:
            stop = start + m.weight.shape[0]
            m.weight = nn.Parameter(fused[start:stop], requires_grad=False)
            if bias is not None:
                m.bias = nn.Parameter(bias[start:stop], requires_grad=False)
            start = stop
    _FUSED[linears[0]] = (fused, bias)
    return fused, bias


def rms_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """transformers' Llama RMSNorm: statistics in fp32, one rounding to x's dtype, then the weight.

    ``F.rms_norm`` computes half-precision input in fp32 and rounds once, as the Llama module's
    explicit upcast does, in one kernel instead of six. Other norms (LayerNorm) run as they are.
    """
    if isinstance(norm, nn.LayerNorm):
        return norm(x)
    return norm.weight * F.rms_norm(x, (x.shape[-1],), eps=norm.variance_epsilon)


def rope_table(rotary: nn.Module, positions: int, dtype: torch.dtype, device: torch.device):
    """cos and "signed sin" for positions 0..positions-1, from the model's own rotary module.

    Looking rows up in this table gives bit-identical values to calling the module per step. The
    sine's first half is negated so that ``rotate_half(x) * sin`` becomes ``roll(x) * signed_sin``
    (exactly equal: IEEE negation commutes with multiplication), one kernel instead of two.
    """
    probe = torch.empty(1, dtype=dtype, device=device)
    ids = torch.arange(positions, device=device)[None]
    cos, sin = rotary(probe, ids)
    half = sin.shape[-1] // 2
    signed = torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)
    return cos[0].contiguous(), signed.contiguous()


class Int8Linear(nn.Module):
    """``F.linear`` with int8 weights (one scale per output channel) and the input quantized per call.

    On a CPU a single-sequence step is bound by reading weights: a quarter of fp32's bytes. fbgemm's
    dynamic kernel (VNNI where the CPU has it) rounds each input row to 8 bits with its own range
    (``reduce_range``: 7 bits, which never saturates AVX2's 16-bit accumulation).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        weight = weight.detach().float()
        scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-8).double()
        zeros = torch.zeros(weight.shape[0], dtype=torch.long)
        with warnings.catch_warnings():  # torch 2.13 warns that quantized tensors will move to torchao
            warnings.simplefilter("ignore", UserWarning)
            quantized = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)
        self.packed = torch.ops.quantized.linear_prepack(quantized, None if bias is None else bias.float())
        self.out_features = weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x.float(), self.packed, True).to(x.dtype)


def int8_linears(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose ``nn.Linear`` layers are ``Int8Linear`` (the original keeps its weights)."""
    copied = copy.deepcopy(module)
    for child in list(copied.modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, nn.Linear):
                setattr(child, attr, Int8Linear(sub.weight, sub.bias))
    return copied


class FastLayer:
    """One pre-norm decoder layer (CSM's backbone and depth decoder, Pocket TTS's backbone), stepped
    over a static cache: Llama's gated MLP and RMSNorm, or a plain fc1/fc2 MLP and LayerNorm.

    Tensors are kept as (batch, seq, heads, head_dim) until attention, so q, k and v are views of
    one projection and single-position steps need no copies.
    """

    def __init__(self, layer: nn.Module, weight_dtype: torch.dtype | None = None):
        """``weight_dtype`` keeps a copy of the projections in that dtype (bf16 on a CPU: reading the
        weights is what a single-sequence step costs there, and half the bytes take half the time)."""
        attn, mlp = layer.self_attn, layer.mlp
        self.head_dim = attn.head_dim
        self.q_heads = attn.q_proj.out_features // self.head_dim
        self.kv_heads = attn.k_proj.out_features // self.head_dim
        self.gated = hasattr(mlp, "gate_proj")
        qkv = fuse_linears([attn.q_proj, attn.k_proj, attn.v_proj])
        if self.gated:
            up = fuse_linears([mlp.gate_proj, mlp.up_proj])
            self.intermediate = mlp.gate_proj.out_features
            down, self.act = mlp.down_proj, mlp.act_fn
        else:
            up, down, self.act = (mlp.fc1.weight, mlp.fc1.bias), mlp.fc2, mlp.activation_fn
        self.qkv_proj = projection(*qkv, weight_dtype)
        self.up_proj = projection(*up, weight_dtype)
        self.o_proj = projection(attn.o_proj.weight, attn.o_proj.bias, weight_dtype)
        self.down_proj = projection(down.weight, down.bias, weight_dtype)
        self.norm_in, self.norm_post = layer.input_layernorm, layer.post_attention_layernorm

    def qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Normed input -> rotated q, k and v, each (batch, seq, heads, head_dim); ``sin`` signed."""
        batch, seq, _ = x.shape
        qkv = self.qkv_proj(rms_norm(self.norm_in, x))
        qkv = qkv.view(batch, seq, self.q_heads + 2 * self.kv_heads, self.head_dim)
        rotated_heads = self.q_heads + self.kv_heads
        qk = qkv[:, :, :rotated_heads]
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
        qk = qk * cos + qk.roll(self.head_dim // 2, dims=-1) * sin
        return qk[:, :, :self.q_heads], qk[:, :, self.q_heads:], qkv[:, :, rotated_heads:]

    def finish(self, x: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        """Attention output (batch, seq, q_heads * head_dim) -> residual, MLP, residual."""
        x = x + self.o_proj(attn_out)
        up = self.up_proj(rms_norm(self.norm_post, x))
        if self.gated:
            up = self.act(up[..., :self.intermediate]) * up[..., self.intermediate:]
        else:
            up = self.act(up)
        return x + self.down_proj(up)

    def attend_one(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                   mask: torch.Tensor | None) -> torch.Tensor:
        """One query position (batch, 1, heads, dim) against a (batch, kv_heads, len, dim) cache.

        The query heads of one key/value group become rows of one attention problem, so the cache
        is read once per group instead of being repeated per query head.
        """
        batch = q.shape[0]
        grouped = q.reshape(batch, self.kv_heads, self.q_heads // self.kv_heads, self.head_dim)
        if grouped.device.type == "cpu" and grouped.dtype != torch.float32:
            # torch's CPU attention kernel is slower in bf16 than on fp32 copies of the same tensors (0.4x the
            # time, torch 2.13: benchmarks/cpu_tier_parts.py, decode attention)
            out = F.scaled_dot_product_attention(grouped.float(), keys.float(), values.float(), attn_mask=mask)
            return out.to(grouped.dtype).reshape(batch, 1, self.q_heads * self.head_dim)
        out = F.scaled_dot_product_attention(grouped, keys, values, attn_mask=mask)
        return out.reshape(batch, 1, self.q_heads * self.head_dim)

    def attend_many(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                    mask: torch.Tensor | None) -> torch.Tensor:
        """Several query positions (prefill): keys repeated per query head; causal unless ``mask``."""
        batch, seq = q.shape[:2]
        repeat = self.q_heads // self.kv_heads
        keys = keys.repeat_interleave(repeat, dim=1)
        values = values.repeat_interleave(repeat, dim=1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), keys, values, attn_mask=mask,
                                             is_causal=mask is None)
        return out.transpose(1, 2).reshape(batch, seq, self.q_heads * self.head_dim)


def projection(weight: torch.Tensor, bias: torch.Tensor | None, weight_dtype: torch.dtype | None):
    """``x -> x W^T + b`` with the weights as the model has them, stored in ``weight_dtype`` (the input is
    cast to it and the output back), or int8 (``torch.qint8``: ``Int8Linear``)."""
    if weight_dtype == torch.qint8:
        return Int8Linear(weight, bias)
    if weight_dtype is None or weight_dtype == weight.dtype:
        return lambda x: F.linear(x, weight, bias)
    weight = weight.to(weight_dtype)
    bias = None if bias is None else bias.to(weight_dtype)
    return lambda x: F.linear(x.to(weight_dtype), weight, bias).to(x.dtype)


class KVCache:
    """Keys and values of every layer, (layers, batch, kv_heads, positions, head_dim), allocated once."""

    def __init__(self, layers: int, batch: int, kv_heads: int, positions: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device):
        shape = (layers, batch, kv_heads, positions, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()
