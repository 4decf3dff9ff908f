"""Memory a workload needs beside the weights: KV caches, activations, the CUDA context and margins.

Pure arithmetic on a family's facts and a model's sizes (no torch). The activation figures are
deliberately generous estimates; a calibration measured on this machine (``corrections``) replaces
them with a measurement.
"""

from __future__ import annotations

from inference.defaults import MAX_REFERENCE_SECONDS  # read_reference trims to it: prompts never exceed it
from inference.dtypes import DtypePolicy
from inference.families import Family
from inference.planning.shapes import ModelSize
from inference.planning.types import Workload
from inference.units import MiB

# What a process holds outside torch's allocator once a model has loaded and run (context, loaded kernel
# modules, library workspaces): 1.30-1.38 GiB through NVML (docs/measurements.md, "CUDA context"); the bare
# context is 0.60 GiB. One figure for both sides of a GPU plan: the planner counts it in every prediction and
# the worker caps its allocator at the limit less it. With the bare context in the plan and this figure in
# the cap, plans predicted to fit ran out of memory under the cap (benchmarks/results/memory-matrix-h200.md).
CUDA_RUNTIME_BYTES = 1400 * MiB
UPCAST_CHUNK_ELEMENTS = 32 * 2**20  # the most weights upcast at once (128 MiB in fp32); ``executors.upcast``


def prompt_tokens(facts: Family, chunk_chars: int) -> int:
    """Backbone positions before generation: the voice prompt's frames plus the text's tokens."""
    return int(MAX_REFERENCE_SECONDS * facts.frame_rate) + chunk_chars // 2 + 32


def worst_positions(facts: Family, chunk_chars: int) -> int:
    """Backbone positions at the end of the longest chunk: prompt plus every generated frame."""
    return prompt_tokens(facts, chunk_chars) + facts.frames_for_chars(chunk_chars)


def kv_cache_bytes(facts: Family, size: ModelSize, work: Workload) -> int:
    """K and V of the backbone for the whole prompt plus the longest chunk's frames, every sequence."""
    return worst_positions(facts, work.chunk_chars) * size.kv_bytes_per_token * work.batch_size \
        * facts.kv_cache_copies


def prefill_bytes(facts: Family, size: ModelSize, work: Workload, policy: DtypePolicy) -> int:
    """The prompt's prefill: a few hidden-sized tensors and an MLP intermediate (~4x hidden) per position."""
    sequences = work.batch_size * facts.kv_cache_copies
    return sequences * prompt_tokens(facts, work.chunk_chars) * size.hidden_size * 12 * policy.compute_bytes


def codec_activation_bytes(facts: Family, work: Workload, policy: DtypePolicy) -> int:
    """The codec decoding a whole chunk: convolutions of a few dozen channels at the waveform's rate."""
    seconds = facts.frames_for_chars(work.chunk_chars) / facts.frame_rate
    return int(work.batch_size * seconds * facts.sample_rate * 64 * policy.compute_bytes)


def activation_bytes(facts: Family, size: ModelSize, work: Workload, policy: DtypePolicy) -> int:
    """The largest transient tensors on the GPU with every component there: prefill plus codec."""
    return prefill_bytes(facts, size, work, policy) + codec_activation_bytes(facts, work, policy)


def upcast_bytes(size: ModelSize, policy: DtypePolicy) -> int:
    """The widest temporary of per-module upcasting: one module's weights in the compute dtype, or one
    slice of them (a linear layer larger than ``UPCAST_CHUNK_ELEMENTS`` is upcast and applied in slices of
    output rows, so a 150k-word output projection never needs its whole fp32 copy); 0 without upcasting.
    """
    if policy.storage == policy.compute:
        return 0
    return UPCAST_CHUNK_ELEMENTS * policy.compute_bytes


def pcie_bound_ms(nbytes: int, gbps: float) -> float:
    """The least time moving ``nbytes`` from pinned host memory can take at ``gbps`` (10^9 bytes/s)."""
    return 1000 * nbytes / (gbps * 1e9)


def safety_margin(budget: int) -> int:
    """Fragmentation and allocator rounding: 5% of the budget, at least 256 MiB."""
    return max(256 * MiB, int(budget * 0.05))
