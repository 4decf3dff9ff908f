"""Correcting the planner's memory prediction with one measurement on this machine.

The planner's activation and fragmentation figures are estimates. The first time a plan is loaded on
a given (GPU, driver, torch, model, dtype, placement, chunk length, batch), the engine runs one probe:
the backbone's prefill over the worst-case number of positions (the whole prompt plus every frame of
the longest chunk, every sequence of the batch), through the executor's own hooks. The allocator's
peak during that pass covers the resident weights, the streamed-layer buffers, a full KV cache and
the largest activations; the difference from the prediction of the same pass is stored on disk and
added to every later prediction of that plan. The codec's share is not probed and stays predicted.

Records live in the user cache (platformdirs), or under ``$VESPER_CACHE_DIR`` (tests, portable use).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from inference.adapters.base import LoadedModel
    from inference.hardware import Gpu
    from inference.models import ModelRef
    from inference.planner import Plan

ENV_DIR = "VESPER_CACHE_DIR"
_DIGESTS: dict[int, tuple[object, str]] = {}


def cache_dir() -> Path:
    """Where calibration records are kept."""
    override = os.environ.get(ENV_DIR)
    if override:
        return Path(override) / "calibration"
    import platformdirs

    return Path(platformdirs.user_cache_dir("vesper", appauthor=False)) / "calibration"


def gpu_identity(gpu: Gpu) -> str:
    """The part of the key that names the machine: the GPU's model and its driver."""
    return f"{gpu.name}|{gpu.driver}"


def key(plan: Plan, ref: ModelRef) -> str:
    """A stable name for (GPU, driver, torch, model, dtype, placement, chunk, batch)."""
    parts = {
        "gpu": plan.gpu_id, "torch": torch.__version__, "model": ref.label, "config": _config_digest(ref),
        "dtype": plan.dtype, "level": plan.level, "executor": plan.executor,
        "device_map": sorted(plan.device_map.items()), "cpu": list(plan.compute_on_cpu),
        "streamed": len(plan.streamed_layers), "offload": sorted((k, str(v)) for k, v in plan.offload.items()),
        "chunk": plan.max_chunk_chars, "batch": plan.batch_size,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _config_digest(ref: ModelRef) -> str:
    """Hash of the model's config, memoised per config object (the planner asks for it per candidate)."""
    entry = _DIGESTS.get(id(ref.config))
    if entry is None or entry[0] is not ref.config:
        digest = hashlib.sha256(ref.config.to_json_string(use_diff=False).encode()).hexdigest()[:16]
        entry = _DIGESTS[id(ref.config)] = (ref.config, digest)
    return entry[1]


def lookup(plan: Plan, ref: ModelRef) -> dict | None:
    """The stored record for this plan on this machine, or None."""
    path = cache_dir() / f"{key(plan, ref)}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def store(plan: Plan, ref: ModelRef, record: dict) -> Path:
    path = cache_dir() / f"{key(plan, ref)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)  # atomic: a crash never leaves half a record
    return path


def corrected(plan: Plan, ref: ModelRef) -> Plan:
    """``plan`` with the stored correction applied, if this machine measured one."""
    if plan.device == "cpu" or not plan.gpu_id:
        return plan
    record = lookup(plan, ref)
    if record is None:
        return plan
    delta = int(record["measured_bytes"]) - int(record["predicted_bytes"])
    return replace(plan, memory=replace(plan.memory, calibration=delta), calibrated=True)


def probe_prediction(plan: Plan, ref: ModelRef) -> int:
    """The allocator peak the planner predicts for the probe pass (prefill over the worst positions)."""
    from inference.dtypes import DtypePolicy
    from inference.planner import Workload, prefill_bytes, worst_positions
    from inference.sizes import measure

    dtype = getattr(torch, plan.dtype)
    size = measure(ref, dtype)
    work = Workload(plan.max_chunk_chars, plan.batch_size)
    scale = worst_positions(ref, work.chunk_chars) / max(1, _prompt(ref, work.chunk_chars))
    prefill = int(prefill_bytes(ref, size, work, DtypePolicy(dtype, dtype, "")) * scale)
    m = plan.memory
    return m.weights_resident + m.streamed_buffers + m.kv_cache + prefill


def _prompt(ref: ModelRef, chars: int) -> int:
    from inference.planner import prompt_tokens

    return prompt_tokens(ref, chars)


def calibrate(plan: Plan, ref: ModelRef, loaded: LoadedModel) -> Plan:
    """Measure ``plan`` once on this machine (if not yet done) and return it corrected.

    CPU plans need no calibration: RAM is checked by the planner and the OS pages.
    """
    if plan.device == "cpu" or not torch.cuda.is_available():
        return plan
    if lookup(plan, ref) is None:
        started = time.perf_counter()
        measured = probe(plan, ref, loaded)
        store(plan, ref, {"measured_bytes": measured, "predicted_bytes": probe_prediction(plan, ref),
                          "probe_seconds": round(time.perf_counter() - started, 3), "model": ref.label,
                          "level": plan.level, "executor": plan.executor, "gpu": plan.gpu_id,
                          "torch": torch.__version__, "chunk": plan.max_chunk_chars, "batch": plan.batch_size,
                          "measured_at": time.time()})
    return corrected(replace(plan, memory=replace(plan.memory, calibration=0), calibrated=False), ref)


def probe(plan: Plan, ref: ModelRef, loaded: LoadedModel) -> int:
    """Run the backbone once over the worst-case positions; return the allocator's peak in bytes."""
    from inference.planner import worst_positions

    root, hidden = backbone_root(ref, loaded.model)
    device = torch.device(plan.device)
    sequences = plan.batch_size * ref.adapter.kv_cache_copies
    positions = worst_positions(ref, plan.max_chunk_chars)
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
    from inference.adapters.base import Role

    component = next(c for c in ref.adapter.components(ref.config) if c.role is Role.BACKBONE and c.layers_path)
    root = model.get_submodule(component.layers_path.rsplit(".", 1)[0])
    config = getattr(root, "config", None)
    hidden = int(getattr(config, "hidden_size", 0)) or next(root.parameters()).shape[-1]
    return root, hidden
