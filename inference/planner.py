"""The planner's public face: ``make_plan``, ``candidates``, ``step_down`` and the plan types.

The work is done in ``inference.planning`` (types, shapes, estimates, corrections, fit); callers
import from here so that they do not depend on how it is split. No torch is imported for a
registered model: its sizes are stored (``inference/model_sizes.json``).
"""

from __future__ import annotations

from inference.planning.estimates import CUDA_RUNTIME_BYTES, prompt_tokens, worst_positions
from inference.planning.fit import (
    LEVELS,
    MIN_CHUNK_CHARS,
    RAM_HEADROOM,
    NoPlanFitsError,
    candidates,
    make_plan,
    step_down,
    usable_ram,
)
from inference.planning.types import MemoryBreakdown, Plan, Workload, describe_plan, fingerprint

__all__ = ["CUDA_RUNTIME_BYTES",
           "LEVELS", "MIN_CHUNK_CHARS", "RAM_HEADROOM", "MemoryBreakdown", "NoPlanFitsError",
           "Plan", "Workload", "candidates", "describe_plan", "fingerprint", "make_plan", "prompt_tokens", "step_down",
           "usable_ram", "worst_positions"]
