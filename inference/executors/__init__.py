"""Executors: how a plan's placement is carried out and how offloaded weights move while the model runs.

All four take a model loaded by its adapter and leave it ready for the adapter's ``generate``; for the
same plan and seed they give the same output as ``resident``:

- ``resident``: every module on its device (a codec the plan moves to the CPU runs there);
- ``streamed``: offloaded layers in pinned host memory, copied into two GPU slots on a side stream
  one layer ahead (Vesper's own; see ``streamed`` for why not diffusers' group offloading);
- ``deepspeed``: ZeRO-3 parameter offload of the backbone layers to CPU or NVMe, in this process;
- ``accelerate``: accelerate's device-map hooks, the baseline and the fallback where DeepSpeed cannot run.

The resident and streamed executors also run plans whose weights are stored in fp16/bf16 and computed
in fp32 (``upcast``: old GPUs, CPUs short of RAM).

This module imports neither torch extensions nor deepspeed: the planner asks it what can run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inference.executors.base import Executor
    from inference.hardware import Hardware

NAMES = ("resident", "streamed", "deepspeed", "accelerate")
UPCASTING = ("resident", "streamed")  # executors that store weights narrower than they compute (``upcast``)


def get(name: str) -> Executor:
    """The executor called ``name``."""
    if name not in NAMES:
        raise ValueError(f"unknown executor {name!r}; known: {', '.join(NAMES)}")
    module = importlib.import_module(f"inference.executors.{name}_executor")
    return module.EXECUTOR


def unavailable_reason(name: str, hardware: Hardware, options: dict | None = None) -> str | None:
    """Why ``name`` cannot run on ``hardware`` with ``options`` (None: it can)."""
    if name == "deepspeed":
        from inference.executors.deepspeed_support import unavailable_reason as deepspeed_reason

        return deepspeed_reason(hardware, options or {})
    return None
