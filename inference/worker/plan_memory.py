"""Plans that ran out of memory are not tried again: the lower plan is remembered per model and machine.

A small JSON file in the user's cache folder (``VESPER_CACHE_DIR`` overrides it, for tests). It is a
cache: a missing or unreadable file only means starting from the planner's first choice again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs

from inference.hardware import Hardware
from inference.models import ModelRef
from inference.planner import Plan, step_down

CACHE_DIR_ENV = "VESPER_CACHE_DIR"
_MAX_STEPS = 64  # a ladder is a handful of plans; this only guards against a planner that never ends


def cache_dir() -> Path:
    override = os.environ.get(CACHE_DIR_ENV)
    return Path(override) if override else Path(platformdirs.user_cache_dir("vesper", appauthor=False))


def machine_key(hardware: Hardware) -> str:
    """What makes plans differ between machines: the GPU model and its memory, or no GPU."""
    gpu = hardware.gpu
    device = f"{gpu.name} {gpu.total_bytes // 2**20} MiB" if gpu else "cpu"
    return f"{device} | RAM {hardware.ram_total_bytes // 2**30} GiB"


def signature(plan: Plan) -> dict:
    """The fields that tell plans of one ladder apart."""
    return {"level": plan.level, "executor": plan.executor, "device": plan.device, "dtype": plan.dtype,
            "batch_size": plan.batch_size, "max_chunk_chars": plan.max_chunk_chars,
            "device_map": dict(sorted(plan.device_map.items()))}


class PlanMemory:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def default(cls) -> PlanMemory:
        return cls(cache_dir() / "plans.json")

    def recall(self, ref: ModelRef, hardware: Hardware, plan: Plan) -> Plan:
        """The remembered lower plan on ``plan``'s ladder, or ``plan`` itself if none applies.

        Walking down with ``step_down`` finds exactly the plan an out-of-memory error led to; if the
        machine or the settings changed and it is no longer on the ladder, the top plan is tried again.
        """
        target = self._read().get(_key(ref, hardware))
        current: Plan | None = plan
        for _ in range(_MAX_STEPS):
            if current is None or target is None:
                break
            if signature(current) == target:
                return current
            current = step_down(current, ref, hardware)
        return plan

    def remember(self, ref: ModelRef, hardware: Hardware, plan: Plan) -> None:
        entries = self._read()
        entries[_key(ref, hardware)] = signature(plan)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(entries, indent=2, sort_keys=True))
        os.replace(temporary, self.path)  # atomic: a crash never leaves half a file

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def _key(ref: ModelRef, hardware: Hardware) -> str:
    return f"{ref.label} @ {machine_key(hardware)}"
