"""Fault injection for tests: ``VESPER_FAULT=oom@K``, ``cuda@K``, ``crash@K`` or ``hang@K`` strikes at a worker's
K-th chunk, once.

``oom`` raises torch's out-of-memory error, ``cuda`` an ``AcceleratorError`` with the words a CUDA error other
than out-of-memory has (a host registration already mapped: what a worker that stepped down in place met on
a GPU). ``hang`` stops the whole process (SIGSTOP on itself), heartbeat thread included: a wedged driver call
looks like that from outside, and only the client's watchdog can end it.

Chunks are counted over the worker's lifetime, from 1. A comma-separated list names one fault per worker, in
the order the client starts them (``oom@1,oom@1``: the first worker and the one that replaces it each run
out of memory at their first chunk); a worker past the end of the list runs without a fault, so a crash
fault cannot strike again in the worker that replaces the crashed one unless the list says so.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import torch

from inference.settings import FAULT_ENV

KINDS = ("oom", "cuda", "crash", "hang")


@dataclass(frozen=True)
class Fault:
    kind: str  # one of KINDS
    chunk: int  # 1-based, counted over the worker's lifetime


def parse(spec: str | None, worker: int = 0) -> Fault | None:
    """The fault of the ``worker``-th worker (0: the first) in ``spec``, or None.

    None or empty means no fault; anything malformed is an error: a test switch must not fail silently.
    """
    if not spec:
        return None
    faults = [_parse_one(spec, entry) for entry in spec.split(",")]
    return faults[worker] if worker < len(faults) else None


def _parse_one(spec: str, entry: str) -> Fault:
    kind, _, chunk = entry.strip().partition("@")
    if kind not in KINDS or not chunk.isdigit() or int(chunk) < 1:
        raise ValueError(f"{FAULT_ENV}={spec!r}: expected oom@K, cuda@K, crash@K or hang@K with K >= 1, "
                         "or a comma-separated list of them (one per worker)")
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
        injected = f"{FAULT_ENV}={fault.kind}@{fault.chunk}, injected"
        if fault.kind == "oom":
            raise torch.OutOfMemoryError(f"CUDA out of memory ({injected})")
        if fault.kind == "cuda":
            raise torch.AcceleratorError(f"CUDA error: part or all of the requested memory range is already "
                                         f"mapped ({injected})")
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
