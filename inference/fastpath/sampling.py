"""Token choice on the device, with no host synchronisation and no generator state.

Sampling in a CUDA graph cannot use ``torch.multinomial`` (it may synchronise) nor a generator
that graph replays would have to advance. Instead the noise is a pure function of (chunk seed,
frame, codebook, candidate): an integer hash computed with tensor ops. That makes a chunk's
samples independent of the batch it is decoded in, of graph or eager execution and of CPU or
GPU, so any chunk can be regenerated alone and reproduced run to run. The sample itself is the
Gumbel-max trick over the top-k candidates, which draws exactly from softmax(top-k logits / T).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_MASK32 = 0xFFFFFFFF
_MIX = 0x45D9F3B  # < 2**27: a 32-bit value times it stays inside int64, on every device
_GOLDEN = 0x9E3779B9


@dataclass(frozen=True)
class Sampling:
    """How one decoder picks its tokens: greedy, or top-k (0 = all) at a temperature."""

    do_sample: bool
    temperature: float = 1.0
    top_k: int = 0

    @classmethod
    def from_generation_config(cls, config) -> Sampling:
        """The subset of a transformers GenerationConfig the fast path reproduces.

        Raises ValueError for anything else (top-p, penalties, ...), so callers fall back to
        ``generate`` instead of silently sampling differently.
        """
        unsupported = []
        if getattr(config, "top_p", None) not in (None, 1.0):
            unsupported.append(f"top_p={config.top_p}")
        if getattr(config, "min_p", None) is not None:
            unsupported.append(f"min_p={config.min_p}")
        if getattr(config, "repetition_penalty", None) not in (None, 1.0):
            unsupported.append(f"repetition_penalty={config.repetition_penalty}")
        if getattr(config, "num_beams", None) not in (None, 1):
            unsupported.append(f"num_beams={config.num_beams}")
        if unsupported:
            raise ValueError("the fast path cannot reproduce " + ", ".join(unsupported))
        if not config.do_sample:
            return cls(False)
        return cls(True, float(config.temperature or 1.0), int(config.top_k or 0))


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (Mueller's), kept in int64 so no step overflows."""
    x = (((x >> 16) ^ x) * _MIX) & _MASK32
    x = (((x >> 16) ^ x) * _MIX) & _MASK32
    return (x >> 16) ^ x


def uniform(seeds: torch.Tensor, counter: torch.Tensor, streams: int, width: int) -> torch.Tensor:
    """(batch, streams, width) float32 in (0, 1), a pure function of (seed, counter, stream, column).

    ``seeds`` (batch,) int64; ``counter`` a (1,) or (batch,) int64 tensor (the frame index);
    streams tell apart the draws of one frame (the codebooks), columns the candidates of one draw.
    """
    device = seeds.device
    base = _mix(seeds & _MASK32)
    stream_ids = counter.reshape(-1, 1) * 1024 + torch.arange(streams, device=device, dtype=torch.int64)
    base = _mix(base[:, None] ^ (stream_ids & _MASK32))
    columns = torch.arange(width, device=device, dtype=torch.int64) * _GOLDEN & _MASK32
    bits = _mix((base[..., None] + columns) & _MASK32)
    return ((bits >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))


def gumbel(seeds: torch.Tensor, counter: torch.Tensor, streams: int, width: int) -> torch.Tensor:
    """Gumbel noise for every draw of one frame at once: a dozen kernels instead of a dozen per draw."""
    return -torch.log(-torch.log(uniform(seeds, counter, streams, width)))


def noise_width(samplings: list[Sampling], vocab: int) -> int:
    """Columns of noise one draw needs: its top-k candidates, or the whole vocabulary."""
    return max(s.top_k if 0 < s.top_k < vocab else vocab for s in samplings)


def pick(logits: torch.Tensor, sampling: Sampling, noise: torch.Tensor | None) -> torch.Tensor:
    """Next token per row from ``logits`` (batch, vocab): argmax, or top-k Gumbel-max with ``noise``.

    ``noise`` is (batch, >= candidates) Gumbel noise from ``gumbel``; the top-k logits are compared
    in float32, as transformers' sampling does after its logits processors.
    """
    if not sampling.do_sample:
        return logits.argmax(dim=-1)
    k = sampling.top_k if 0 < sampling.top_k < logits.shape[-1] else 0
    if k:
        values, indices = logits.topk(k, dim=-1)
    else:
        values, indices = logits, None
    scores = values.float() / sampling.temperature + noise[:, : values.shape[-1]]
    choice = scores.argmax(dim=-1, keepdim=True)
    if indices is None:
        return choice.squeeze(-1)
    return indices.gather(-1, choice).squeeze(-1)


def normal(seeds: torch.Tensor, counter: torch.Tensor, width: int) -> torch.Tensor:
    """(batch, width) standard normal float32, a pure function of (seed, counter, column): Box-Muller
    over two of ``uniform``'s streams. Used for diffusion noise, drawn the same way in a graph or not."""
    u = uniform(seeds, counter, 2, width)
    return torch.sqrt(-2.0 * torch.log(u[:, 0])) * torch.cos((2.0 * torch.pi) * u[:, 1])
