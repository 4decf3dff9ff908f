"""Fault injection for tests: ``VESPER_FAULT=oom@K``, ``crash@K`` or ``hang@K`` strikes at the worker's K-th
chunk, once.

``hang`` stops the whole process (SIGSTOP on itself), heartbeat thread included: a wedged driver call
looks like that from outside, and only the client's watchdog can end it.

Chunks are counted over the worker's lifetime, from 1. The client starts only its first worker with
injection on, so a crash fault cannot strike again in the worker that replaces the crashed one.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import torch

from inference.settings import FAULT_ENV

KINDS = ("oom", "crash", "hang")


@dataclass(frozen=True)
class Fault:
    kind: str  # one of KINDS
    chunk: int  # 1-based, counted over the worker's lifetime


def parse(spec: str | None) -> Fault | None:
    """None or empty means no fault; anything malformed is an error: a test switch must not fail silently."""
    if not spec:
        return None
    kind, _, chunk = spec.partition("@")
    if kind not in KINDS or not chunk.isdigit() or int(chunk) < 1:
        raise ValueError(f"{FAULT_ENV}={spec!r}: expected oom@K, crash@K or hang@K with K >= 1")
    return Fault(kind, int(chunk))


class FaultInjector:
    def __init__(self, fault: Fault | None) -> None:
        self.fault = fault
        self._seen = 0
        self._fired = False

    def before_chunks(self, count: int) -> None:
        """Called before generating ``count`` chunks together; strikes if the K-th is among them."""
        first = self._seen + 1
        self._seen += count
        fault = self.fault
        if fault is None or self._fired or not first <= fault.chunk < first + count:
            return
        self._fired = True
        if fault.kind == "oom":
            raise torch.OutOfMemoryError(f"CUDA out of memory ({FAULT_ENV}=oom@{fault.chunk}, injected)")
        if fault.kind == "hang":
            _hang()
        _die()


def _die() -> None:
    """Die the way a segfault or kill -9 does: no cleanup, no goodbye message."""
    if hasattr(signal, "SIGKILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(139)  # Windows has no SIGKILL


def _hang() -> None:
    """Stop every thread of this process until someone kills it (the client's watchdog)."""
    os.kill(os.getpid(), signal.SIGSTOP)  # POSIX only, like the tests that use it
