"""VibeVoice-1.5B's GPU memory through the app's own path, phase by phase, against the planner's prediction.

For each VRAM limit (default 4, 5 and 6 GiB; 0 is none, the whole GPU: a resident plan, whose voice
prompt encodes the reference on the GPU), in a fresh process as every CLI run is: the machine as
``--vram-limit`` makes the planner see it (``jobs.resolve``: NVML's free memory capped at the limit), the plan
for the worker's default micro-batch, the worker's allocator cap (``cap_allocator``), then three phases:

- ``load``: ``Engine.load`` (the executor places the model; the first load of a plan calibrates it with one
  prefill probe; the fast session allocates its caches and captures its frame graph);
- ``voice``: the voice prompt of a 20 s reference (the longest Vesper keeps), i.e. the acoustic encoder on
  the reference, wherever the plan puts it (the CPU on offload plans);
- ``first_chunk``: a batch of chunks as long as the plan allows, decoded to the end (the fast path where the
  plan allows it, as the worker runs it).

Per phase: torch's peak allocated and reserved bytes, and NVML's peak for the GPU above its level before
this process touched CUDA (the whole process: context, allocator, library workspaces), against the plan's
predicted allocator peak (everything but the CUDA runtime and the margin) and predicted total. A phase that
runs out of memory is recorded with the error: the prediction was short (the worker would step down).

The model is a folder: ``python -m tests.tiny_models --full-size DIR vibevoice-1.5b`` (real configuration,
random weights; speed and memory do not depend on weight values); ``--checkpoint DIR`` builds it there when
missing. Writes ``benchmarks/results/vibevoice-memory-<tag>.{json,md}`` with the GPU and its PCIe link.

    python3 benchmarks/vibevoice_memory.py --checkpoint /tmp/full/vibevoice-1.5b --tag h200
    python3 benchmarks/vibevoice_memory.py --plans-only --hardware laptop-4050-6g   # any machine, no GPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the GPU machine has no network; everything is local

from inference.defaults import MAX_REFERENCE_SECONDS  # noqa: E402 - needs the repository on sys.path
from inference.hardware import resolve as resolve_hardware  # noqa: E402
from inference.hardware import with_vram_limit  # noqa: E402
from inference.models import describe  # noqa: E402
from inference.planner import make_plan  # noqa: E402
from inference.planning.types import Plan, Workload  # noqa: E402

GiB = 1024**3
MODEL = "vibevoice-1.5b"
VOICE = REPO / "assets" / "voices" / "sample.wav"
TEXT = ("The harbour was quiet when the storm finally passed. Fishermen walked along the pier, counting the boats "
        "that had come back and the ones that had not. Nobody spoke much; the gulls did the talking. By noon the "
        "sun had found the town again, and the bakery opened its doors as if nothing had happened at all.")
CELL_TIMEOUT_S = 200
BUDGET_S = 285  # the whole run by default, checkpoint build included: cells that would start later are skipped


def plan_for(model: str, hardware, limit_gib: float, chars: int, batch: int) -> tuple[object, object, Plan]:
    """The model, the machine under the limit and the plan, as a job with ``--vram-limit`` gets them."""
    ref = describe(model)
    machine = with_vram_limit(hardware, int(limit_gib * GiB))
    return ref, machine, make_plan(ref, machine, Workload(chars, batch))


def plan_summary(plan: Plan) -> dict:
    memory = plan.memory
    return {"level": plan.level, "executor": plan.executor, "dtype": plan.dtype, "batch": plan.batch_size,
            "chunk_chars": plan.max_chunk_chars, "streamed_layers": len(plan.streamed_layers),
            "prompt_on_cpu": list(plan.prompt_on_cpu), "compute_on_cpu": list(plan.compute_on_cpu),
            "predicted_total_gib": round(memory.total / GiB, 3),
            "predicted_allocator_peak_gib": round(memory.allocator_peak / GiB, 3),
            "breakdown_gib": {k: round(v / GiB, 3) for k, v in vars(memory).items()}}


# --------------------------------------------------------------------------------------------- one cell


def run_cell(checkpoint: Path, limit_gib: float, chars: int, batch: int, snapshots: Path | None = None) -> dict:
    """One limit in this (fresh) process: plan, cap, load, voice, first chunk; the figures of each phase.

    With ``snapshots``, torch records every allocation's stack, and a phase that runs out of memory leaves
    ``oom-<limit>.pickle`` there (``torch.cuda.memory._dump_snapshot``: what was live, allocated where).
    """
    from inference.settings import configure_cuda_allocator

    configure_cuda_allocator()  # as the worker does, before torch starts
    import numpy as np
    import pynvml
    import soundfile as sf
    import torch

    from benchmarks.memory_matrix import NvmlPeak
    from inference import paths
    from inference.engine import Engine
    from inference.hardware import detect
    from inference.text import chunk_text
    from inference.worker.memory import is_out_of_memory
    from inference.worker.process import cap_allocator

    os.environ[paths.CACHE_DIR_ENV] = tempfile.mkdtemp(prefix="vesper-bench-")  # no calibration from earlier runs
    pynvml.nvmlInit()
    base = int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used)  # before CUDA is touched
    ref, _, plan = plan_for(str(checkpoint), detect(), limit_gib, chars, batch)
    cell = {"limit_gib": limit_gib, "plan": plan_summary(plan), "phases": {}, "finished": False}
    if not plan.device.startswith("cuda"):
        cell["error"] = f"no GPU plan under {limit_gib} GiB ({plan.level} on {plan.device})"
        return cell
    device = torch.device(plan.device)
    cap_allocator(plan, int(limit_gib * GiB))  # 0: no cap, as without --vram-limit
    if snapshots:
        torch.cuda.memory._record_memory_history(max_entries=2_000)  # live blocks keep their stacks

    @contextlib.contextmanager
    def phase(name: str):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        record = cell["phases"][name] = {}
        nvml = NvmlPeak(period_s=0.01)
        nvml.base = base  # the GPU's level before this process touched CUDA, not the phase's start
        nvml.__enter__()
        try:
            yield
            torch.cuda.synchronize(device)
        finally:
            nvml.__exit__()
            record.update(seconds=round(time.perf_counter() - started, 2),
                          torch_peak_allocated_gib=round(torch.cuda.max_memory_allocated(device) / GiB, 3),
                          torch_peak_reserved_gib=round(torch.cuda.max_memory_reserved(device) / GiB, 3),
                          torch_allocated_after_gib=round(torch.cuda.memory_allocated(device) / GiB, 3),
                          nvml_peak_gib=round(nvml.peak / GiB, 3))

    audio, rate = sf.read(VOICE, dtype="float32")
    samples = int(MAX_REFERENCE_SECONDS * rate)
    reference = np.tile(audio, -(-samples // len(audio)))[:samples]
    texts = [chunk_text(" ".join([TEXT] * 4), plan.max_chunk_chars)[0]] * plan.batch_size
    try:
        with phase("load"):
            engine = Engine.load(ref, plan)
        cell.update(calibrated_plan=plan_summary(engine.plan), decoder=engine.plan.reasons[-1],
                    session=getattr(engine.fast, "kind", None))
        with phase("voice"):
            prompt = engine.voice_prompt(reference, rate, None)
        with phase("first_chunk"):
            samples = sum(len(piece) for _, piece in engine.stream_batch(prompt, texts, list(range(len(texts)))))
        adapter = engine.ref.adapter  # a random-weight chunk runs to its frame budget (tests.tiny_models.full_size)
        cell.update(finished=True, chunk_chars=len(texts[0]), audio_s=round(samples / engine.sample_rate, 2),
                    budget_s=round(len(texts) * adapter.frames_for_text(texts[0]) / adapter.frame_rate, 2))
    except Exception as exc:  # noqa: BLE001 - an out-of-memory phase is the result this benchmark looks for
        cell["error"] = f"{'out of memory' if is_out_of_memory(exc) else type(exc).__name__}: " \
                        f"{' '.join(str(exc).split())[:600]}"
        if snapshots and is_out_of_memory(exc):
            snapshots.mkdir(parents=True, exist_ok=True)
            torch.cuda.memory._dump_snapshot(str(snapshots / f"oom-{limit_gib:g}.pickle"))
            cell["live_at_oom_gib"] = live_allocations(torch.cuda.memory._snapshot())
    peaks = [p for p in cell["phases"].values() if "nvml_peak_gib" in p]
    if peaks:
        limit_ok = max(p["nvml_peak_gib"] for p in peaks) <= (limit_gib or float("inf"))
        allocator = plan.memory.allocator_peak / GiB
        cell.update(nvml_peak_gib=max(p["nvml_peak_gib"] for p in peaks), within_limit=limit_ok,
                    torch_peak_reserved_gib=max(p["torch_peak_reserved_gib"] for p in peaks),
                    reserved_over_predicted_allocator=round(
                        max(p["torch_peak_reserved_gib"] for p in peaks) / allocator, 3))
    return cell


def live_allocations(snapshot: dict, top: int = 30) -> dict[str, float]:
    """GiB of live tensors by where they were allocated: the innermost frame in Vesper or transformers."""
    sizes: dict[str, int] = {}
    for segment in snapshot["segments"]:
        for block in segment["blocks"]:
            if block["state"] != "active_allocated":
                continue
            frames = block.get("frames") or []
            where = next((f"{f['filename'].split('site-packages/')[-1].split(str(REPO) + '/')[-1]}:{f['line']} "
                          f"{f['name']}" for f in frames
                          if "/inference/" in f["filename"] or "transformers/" in f["filename"]), "other")
            sizes[where] = sizes.get(where, 0) + block["size"]
    ranked = sorted(sizes.items(), key=lambda kv: -kv[1])[:top]
    return {where: round(size / GiB, 4) for where, size in ranked}


# ------------------------------------------------------------------------------------------ the matrix


def environment() -> dict:
    """memory_matrix's GPU, link and driver, with the link's current state and the library versions."""
    import pynvml
    import torch
    import transformers

    from benchmarks.memory_matrix import environment as gpu_environment

    gpu = gpu_environment()  # initialises NVML
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    return {**gpu,
            "pcie_now": f"Gen{pynvml.nvmlDeviceGetCurrPcieLinkGeneration(handle)} "
                        f"x{pynvml.nvmlDeviceGetCurrPcieLinkWidth(handle)}",
            "torch": torch.__version__, "transformers": transformers.__version__, "cpu_count": os.cpu_count()}


def ensure_checkpoint(folder: Path) -> Path:
    """The full-size random checkpoint, built on the GPU when the folder has none."""
    if not (folder / "config.json").exists():
        started = time.perf_counter()
        # in a child process: this one must not hold a CUDA context while the cells measure the GPU
        code = "import sys; from pathlib import Path; from tests.tiny_models.full_size import build_full; " \
               f"build_full({MODEL!r}, Path(sys.argv[1]))"
        subprocess.run([sys.executable, "-c", code, str(folder)], cwd=REPO, check=True)
        print(f"built {folder} in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def run_matrix(checkpoint: Path, limits: list[float], chars: int, batch: int, deadline: float,
               snapshots: Path | None = None) -> list[dict]:
    """Each limit in its own process (a fresh CUDA context, pinned registrations, calibration records)."""
    cells = []
    for limit in limits:
        left = deadline - time.perf_counter()
        if left < 30:
            cells.append({"limit_gib": limit, "finished": False, "error": "skipped: the run's time was up"})
            continue
        timeout = min(CELL_TIMEOUT_S, left)
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [sys.executable, __file__, "--cell", str(limit), "--checkpoint", str(checkpoint),
                       "--chars", str(chars), "--batch", str(batch), "--cell-out", out.name]
            if snapshots:
                command += ["--snapshots", str(snapshots)]
            try:
                done = subprocess.run(command, cwd=REPO, timeout=timeout, capture_output=True, text=True)
                cell = json.loads(Path(out.name).read_text()) if done.returncode == 0 else \
                    {"limit_gib": limit, "finished": False, "error": (done.stderr or done.stdout)[-600:]}
            except subprocess.TimeoutExpired:
                cell = {"limit_gib": limit, "finished": False, "error": f"timed out after {timeout:.0f} s"}
        print(json.dumps(cell), flush=True)
        cells.append(cell)
    return cells


def markdown(cells: list[dict], env: dict, command: str) -> str:
    lines = [f"# VibeVoice-1.5B memory through the app, by phase ({env['gpu']}, PCIe {env['pcie_max']} "
             f"(now {env['pcie_now']}), driver {env['driver']}, torch {env['torch']}, transformers "
             f"{env['transformers']})", "", f"`{command}`", "",
             "Predicted: the plan's allocator peak (weights, streamed buffers, KV cache, activations) and its "
             "total (plus the CUDA runtime and the margin). Measured per phase: torch's peak reserved and "
             "allocated, and NVML's peak for the process.", "",
             "| limit GiB | plan | predicted allocator / total GiB | phase | s | torch reserved GiB | "
             "torch allocated GiB | NVML GiB | <= limit |", "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        c = {**c, "limit_gib": c["limit_gib"] or float("inf")}  # 0: no limit
        plan = c.get("plan", {})
        what = (f"{plan.get('level')} ({plan.get('streamed_layers')} layers streamed, batch {plan.get('batch')}, "
                f"{plan.get('chunk_chars')} chars, CPU: {', '.join(plan.get('prompt_on_cpu', [])) or '-'})"
                if plan else "-")
        predicted = f"{plan.get('predicted_allocator_peak_gib')} / {plan.get('predicted_total_gib')}" if plan else "-"
        phases = c.get("phases") or {"-": {}}
        for name, p in phases.items():
            ok = "" if "nvml_peak_gib" not in p else ("yes" if p["nvml_peak_gib"] <= c["limit_gib"] else "NO")
            lines.append(f"| {c['limit_gib']:g} | {what} | {predicted} | {name} | {p.get('seconds', '')} | "
                         f"{p.get('torch_peak_reserved_gib', '')} | {p.get('torch_peak_allocated_gib', '')} | "
                         f"{p.get('nvml_peak_gib', '')} | {ok} |")
        status = f"finished: {c.get('audio_s')} s of audio, budget {c.get('budget_s')} s" if c.get("finished") \
            else f"**failed**: {c.get('error', '')}"
        lines.append(f"| {c['limit_gib']:g} | {status} | | | | | | | |")
    lines += ["", "Decoders: " + "; ".join(f"{c['limit_gib']:g} GiB: {c.get('session') or c.get('decoder', '-')}"
                                          for c in cells)]
    return "\n".join(lines) + "\n"


def plans_only(hardware: str | None, limits: list[float], chars: int, batch: int) -> int:
    """The plans the limits give on ``hardware`` (a preset, a JSON description, or this machine): no GPU needed."""
    machine = resolve_hardware(hardware)
    for limit in limits:
        _, limited, plan = plan_for(MODEL, machine, limit, chars, batch)
        print(json.dumps({"limit_gib": limit, **plan_summary(plan)}))
        for reason in plan.reasons:
            print("    " + reason)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path(tempfile.gettempdir()) / "vesper-full" / MODEL,
                        help="the full-size random checkpoint folder (built there when missing)")
    parser.add_argument("--limits", nargs="+", type=float, default=[4, 5, 6],
                        help="VRAM limits in GiB (3.75: a 4 GB card's free memory, where the towers stream too)")
    parser.add_argument("--chars", type=int, default=300, help="the chunk length asked for (the plan may shorten)")
    parser.add_argument("--batch", type=int, default=4, help="chunks decoded together (the worker's default)")
    parser.add_argument("--plans-only", action="store_true", help="print the plans, run nothing (CPU is enough)")
    parser.add_argument("--hardware", help="with --plans-only: a preset or JSON description instead of this machine")
    parser.add_argument("--snapshots", type=Path, help="record allocations; a cell that runs out of memory "
                                                        "dumps torch's memory snapshot here")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="start no cell after this many seconds")
    parser.add_argument("--tag", default="local")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--cell", type=float, help=argparse.SUPPRESS)  # internal: one limit, in a fresh process
    parser.add_argument("--cell-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plans_only:
        return plans_only(args.hardware, args.limits, args.chars, args.batch)
    if args.cell is not None:
        args.cell_out.write_text(json.dumps(run_cell(args.checkpoint, args.cell, args.chars, args.batch,
                                                    args.snapshots)))
        return 0
    started = time.perf_counter()
    checkpoint = ensure_checkpoint(args.checkpoint)
    env = environment()
    cells = run_matrix(checkpoint, args.limits, args.chars, args.batch, started + args.budget_s, args.snapshots)
    env["wall_s"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"vibevoice-memory-{args.tag}"
    command = "python3 benchmarks/vibevoice_memory.py " + " ".join(argv if argv is not None else sys.argv[1:])
    stem.with_suffix(".json").write_text(json.dumps({"environment": env, "command": command, "cells": cells},
                                                    indent=1))
    stem.with_suffix(".md").write_text(markdown(cells, env, command))
    print(f"wrote {stem}.md in {env['wall_s']} s")
    return 0 if all(c.get("finished") and c.get("within_limit") for c in cells) else 1


if __name__ == "__main__":
    raise SystemExit(main())
