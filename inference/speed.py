"""How fast a plan will decode, predicted before any download: the real-time factor (seconds per audio second).

A decode step reads every weight it uses at least once, so on a GPU a frame takes at least the resident
weights' bytes over the memory bandwidth (at ``GPU_EFFICIENCY`` of the specification sheet's figure),
plus the offloaded bytes over their link (PCIe from pinned memory, a sixth of it from pageable memory,
``DISK_READ_GBPS`` from disk; a plan reading the checkpoint's memory-mapped files says how many bytes a
pass of the model reads in ``offload["disk_bytes"]``, counted once per KV cache the family keeps (plain
``generate`` runs classifier-free guidance's second sequence as a second pass), and they cross PCIe after
the disk, counted one after the other). Small models on fast GPUs are bound by kernel launches instead: the
measured steady state on the benchmark GPU (``MEASURED``) is the floor. On the CPU the same reasoning
uses ``CPU_BANDWIDTH_GBPS``, floored by the CPU figures measured here.

The figures in ``MEASURED`` are copied from ``benchmarks/results/realtime.md`` (fast path, batch 1, bf16,
8 GiB cap where measured; Pocket TTS on the CPU: the dev VM, 2 threads, fp32 fast tier).
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.families import FAMILIES
from inference.planning.types import Plan

GPU_EFFICIENCY = 0.6  # share of the memory bandwidth a decode step's small matrix-vector products reach
PAGEABLE_SLOWDOWN = 6.0  # accelerate's synchronous copies from pageable memory: 5-9x slower than streaming
# Reading weights from disk every decode step, 10^9 bytes/s: a conservative figure for a laptop's NVMe SSD. The
# makers' sheets give 3.5 GB/s sequential read for PCIe 3.0 x4 drives (Samsung 970 EVO Plus, WD Blue SN570) and
# 5-7 GB/s for PCIe 4.0 ones, at queue depths page faults on a memory map do not reach; a SATA SSD reads ~0.55.
# Layers the page cache still holds come faster: the figure is what a step costs when it holds none of them.
DISK_READ_GBPS = 2.0
CPU_BANDWIDTH_GBPS = 20.0  # what 2-4 laptop cores reach of dual-channel DDR4/DDR5 in matrix-vector products


@dataclass(frozen=True)
class Measured:
    """A steady-state decode speed measured on the benchmark machine, with where it is recorded."""

    ms_per_frame: float
    device: str
    source: str = "benchmarks/results/realtime.md"


MEASURED: dict[tuple[str, str], Measured] = {  # (family, "gpu" | "cpu") -> figure
    ("csm", "gpu"): Measured(13.4, "H100 80GB HBM3, fast path, 8 GiB cap"),
    ("vibevoice", "gpu"): Measured(10.5, "H200, fast path, 8 GiB cap"),
    ("pocket_tts", "gpu"): Measured(7.8, "H100, fast path (eager)"),
    ("pocket_tts", "cpu"): Measured(34.0, "dev VM, AMD EPYC AVX2, 2 threads, fp32 fast tier (RTF 0.42-0.51)"),
}


def real_time_factor(plan: Plan, family: str, gpu_bandwidth_gbps: float, pcie_gbps: float) -> float:
    """Predicted seconds of decoding per second of audio under ``plan`` (lower is faster; 1 is real time)."""
    frame_ms = 1000 / FAMILIES[family].frame_rate
    weights = sum(info["bytes"] for info in plan.components.values())
    disk = plan.offload.get("disk_bytes", 0)  # per pass of the model; guidance's second sequence may pass again
    disk_ms = 1000 * disk * FAMILIES[family].kv_cache_copies / (DISK_READ_GBPS * 1e9)
    if plan.device == "cpu":
        bound = 1000 * weights / (CPU_BANDWIDTH_GBPS * 1e9) + disk_ms
        floor = MEASURED.get((family, "cpu"))
        return max(bound, floor.ms_per_frame if floor else 0.0) / frame_ms
    on_cpu = sum(info["bytes"] for info in plan.components.values() if info["placement"].startswith("cpu"))
    resident = plan.memory.weights_resident
    offloaded = max(0, weights - resident - on_cpu)  # what crosses a link every decode step
    step = 1000 * resident / (gpu_bandwidth_gbps * 1e9 * GPU_EFFICIENCY)
    if offloaded:
        link = {"streamed": pcie_gbps, "accelerate": pcie_gbps / PAGEABLE_SLOWDOWN}.get(plan.executor, pcie_gbps)
        if "disk" in plan.device_map.values() and not disk:  # accelerate's or DeepSpeed's files on disk
            link = min(link, DISK_READ_GBPS)
        step += 1000 * offloaded / (link * 1e9) + disk_ms
    floor = MEASURED.get((family, "gpu"))
    return max(step, floor.ms_per_frame if floor else 0.0) / frame_ms
