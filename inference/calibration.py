"""Correcting the planner's memory prediction with one measurement on this machine (needs torch).

The planner's activation and fragmentation figures are estimates. The first time a plan is loaded on
a given (GPU, driver, torch, model, dtype, placement, chunk length, batch), the engine runs one probe:
the backbone's prefill over the worst-case number of positions (the whole prompt plus every frame of
the longest chunk, every sequence of the batch), through the executor's own hooks. The allocator's
peak during that pass covers the resident weights, the streamed-layer buffers, a full KV cache and
the largest activations; the difference from the prediction of the same pass is stored
(``inference.planning.corrections``, under the plan's fingerprint) and added to every later
prediction of that plan. The codec's share is not probed and stays predicted.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from inference.dtypes import DtypePolicy
from inference.families import Role
from inference.planning.corrections import corrected, lookup, store
from inference.planning.estimates import CUBLAS_WORKSPACE_BYTES, prefill_bytes, prompt_tokens, worst_positions
from inference.planning.types import Plan, Workload

if TYPE_CHECKING:
    from inference.adapters.base import LoadedModel
    from inference.models import ModelRef


def probe_prediction(plan: Plan, ref: ModelRef) -> int:
    """The allocator peak the planner predicts for the probe pass (prefill over the worst positions)."""
    size = ref.shape.at(plan.dtype)
    work = Workload(plan.max_chunk_chars, plan.batch_size)
    scale = worst_positions(ref.facts, work.chunk_chars) / max(1, prompt_tokens(ref.facts, work.chunk_chars))
    prefill = int(prefill_bytes(ref.facts, size, work, DtypePolicy(plan.dtype, plan.dtype, "")) * scale)
    m = plan.memory
    return m.weights_resident + m.streamed_buffers + m.kv_cache + prefill + CUBLAS_WORKSPACE_BYTES  # one stream


def calibrate(plan: Plan, ref: ModelRef, loaded: LoadedModel) -> Plan:
    """Measure ``plan`` once on this machine (if not yet done) and return it corrected.

    CPU plans need no calibration: RAM is checked by the planner and the OS pages.
    """
    if plan.device == "cpu" or not torch.cuda.is_available():
        return plan
    if lookup(plan) is None:
        started = time.perf_counter()
        measured = probe(plan, ref, loaded)
        store(plan, {"measured_bytes": measured, "predicted_bytes": probe_prediction(plan, ref),
                     "probe_seconds": round(time.perf_counter() - started, 3), "model": ref.label,
                     "level": plan.level, "executor": plan.executor, "gpu": plan.gpu_id,
                     "torch": torch.__version__, "chunk": plan.max_chunk_chars, "batch": plan.batch_size,
                     "measured_at": time.time()})
    return corrected(replace(plan, memory=replace(plan.memory, calibration=0), calibrated=False))


def probe(plan: Plan, ref: ModelRef, loaded: LoadedModel) -> int:
    """Run the backbone once over the worst-case positions; return the allocator's peak in bytes."""
    root, hidden = backbone_root(ref, loaded.model)
    device = torch.device(plan.device)
    sequences = plan.batch_size * ref.adapter.kv_cache_copies
    positions = worst_positions(ref.facts, plan.max_chunk_chars)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        embeds = torch.zeros(sequences, positions, hidden, dtype=loaded.dtype, device=device)
        out = root(inputs_embeds=embeds, use_cache=True)
        del out, embeds
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device))


def backbone_root(ref: ModelRef, model: torch.nn.Module) -> tuple[torch.nn.Module, int]:
    """The module that runs the backbone's layers (the parent of its layer list) and its hidden size."""
    component = next(c for c in ref.adapter.components(ref.config) if c.role is Role.BACKBONE and c.layers_path)
    root = model.get_submodule(component.layers_path.rsplit(".", 1)[0])
    config = getattr(root, "config", None)
    hidden = int(getattr(config, "hidden_size", 0)) or next(root.parameters()).shape[-1]
    return root, hidden
