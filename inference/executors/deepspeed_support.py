"""Whether DeepSpeed's ZeRO-3 offload can run here, answered without importing deepspeed when possible.

The planner asks this for every plan it builds, so the cheap checks come first; only NVMe offload,
which needs DeepSpeed's ``async_io`` op (libaio, compiled on first use), imports deepspeed, once.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
from functools import cache

from inference.hardware import Hardware

INSTALL_HINT = "pip install 'vesper[deepspeed]' (Linux only)"


def unavailable_reason(hardware: Hardware, options: dict) -> str | None:
    """Why ZeRO-3 offload cannot run on ``hardware`` (None: it can)."""
    if hardware.os != "Linux":
        return (f"DeepSpeed's ZeRO offload does not run on {hardware.os} (its last Windows wheels are 0.16.5 "
                "for torch 2.6, and it needs NCCL)")
    if hardware.gpu is None:
        return "DeepSpeed needs a CUDA GPU"
    if not installed():
        return f"deepspeed is not installed ({INSTALL_HINT})"
    if options.get("device") == "nvme":
        return _nvme_reason()
    return None


@cache
def installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


@cache
def _nvme_reason() -> str | None:
    if ctypes.util.find_library("aio") is None:
        return "NVMe offload needs libaio (apt install libaio-dev), which is missing"
    try:
        from deepspeed.ops.op_builder import AsyncIOBuilder

        if not AsyncIOBuilder().is_compatible(verbose=False):
            return "DeepSpeed's async_io op cannot be built here (libaio headers or a C++ compiler missing)"
    except Exception as exc:  # noqa: BLE001 - any failure to load the op builder means no NVMe offload
        return f"DeepSpeed's async_io op is unavailable ({type(exc).__name__}: {exc})"
    return None
