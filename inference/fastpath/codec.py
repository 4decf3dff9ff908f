"""Codec decoding in pieces, so audio plays while later frames are still being generated.

Mimi's decoder (CSM's codec; Pocket TTS's codec has the same architecture) is causal end to end:
a transposed convolution that upsamples the frame latents
(each output step also depends on the previous frame), a sliding-window transformer, and a SEANet
of causal convolutions. Decoding piece by piece is therefore exact when each stage gets the
context it needs: the previous frame's latent for the upsampler, the transformer's own KV cache,
and the last ``context_steps`` transformer outputs for the SEANet (its receptive field is about
7.5 steps for Mimi's kernels; 16 leaves room). The SEANet re-runs over that overlap and the
overlapping samples are dropped.

On a CPU tier the decode runs on a copy of Pocket TTS's decoding half (``pocket_decoding_copy``): in
bf16 where the CPU computes bf16 natively, its transformer's projections in int8 where it has int8 dot
products. The loaded codec itself stays as it is, for encoding voices and for plain ``generate``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from inference.fastpath.layers import int8_linears


class MimiStream:
    """Feed (rows, frames, codebooks) codes piece by piece; get each piece's waveform back.

    ``to_latents`` maps a piece of the model's output to the decoder's frame latents (rows,
    channels, frames); by default Mimi's quantizer decodes codes. Pocket TTS passes its codec's
    ``latent_proj`` over continuous latents instead (``for_pocket``).
    """

    def __init__(self, codec: torch.nn.Module, context_steps: int = 16, to_latents=None):
        self.decoder = codec.decoder
        self.transformer = codec.decoder.decoder_transformer
        self.to_latents = to_latents or self._codes_to_latents
        self.quantizer = getattr(codec, "quantizer", None)
        self.codebook_size = getattr(codec.config, "codebook_size", 0)
        self.context_steps = context_steps
        self.dtype = next(self.decoder.decoder_seanet.parameters()).dtype  # transformer and SEANet compute in it
        upsample = self.decoder.upsample
        self.stride = upsample.conv.stride[0] if upsample is not None else 1
        self.samples_per_step = 1
        for ratio in self.decoder.config.upsampling_ratios:
            self.samples_per_step *= ratio
        self._last_latent: torch.Tensor | None = None
        self._cache = None
        self._context: torch.Tensor | None = None

    @classmethod
    def for_pocket(cls, codec: torch.nn.Module, context_steps: int = 16) -> MimiStream:
        """Pocket TTS's codec (or its ``pocket_decoding_copy``): (rows, frames, latent_dim) continuous
        latents in, as ``codec.decode`` takes."""
        def project(latents: torch.Tensor) -> torch.Tensor:
            return codec.latent_proj(latents.to(codec.latent_proj.weight.dtype).transpose(1, 2))
        return cls(codec, context_steps, project)

    @property
    def samples_per_frame(self) -> int:
        return self.samples_per_step * self.stride

    def _codes_to_latents(self, codes: torch.Tensor) -> torch.Tensor:
        # Codes past the codebook only come from rows that already ended (or a broken model): clamp
        # them rather than fail the whole batch.
        return self.quantizer.decode(codes.clamp(0, self.codebook_size - 1).transpose(1, 2))

    def push(self, frames: torch.Tensor) -> torch.Tensor:
        """Waveforms (rows, frames * samples_per_frame) of the next frames, identical to a full decode's."""
        device = next(self.decoder.parameters()).device
        latents = self.to_latents(frames.to(device))
        steps = self._upsample(latents).to(self.dtype)
        out = self.transformer(steps.transpose(1, 2), cache=self._cache, use_cache=True)
        self._cache = out.cache
        hidden = out.last_hidden_state.transpose(1, 2)
        overlap = 0 if self._context is None else self._context.shape[-1]
        if self._context is not None:
            hidden = torch.cat([self._context, hidden], dim=-1)
        self._context = hidden[..., -self.context_steps:]
        audio = self.decoder.decoder_seanet(hidden)
        return audio[:, 0, overlap * self.samples_per_step:]

    def _upsample(self, latents: torch.Tensor) -> torch.Tensor:
        """Frame latents -> transformer steps, with the previous frame as the transposed conv's context."""
        upsample = self.decoder.upsample
        if upsample is None:
            return latents
        previous = self._last_latent
        self._last_latent = latents[..., -1:]
        if previous is None:
            return upsample(latents)
        return upsample(torch.cat([previous, latents], dim=-1))[..., self.stride:]


class _DecodingHalf(nn.Module):
    """What ``MimiStream.for_pocket`` reads of a Pocket TTS codec: its configs, latent projection and
    upsampler (shared), a transformer, and its SEANet in ``dtype`` (a copy where that is another dtype)."""

    def __init__(self, codec: nn.Module, dtype: torch.dtype | None, transformer: nn.Module):
        super().__init__()
        self.config = codec.config
        # the upsampler's depthwise transposed convolution has no fast bf16 kernel (9-27x fp32's time): both
        # frame-rate layers keep the codec's dtype, ``MimiStream.push`` casts their output
        self.latent_proj = codec.latent_proj
        self.decoder = nn.Module()
        self.decoder.config = codec.decoder.config
        self.decoder.upsample = codec.decoder.upsample
        self.decoder.decoder_transformer = transformer
        self.decoder.decoder_seanet = _in_dtype(codec.decoder.decoder_seanet, dtype)


def _in_dtype(module: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    if dtype is None or next(module.parameters()).dtype == dtype:
        return module
    return copy.deepcopy(module).to(dtype)


def pocket_decoding_copy(codec: nn.Module, dtype: torch.dtype | None = None,
                         int8_transformer: bool = False) -> nn.Module:
    """The decoding half of Pocket TTS's codec with its transformer and SEANet in ``dtype`` (None: the
    codec's), the transformer's linear layers in int8 if ``int8_transformer`` (quantized from the codec's
    own weights; the layers around them compute in ``dtype``).

    On a CPU with bf16 dot products (AVX512-BF16, AMX) the bf16 SEANet takes 0.63-0.67x fp32's time; where
    oneDNN may not use them, 10x (the int8 transformer 0.43-0.53x either way): docs/measurements.md, "Pocket
    TTS's CPU tier".
    """
    transformer = codec.decoder.decoder_transformer
    transformer = int8_linears(transformer).to(dtype) if int8_transformer else _in_dtype(transformer, dtype)
    return _DecodingHalf(codec, dtype, transformer)
