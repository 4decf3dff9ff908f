"""The worker's memory: per-job peaks, giving memory back, and recognising out-of-memory and CUDA errors.

Users leave Vesper open for hours, so every job ends by returning what it used (collect cycles, empty
CUDA's cache) and records what stayed resident; growth across jobs is a leak the tests catch.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psutil
import torch

from inference.planning.types import Plan
from inference.worker.protocol import MemorySample, MemoryStats

# CUDA's allocator, cuBLAS and the CPU allocator say "out of memory" in different words.
_OOM_MARKERS = ("out of memory", "cudaerrormemoryallocation", "cublas_status_alloc_failed",
                "can't allocate memory")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.OutOfMemoryError, or an accelerator/runtime error whose message means the same."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _OOM_MARKERS)


def is_cuda_error(exc: BaseException) -> bool:
    """A CUDA error other than out-of-memory (``torch.AcceleratorError``, or a runtime error that says "CUDA
    error"): after one the process's CUDA state is not trusted, so the job goes on in a fresh worker."""
    if is_out_of_memory(exc):
        return False
    return isinstance(exc, torch.AcceleratorError) or (isinstance(exc, RuntimeError)
                                                        and "cuda error" in str(exc).lower())


def release() -> None:
    """Give memory back: cycles first (they may hold tensors), then the blocks CUDA keeps cached."""
    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def release_all() -> None:
    """``release``, and also cuBLAS's per-stream workspaces (tens of MB that outlive every tensor).

    For unloading a model: VRAM goes back to the idle baseline. torch's own leak checks clear them
    the same way; the next matmul allocates them again.
    """
    release()
    clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)  # absent in CPU builds
    if torch.cuda.is_initialized() and clear_workspaces is not None:
        clear_workspaces()
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class Held:
    """What the loaded engine holds on its GPU for its placement: torch's allocated bytes (weights, caches,
    workspaces), and whether its KV caches are among them (a fast session's are static; plain ``generate``
    allocates them per chunk)."""

    allocated_bytes: int
    static_caches: bool


def shortfall(plan: Plan, free_bytes: int, reserved_bytes: int, held: Held | None = None) -> int:
    """Bytes a plan still lacks on its GPU before its next chunk; positive means it would probably run out
    of memory.

    A plan that places the model anew (``held`` None) needs its whole allocator peak, out of what is free and
    everything torch holds (unloading gives it back). A plan whose placement is loaded keeps what it holds,
    caches sized for the batch it was loaded at included: its chunk needs the transient part of the
    prediction (activations, and the KV caches where they are not static) on top, out of what is free and
    what torch holds unallocated. Counting all it holds as reusable let a smaller batch of the same placement
    look as if it fitted in memory that its caches still filled.
    """
    if held is None:
        return plan.memory.allocator_peak - reserved_bytes - free_bytes
    transient = plan.memory.activations + (0 if held.static_caches else plan.memory.kv_cache)
    return transient - (reserved_bytes - held.allocated_bytes) - free_bytes


def allocator_fraction(limit_bytes: int, context_bytes: int, total_bytes: int) -> float:
    """The share of a GPU torch's allocator may hold so that the process stays within ``limit_bytes``.

    The limit counts the CUDA context (NVML's view of the process); the allocator's share is what is
    left of it, as a fraction of the whole GPU (``torch.cuda.set_per_process_memory_fraction``).
    """
    return min(1.0, max(0.0, (limit_bytes - context_bytes) / total_bytes))


def free_under_limit(free_bytes: int, limit_bytes: int, reserved_bytes: int, context_bytes: int) -> int:
    """What the pre-flight may count as free: NVML's free memory, and no more than the limit leaves
    beside the context and what torch already holds (0 limit: NVML's figure)."""
    if limit_bytes <= 0:
        return free_bytes
    return max(0, min(free_bytes, limit_bytes - context_bytes - reserved_bytes))


def gpu_free_bytes(device: str) -> int | None:
    """Free memory on a CUDA device through NVML (it sees other programs; torch's own stats do not)."""
    info = _nvml_memory(device)
    return None if info is None else int(info.free)


def sample(job_id: str, device: str, limit_bytes: int) -> MemorySample:
    """The worker's memory now, for a status bar: RSS always; torch's and NVML's figures on a CUDA plan.

    NVML reads the whole GPU without creating a CUDA context (a CPU plan never initialises CUDA).
    """
    rss = int(psutil.Process().memory_info().rss)
    if not device.startswith("cuda"):
        return MemorySample(job_id, rss, limit_bytes=limit_bytes)
    allocated = torch.cuda.memory_allocated(device) if torch.cuda.is_initialized() else 0
    reserved = torch.cuda.memory_reserved(device) if torch.cuda.is_initialized() else 0
    info = _nvml_memory(device)
    used, total = (int(info.used), int(info.total)) if info is not None else (0, 0)
    return MemorySample(job_id, rss, allocated, reserved, used, total, limit_bytes)


def _nvml_memory(device: str):
    handle = _nvml_handle(torch.device(device).index or 0)
    if handle is None:
        return None
    import pynvml

    return pynvml.nvmlDeviceGetMemoryInfo(handle)


@cache
def _nvml_handle(index: int):
    """NVML stays initialised for the worker's lifetime: re-initialising before every chunk costs time."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:  # noqa: BLE001 - no NVML means no pre-flight check, not a failed job
        return None


class MemoryMeter:
    """Peak and resident memory of one job.

    On Linux the kernel's RSS high-water mark is reset per job (``clear_refs``), so the peak is exact;
    elsewhere it is the largest RSS seen at chunk boundaries. CUDA peaks come from torch's allocator.
    """

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._sampled_peak = 0
        self._kernel_peak = sys.platform.startswith("linux") and _CLEAR_REFS.exists()

    def start(self) -> None:
        if self._kernel_peak:
            try:
                _CLEAR_REFS.write_text("5")  # 5 resets VmHWM to the current RSS
            except OSError:
                self._kernel_peak = False
        self._sampled_peak = self._rss()
        if torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()

    def sample(self) -> None:
        self._sampled_peak = max(self._sampled_peak, self._rss())

    def finish(self) -> MemoryStats:
        """Call after cleanup: peaks survive it, the resident figures are what cleanup left."""
        self.sample()
        peak = max(self._sampled_peak, self._vm_hwm()) if self._kernel_peak else self._sampled_peak
        if not torch.cuda.is_initialized():
            return MemoryStats(self._rss(), peak)
        return MemoryStats(self._rss(), peak, torch.cuda.memory_allocated(), torch.cuda.memory_reserved(),
                           torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved())

    def _rss(self) -> int:
        return int(self._process.memory_info().rss)

    @staticmethod
    def _vm_hwm() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0
