"""Memory a workload needs beside the weights: KV caches, activations, the CUDA context and margins.

Pure arithmetic on a family's facts and a model's sizes (no torch). The activation figures are
deliberately generous estimates; a calibration measured on this machine (``corrections``) replaces
them with a measurement.
"""

from __future__ import annotations

from collections.abc import Sequence

from inference.defaults import MAX_REFERENCE_SECONDS  # read_reference trims to it: prompts never exceed it
from inference.dtypes import DtypePolicy
from inference.families import Family, Role
from inference.planning.shapes import ComponentSize, ModelSize
from inference.planning.types import Workload
from inference.units import MiB

# What a process holds outside torch's allocator once a model has loaded and run (context, loaded kernel
# modules, library workspaces outside torch): 0.74-0.75 GiB through NVML above the GPU's idle level, in every
# phase of a real-size model loading and decoding on the H200 (docs/measurements.md, "CUDA context"); 896 MiB
# leaves room for a larger context. One figure for both sides of a GPU plan: the planner counts it in every
# prediction and the worker caps its allocator at the limit less it (with another figure on each side, plans
# predicted to fit ran out of memory under the cap: benchmarks/results/memory-matrix-h200.md).
CUDA_RUNTIME_BYTES = 896 * MiB
UPCAST_CHUNK_ELEMENTS = 32 * 2**20  # the most weights upcast at once (128 MiB in fp32); ``executors.upcast``
# cuBLAS keeps a workspace for each stream it runs on, allocated through torch's allocator and kept: 32 MiB on
# Hopper (torch's default ":4096:8"), 8 MiB on earlier GPUs. A graphed decode runs GEMMs in three places (the
# default stream, the frame graph's warm-up stream and its capture): torch's memory snapshots on the H200 show
# three such blocks live at every out-of-memory (docs/measurements.md, "cuBLAS workspaces").
CUBLAS_WORKSPACE_BYTES = 32 * MiB
DECODE_STREAMS = 3


def prompt_tokens(facts: Family, chunk_chars: int) -> int:
    """Backbone positions before generation: the voice prompt's frames, the text's tokens (two characters a
    token, a subword tokenizer's English needing fewer) and the chat template's."""
    return int(MAX_REFERENCE_SECONDS * facts.frame_rate) + chunk_chars // 2 + facts.template_tokens


def worst_positions(facts: Family, chunk_chars: int) -> int:
    """Backbone positions at the end of the longest chunk: prompt plus every generated frame."""
    return prompt_tokens(facts, chunk_chars) + facts.frames_for_chars(chunk_chars)


def kv_cache_bytes(facts: Family, size: ModelSize, work: Workload) -> int:
    """K and V of the backbone for the whole prompt plus the longest chunk's frames, every sequence."""
    return worst_positions(facts, work.chunk_chars) * size.kv_bytes_per_token * work.batch_size \
        * facts.kv_cache_copies


def prefill_bytes(facts: Family, size: ModelSize, work: Workload, policy: DtypePolicy) -> int:
    """The prompt's prefill, per position: the widest moment of a gated MLP as the fast path runs it (gate and
    up projected in one fused matmul, two MLP widths, beside the activated gate and their product) and a few
    hidden-sized tensors (residual, normed input, attention output). A 1.5B backbone's MLP measured on the
    H200 is 5.8x its hidden size: a fixed multiple of the hidden size fell short by 0.12-0.16 GiB at the
    calibration probe, and three MLP widths by the fused projection's 0.09 GiB at an out-of-memory
    (docs/measurements.md, "Prefill")."""
    sequences = work.batch_size * facts.kv_cache_copies
    per_position = 4 * mlp_width(size) + 6 * size.hidden_size
    return sequences * prompt_tokens(facts, work.chunk_chars) * per_position * policy.compute_bytes


def mlp_width(size: ModelSize) -> int:
    """The backbone's feed-forward width, from one decoder layer's size: what its attention projections
    (query and output hidden x hidden, key and value hidden x the K/V width) leave, over three hidden-wide
    matrices (gate, up, down). A two-matrix MLP comes out 1.5x too wide: an overestimate, never short."""
    backbone = next((c for c in size.components if c.role is Role.BACKBONE and c.layer_nbytes), None)
    hidden = size.hidden_size
    if backbone is None or hidden <= 0:
        return 4 * hidden
    layer = backbone.layer_nbytes[0] // size.element_size
    kv_width = size.kv_bytes_per_token // (size.element_size * 2 * len(backbone.layer_nbytes))
    return max(hidden, (layer - 2 * hidden * hidden - 2 * hidden * kv_width) // (3 * hidden))


def samples_per_frame(facts: Family) -> int:
    return round(facts.sample_rate / facts.frame_rate)


def codec_activation_bytes(facts: Family, work: Workload, policy: DtypePolicy) -> int:
    """The codec decoding: convolutions at the waveform's rate over a whole chunk, or over one frame per row
    where the codec streams frame by frame (a family that decodes each latent and encodes its samples
    again runs one tower after the other, so one tower's peak counts). A streaming codec's frames stay on
    the device until they are handed out (the fast session's sample buffer, one slot per position)."""
    element = policy.compute_bytes
    per_frame = samples_per_frame(facts)
    if not facts.codec_streams_frames:
        seconds = facts.frames_for_chars(work.chunk_chars) / facts.frame_rate
        return int(work.batch_size * seconds * facts.sample_rate * facts.codec_elements_per_sample * element)
    tower = work.batch_size * per_frame * facts.codec_elements_per_sample * element
    kept = work.batch_size * worst_positions(facts, work.chunk_chars) * per_frame * element
    return tower + kept


def head_buffer_bytes(facts: Family, size: ModelSize, work: Workload, policy: DtypePolicy) -> int:
    """One frame's draw by the head: about 16 hidden-sized rows per sequence, both of a guidance pair (a
    diffusion head's input, condition, timestep embedding, 3x modulation and feed-forward)."""
    return work.batch_size * facts.kv_cache_copies * size.hidden_size * 16 * policy.compute_bytes


def reference_encode_bytes(facts: Family, element: int) -> int:
    """Encoding the longest reference (``MAX_REFERENCE_SECONDS``, trimmed to it on reading), or the longest
    piece of it a streaming encoder takes at a time, through the part that encodes voices, once per voice:
    the same convolutions per sample as decoding, at ``element`` bytes (the compute dtype where the part
    runs; 4 on a CPU island)."""
    seconds = min(MAX_REFERENCE_SECONDS, facts.encode_piece_seconds or MAX_REFERENCE_SECONDS)
    return int(seconds * facts.sample_rate * facts.codec_elements_per_sample * element)


def activation_bytes(facts: Family, size: ModelSize, work: Workload, policy: DtypePolicy,
                     codec: bool = True, reference: bool = True) -> int:
    """The largest transient tensors on the compute device: a chunk's prefill, its frames' head buffers
    and, where the codec computes there (``codec``), its decoding; or, before the first chunk of a new
    voice, encoding the reference where the voice encoder computes there (``reference``). The two never
    overlap: a voice is encoded before its chunks are generated, with the caches already allocated."""
    generation = prefill_bytes(facts, size, work, policy) + head_buffer_bytes(facts, size, work, policy)
    if codec:
        generation += codec_activation_bytes(facts, work, policy)
    return max(generation, reference_encode_bytes(facts, policy.compute_bytes) if reference else 0)


def island_bytes(facts: Family, parts: Sequence[ComponentSize], element: int, work: Workload,
                 encodes_voices: bool) -> int:
    """Host memory of parts that compute on a CPU island inside a GPU plan: their weights in fp32 (the
    island's dtype; stored weights are ``element`` bytes wide) and their largest transients there, the
    reference's encoding where they encode voices (``encodes_voices``) or their decoding."""
    if not parts:
        return 0
    weights = sum(c.nbytes for c in parts) * 4 // element
    streaming = any(not c.component.prompt_only for c in parts)
    fp32 = DtypePolicy("float32", "float32", "")
    transient = codec_activation_bytes(facts, work, fp32) if streaming else 0
    if encodes_voices:
        transient = max(transient, reference_encode_bytes(facts, 4))
    return weights + transient


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
