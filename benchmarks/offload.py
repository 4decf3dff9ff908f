"""Offload benchmark (CUDA GPU): real-size models with random weights under 4, 6 and 8 GB VRAM caps.

For CSM-1B, VibeVoice-1.5B and VibeVoice-7B (their registered real configs, built without initialising
weights and filled from one random block), and for each cap set with
``torch.cuda.set_per_process_memory_fraction`` (the cap less the CUDA context this process measured):

- Vesper's plan for that cap (a machine with the GPU's PCIe link, the cap as free memory, batch 8);
- ms per decode step at batch 1 and 8 under that plan's executor, under accelerate's
  ``device_map="auto"`` with ``max_memory`` = the cap, and under DeepSpeed ZeRO-3 (the planner's ZeRO rung);
- the PCIe bound of a step (bytes that cross PCIe per step / measured pinned bandwidth), peak VRAM
  (allocator peak plus the context) against the cap, and out-of-memory errors.

A decode step is what offloading slows down: one backbone pass for one new position of every sequence
(CSM: the backbone; its 31 depth-decoder passes per frame are resident and identical under every
executor, so they are left out). A VibeVoice frame is a step of the guided sequence, a step of the
unguided one (classifier-free guidance runs them as two passes with their own caches) and the
diffusion head's 10 denoising passes over both; its real-time factor is frame time / (batch x 133 ms).
The acoustic decoder and semantic encoder (run once per frame) are not timed.

Results: ``benchmarks/results/offload-<gpu>.json`` and ``.md``. Run: ``python benchmarks/offload.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from inference import calibration, executors
from inference.adapters.base import LoadedModel
from inference.hardware import GiB, Gpu, Hardware, probe_gpus
from inference.models import describe
from inference.planner import Plan, Workload, candidates, make_plan

MODELS = ("csm-1b", "vibevoice-1.5b", "vibevoice-7b")
CAPS_GB = (4, 6, 8)
BATCHES = (1, 8)
PREFILL = 256  # positions already in the cache when steps are timed (voice prompt + text)
DIFFUSION_STEPS = 10
WARM_STEPS = 2  # the first steps allocate the growing KV cache's blocks
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--caps", nargs="*", type=float, default=list(CAPS_GB))
    parser.add_argument("--steps", type=int, default=5, help="timed decode steps per cell (median)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--skip", nargs="*", default=[], help="executors to leave out: accelerate, deepspeed")
    args = parser.parse_args()
    # As Engine.load does: cuDNN attention re-plans for every new key length (every decode step).
    torch.backends.cuda.enable_cudnn_sdp(False)
    env = environment()
    print(json.dumps(env, indent=1), flush=True)
    warm_up()
    cells = []
    for name in args.models:
        ref = describe(name)
        master = random_weights(ref)
        for cap in [env["total_bytes"] / 1e9, *args.caps]:
            for cell in model_cells(ref, master, cap, env, args):
                print(json.dumps(cell), flush=True)
                cells.append(cell)
        del master
        gc.collect()
    write(args.out, env, cells)


def environment() -> dict:
    """GPU, PCIe link (NVML), driver, versions, measured pinned bandwidth and the CUDA context size."""
    import accelerate
    import transformers

    torch.cuda.init()
    torch.zeros(1, device="cuda")
    free, total = torch.cuda.mem_get_info()
    context = total - free - torch.cuda.memory_reserved()
    gpu = probe_gpus()[0] if probe_gpus() else None
    link = _current_link()
    versions = {"torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
                "accelerate": accelerate.__version__, "python": platform.python_version()}
    for module in ("deepspeed", "diffusers"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    return {"gpu": torch.cuda.get_device_name(), "total_bytes": total, "driver": gpu.driver if gpu else "",
            "compute_capability": list(torch.cuda.get_device_capability()),
            "pcie_max": f"Gen{gpu.pcie_generation} x{gpu.pcie_width}" if gpu else "unknown",
            "pcie_current": link, "pinned_h2d_gbps": round(pinned_bandwidth(), 1),
            "pageable_h2d_gbps": round(pinned_bandwidth(pinned=False), 1),
            "cuda_context_bytes": context, "versions": versions, "cpu_count": torch.get_num_threads()}


def _current_link() -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return (f"Gen{pynvml.nvmlDeviceGetCurrPcieLinkGeneration(handle)} "
                f"x{pynvml.nvmlDeviceGetCurrPcieLinkWidth(handle)}")
    except Exception as exc:  # noqa: BLE001 - a virtualised GPU may hide its link
        return f"unknown ({type(exc).__name__})"


def pinned_bandwidth(pinned: bool = True, nbytes: int = 1 << 30) -> float:
    """Host-to-device copy rate in GB/s (10^9 bytes), median of 5 copies of 1 GiB."""
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=pinned)
    device = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    times = []
    for _ in range(6):
        torch.cuda.synchronize()
        started = time.perf_counter()
        device.copy_(host, non_blocking=pinned)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    del host, device
    torch.cuda.empty_cache()
    return nbytes / statistics.median(times[1:]) / 1e9


def warm_up(seconds: float = 4.0) -> None:
    """Shared GPUs idle at low clocks: timings taken cold swing widely (up to 1.5x, docs/measurements.md)."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ended = time.perf_counter() + seconds
    while time.perf_counter() < ended:
        for _ in range(20):
            a @ a
        torch.cuda.synchronize()
    del a
    torch.cuda.empty_cache()


def random_weights(ref) -> dict[str, torch.Tensor]:
    """The model's state in bf16 on the CPU, filled from one random block (norm weights 1)."""
    from transformers.initialization import no_init_weights

    with no_init_weights():
        model = ref.adapter.model_class._from_config(ref.config, dtype=torch.bfloat16)
    block = (torch.randn(1 << 24, device="cuda") * 0.02).to(torch.bfloat16).cpu()
    with torch.no_grad():
        for name, param in model.named_parameters():
            flat = param.data.view(-1)
            if "norm" in name and param.ndim == 1:
                flat.fill_(1.0)
                continue
            for start in range(0, flat.numel(), block.numel()):
                piece = flat[start: start + block.numel()]
                piece.copy_(block[: piece.numel()])
    return {k: v for k, v in model.state_dict().items()}


def fresh_model(ref, master: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A new model object sharing ``master``'s tensors: executors rebind parameters, never write them."""
    from transformers.initialization import no_init_weights

    with no_init_weights():
        model = ref.adapter.model_class._from_config(ref.config, dtype=torch.bfloat16)
    model.load_state_dict(master, assign=True, strict=False)
    return model.eval()


def machine(cap_gb: float, env: dict) -> Hardware:
    """This GPU seen as a card with ``cap_gb`` of memory (its own PCIe link), and this host's RAM."""
    import psutil

    real = probe_gpus()[0]
    cap = int(cap_gb * 1e9)
    gpu = Gpu(0, f"{env['gpu']} capped at {cap_gb:g} GB", cap, cap, real.compute_capability,
              real.pcie_generation, real.pcie_width, real.driver)
    memory = psutil.virtual_memory()
    return Hardware(platform.system(), env["cpu_count"], int(memory.total), int(memory.available), (gpu,), "bench")


def model_cells(ref, master, cap_gb: float, env: dict, args) -> list[dict]:
    hardware = machine(cap_gb, env)
    out = []
    plan = make_plan(ref, hardware, Workload(300, max(BATCHES)))
    base = {"model": ref.label, "cap_gb": cap_gb}
    if cap_gb >= env["total_bytes"] / 1e9:  # the reference: everything resident, no cap
        return [{**base, "executor": "resident (no cap)", **run_cell(ref, master, plan, cap_gb, env, args)}]
    out.append({**base, "executor": f"vesper:{plan.executor}", **run_cell(ref, master, plan, cap_gb, env, args)})
    if "accelerate" not in args.skip:
        out.append({**base, "executor": "accelerate-auto", **run_cell(ref, master, None, cap_gb, env, args)})
    if "deepspeed" not in args.skip:
        zero = next((p for p in candidates(ref, hardware, Workload(300, max(BATCHES)), "deepspeed")
                     if p.executor == "deepspeed"), None)
        if zero is None:
            reason = next((r for r in plan.reasons if "DeepSpeed" in r), "no ZeRO-3 plan fits")
            out.append({**base, "executor": "deepspeed-zero3", "skipped": reason})
        else:
            out.append({**base, "executor": "deepspeed-zero3", **run_cell(ref, master, zero, cap_gb, env, args)})
    return out


def run_cell(ref, master, plan: Plan | None, cap_gb: float, env: dict, args) -> dict:
    """Place a fresh model (plan's executor, or accelerate auto when plan is None), time steps at each batch."""
    if plan is not None and plan.device == "cpu":
        return {"plan": _plan_summary(plan), "skipped": "the plan for this cap runs on the CPU"}
    context = env["cuda_context_bytes"]
    allowed = int(cap_gb * 1e9) - context
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, allowed / env["total_bytes"]))
    torch.cuda.reset_peak_memory_stats()
    result: dict = {"plan": _plan_summary(plan) if plan else "accelerate infer_auto_device_map(max_memory=cap)"}
    model, keep = fresh_model(ref, master), []
    started = time.perf_counter()
    try:
        if plan is None:
            keep = _accelerate_auto(model, allowed)
        else:
            loaded = LoadedModel(model, None, Path("."), torch.bfloat16, torch.device("cpu"))
            keep = executors.get(plan.executor).place(loaded, replace(plan, device="cuda:0")).keep
        result["place_s"] = round(time.perf_counter() - started, 1)
        offloaded = _offloaded_bytes(model, plan)
        for batch in [b for b in BATCHES if plan is None or b <= plan.batch_size]:
            steps = args.steps if (plan is not None and plan.executor != "accelerate") else max(2, args.steps // 2)
            result[f"b{batch}"] = time_steps(ref, model, batch, steps)
        passes = ref.adapter.kv_cache_copies
        bound = 1000 * offloaded / (env["pinned_h2d_gbps"] * 1e9)
        result.update({"offloaded_bytes_per_pass": offloaded, "pcie_bound_ms_per_pass": round(bound, 1),
                       "passes_per_step": passes})
    except torch.OutOfMemoryError as exc:
        result["oom"] = str(exc).splitlines()[0][:200]
    except Exception as exc:  # noqa: BLE001 - a failing baseline is a result, not a crash of the benchmark
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    finally:
        result["peak_vram_bytes"] = torch.cuda.max_memory_reserved() + context
        result["peak_within_cap"] = result["peak_vram_bytes"] <= cap_gb * 1e9
        for item in keep:
            if hasattr(item, "close"):
                item.close()
        del model, keep
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(1.0)
    return result


def _plan_summary(plan: Plan) -> dict:
    return {"level": plan.level, "executor": plan.executor, "streamed_layers": len(plan.streamed_layers),
            "batch_size": plan.batch_size, "lookups_on_cpu": list(plan.lookups_on_cpu),
            "compute_on_cpu": list(plan.compute_on_cpu), "max_chunk_chars": plan.max_chunk_chars,
            "predicted_peak_bytes": plan.predicted_peak_bytes, "persist_bytes": plan.offload.get("persist_bytes"),
            "reasons": list(plan.reasons)}


def _accelerate_auto(model: torch.nn.Module, allowed: int) -> list:
    from accelerate import dispatch_model, infer_auto_device_map

    device_map = infer_auto_device_map(model, max_memory={0: allowed, "cpu": 200 * GiB},
                                       no_split_module_classes=model._no_split_modules or [], dtype=torch.bfloat16)
    dispatch_model(model, device_map=device_map, main_device="cuda:0")
    return []


def _offloaded_bytes(model: torch.nn.Module, plan: Plan | None) -> int:
    """Bytes of backbone weights that cross PCIe in one pass under this placement."""
    if plan is None:  # accelerate: whatever it left off the GPU (offloaded modules show as meta)
        return sum(p.numel() * p.element_size() for p in model.parameters() if p.device.type == "meta")
    if plan.executor == "deepspeed":
        return sum(p.ds_numel * p.element_size() for p in model.parameters()
                   if hasattr(p, "ds_numel") and not getattr(p, "ds_persist", False))
    slots = int(plan.offload.get("slots", 2))
    layers = [model.get_submodule(p) for p in plan.streamed_layers]
    if plan.executor == "streamed" and len(layers) <= slots:
        return 0
    return sum(t.numel() * t.element_size() for layer in layers for t in layer.parameters())


def time_steps(ref, model: torch.nn.Module, batch: int, steps: int) -> dict:
    """Median ms per decode step (and per VibeVoice frame) after a prefill and one warm-up step."""
    from transformers import DynamicCache

    root, hidden = calibration.backbone_root(ref, model)
    guided = ref.adapter.kv_cache_copies == 2
    caches = [DynamicCache(config=root.config) for _ in range(2 if guided else 1)]
    with torch.inference_mode():
        for i, cache in enumerate(caches):  # the unguided sequence starts from one position
            length = PREFILL if i == 0 else 1
            root(inputs_embeds=_embeds(batch, length, hidden), past_key_values=cache, use_cache=True)
        times = []
        for step in range(steps + WARM_STEPS):
            torch.cuda.synchronize()
            started = time.perf_counter()
            for cache in caches:
                root(inputs_embeds=_embeds(batch, 1, hidden), past_key_values=cache, use_cache=True)
            if guided:
                _diffusion(model, batch, hidden)
            torch.cuda.synchronize()
            if step >= WARM_STEPS:
                times.append(1000 * (time.perf_counter() - started))
    ms = statistics.median(times)
    out = {"ms_per_step": round(ms, 1), "frames_per_s": round(1000 * batch / ms, 2)}
    if guided:
        out["rtf"] = round(ms / (batch * 1000 / ref.adapter.frame_rate), 3)
    return out


def _embeds(batch: int, length: int, hidden: int) -> torch.Tensor:
    return torch.randn(batch, length, hidden, device="cuda", dtype=torch.bfloat16) * 0.02


def _diffusion(model: torch.nn.Module, batch: int, hidden: int) -> None:
    head = model.model.diffusion_head
    latent = model.config.audio_config.hidden_size
    condition = torch.randn(2 * batch, hidden, device="cuda", dtype=torch.bfloat16)
    noisy = torch.randn(2 * batch, latent, device="cuda", dtype=torch.bfloat16)
    for t in range(DIFFUSION_STEPS):
        head(noisy, torch.full((2 * batch,), float(t), device="cuda", dtype=torch.bfloat16), condition=condition)


def write(folder: Path, env: dict, cells: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    slug = env["gpu"].lower().replace("nvidia ", "").replace(" ", "-")
    (folder / f"offload-{slug}.json").write_text(json.dumps({"environment": env, "cells": cells}, indent=1))
    (folder / f"offload-{slug}.md").write_text(markdown(env, cells))
    print(markdown(env, cells))


def markdown(env: dict, cells: list[dict]) -> str:
    v = env["versions"]
    lines = [f"# Offload benchmark: {env['gpu']}", "",
             f"PCIe {env['pcie_current']} (max {env['pcie_max']}), pinned host-to-device "
             f"{env['pinned_h2d_gbps']} GB/s, pageable {env['pageable_h2d_gbps']} GB/s; driver {env['driver']}; "
             f"torch {v['torch']} (CUDA {v['cuda']}), transformers {v['transformers']}, accelerate "
             f"{v['accelerate']}, deepspeed {v['deepspeed']}, diffusers {v['diffusers']}. CUDA context "
             f"{env['cuda_context_bytes'] / 1e9:.2f} GB counted inside every cap.", "",
             "`x bound` divides the step time by the PCIe bound (offloaded bytes per step / pinned bandwidth); "
             "`x floor` by the larger of that bound and the same model's uncapped resident step time, the "
             "least any placement can take.", "",
             "| model | cap | executor | plan | ms/step b1 | ms/step b8 | PCIe bound/step | x bound b1 | x floor b1 | "
             "fps b8 / b1 | RTF b8 | peak VRAM | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    resident = {c["model"]: c.get("b1", {}).get("ms_per_step") for c in cells if c["executor"] == "resident (no cap)"}
    for c in cells:
        plan = c.get("plan")
        what = (f"{plan['level']}, {plan['streamed_layers']} layers off, batch {plan['batch_size']}"
                if isinstance(plan, dict) else "auto")
        b1, b8 = c.get("b1", {}), c.get("b8", {})
        bound = c.get("pcie_bound_ms_per_pass", 0) * c.get("passes_per_step", 1)
        ratio = f"{b1['ms_per_step'] / bound:.2f}" if b1 and bound else ""
        floor = max(bound, resident.get(c["model"]) or 0)
        floor_ratio = f"{b1['ms_per_step'] / floor:.2f}" if b1 and floor else ""
        scaling = f"{b8['frames_per_s'] / b1['frames_per_s']:.1f}x" if b1 and b8 else ""
        note = c.get("skipped") or c.get("oom") and "OOM" or c.get("error", "")
        peak = c.get("peak_vram_bytes")
        lines.append(
            f"| {c['model']} | {c['cap_gb']:g} GB | {c['executor']} | {what} | {b1.get('ms_per_step', '')} | "
            f"{b8.get('ms_per_step', '')} | {bound:.1f} | {ratio} | {floor_ratio} | {scaling} | {b8.get('rtf', '')} | "
            f"{peak / 1e9:.2f} GB{'' if c.get('peak_within_cap', True) else ' OVER'} | {note} |"
            if peak else f"| {c['model']} | {c['cap_gb']:g} GB | {c['executor']} | {what} | | | | | | | | | {note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
