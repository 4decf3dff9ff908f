"""The user's settings, with their defaults, and the one place Vesper reads environment variables.

Settings live in ``paths.settings_file()`` (JSON; a missing or unreadable file means the defaults, a
bad value is reported in one sentence). Environment variables override them for tests and for
users who script Vesper:

- ``VESPER_HOME`` / ``VESPER_CACHE_DIR``: folders, read by ``inference.paths``;
- ``VESPER_VRAM_LIMIT``: the GPU memory Vesper may use, as a size ("6GiB", "6GB", "6144MiB"; a bare
  number is GiB), overriding ``vram_limit_gib``; the command line's ``--vram-limit`` overrides both;
- ``VESPER_FAULT``: ``oom@K``, ``cuda@K``, ``crash@K`` or ``hang@K``, a fault the worker injects at chunk K,
  or a comma-separated list of them, one per worker started (tests; ``inference.worker.faults``);
- ``OMP_NUM_THREADS``: when set, the engine leaves torch's CPU thread count to it;
- ``PYTORCH_CUDA_ALLOC_CONF``: torch's own; when unset, the worker sets ``CUDA_ALLOCATOR_CONF`` on Linux.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from inference import paths
from inference.defaults import DEFAULT_CHUNK_CHARS, DEFAULT_MODEL
from inference.errors import BadInputError
from inference.output import write_json
from inference.units import GiB, parse_size

VRAM_LIMIT_ENV = "VESPER_VRAM_LIMIT"
FAULT_ENV = "VESPER_FAULT"
THREADS_ENV = "OMP_NUM_THREADS"
LOG_LEVELS = ("debug", "info", "warning", "error")
ALLOCATOR_ENV = "PYTORCH_CUDA_ALLOC_CONF"
# Expandable segments: torch maps freed pages back to the driver instead of keeping fragments it cannot
# join. Without them a VibeVoice-1.5B plan ran out of memory with 0.25 GiB reserved but unallocated in 2-4 MiB
# pieces (the weights fused for the fast path free their originals there) while its allocated figure was
# within the prediction (benchmarks/results/vibevoice-memory-h200-fixed.md). Linux only in torch.
CUDA_ALLOCATOR_CONF = "expandable_segments:True"


@dataclass(frozen=True)
class Settings:
    """What a user can choose; every field has a default that works on any laptop."""

    chunk_chars: int = DEFAULT_CHUNK_CHARS  # longest chunk of text generated at once
    micro_batch: int = 4  # chunks decoded together
    low_latency: bool = False  # one chunk at a time: first audio sooner, the whole job later
    voice_cache_size: int = 4  # encoded reference recordings kept by the worker
    # The GPU memory Vesper may use, CUDA context included (the process's whole share as NVML sees it);
    # None: whatever is free. Vesper plans for the smaller of free VRAM and the limit and caps its allocator.
    vram_limit_gib: float | None = None
    default_model: str = DEFAULT_MODEL
    log_level: str = "warning"

    @property
    def vram_limit_bytes(self) -> int:
        """The limit in bytes, ``VESPER_VRAM_LIMIT`` first; 0 means none."""
        env = os.environ.get(VRAM_LIMIT_ENV)
        if env:
            return parse_size(env, VRAM_LIMIT_ENV)
        return int(self.vram_limit_gib * GiB) if self.vram_limit_gib else 0


def load(path: Path | None = None) -> Settings:
    """The settings in ``path`` (default: the user's settings file), defaults for whatever is missing."""
    path = path or paths.settings_file()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return Settings()
    if not isinstance(data, dict):
        return Settings()
    known = {f.name for f in fields(Settings)}
    settings = replace(Settings(), **{k: v for k, v in data.items() if k in known})
    _check(settings, path)
    return settings


def save(settings: Settings, path: Path | None = None) -> Path:
    _check(settings, path or paths.settings_file())
    return write_json(path or paths.settings_file(), asdict(settings))


def fault_spec() -> str | None:
    """The fault the worker should inject (``VESPER_FAULT``), for tests of recovery."""
    return os.environ.get(FAULT_ENV) or None


def configure_cuda_allocator() -> None:
    """Choose torch's CUDA allocator settings before torch starts, unless the user chose their own."""
    if sys.platform.startswith("linux"):
        os.environ.setdefault(ALLOCATOR_ENV, CUDA_ALLOCATOR_CONF)


def threads_chosen_by_user() -> bool:
    """Whether ``OMP_NUM_THREADS`` is set: then the user's thread count wins over Vesper's choice."""
    return THREADS_ENV in os.environ


def _check(settings: Settings, path: Path) -> None:
    problems = []
    if not isinstance(settings.chunk_chars, int) or settings.chunk_chars < 80:
        problems.append("chunk_chars must be a whole number of at least 80")
    if not isinstance(settings.micro_batch, int) or settings.micro_batch < 1:
        problems.append("micro_batch must be a whole number of at least 1")
    if not isinstance(settings.voice_cache_size, int) or settings.voice_cache_size < 0:
        problems.append("voice_cache_size must be a whole number, 0 or more")
    if settings.vram_limit_gib is not None and (not isinstance(settings.vram_limit_gib, (int, float))
                                                or settings.vram_limit_gib <= 0):
        problems.append("vram_limit_gib must be a positive number of GiB or null")
    if settings.log_level not in LOG_LEVELS:
        problems.append(f"log_level must be one of {', '.join(LOG_LEVELS)}")
    if problems:
        raise BadInputError(f"Settings file {path}: {'; '.join(problems)}.")

