"""Plans that ran out of memory are not tried again: the lower plan is remembered per model and machine.

A small JSON file, ``paths.plan_history_path()``, mapping (model, machine) to the fingerprint of the
plan to start from (and its label, for a person reading the file). It is a cache: a missing or
unreadable file only means starting from the planner's first choice again.
"""

from __future__ import annotations

import json
from pathlib import Path

from inference import paths
from inference.hardware import Hardware
from inference.models import ModelRef
from inference.output import write_json
from inference.planner import Plan, describe_plan, fingerprint, step_down

_MAX_STEPS = 64  # a ladder is a handful of plans; this only guards against a planner that never ends


def machine_key(hardware: Hardware) -> str:
    """What makes plans differ between machines: the GPU model and its memory, or no GPU, and the user's
    VRAM limit (a step-down taken under a 4 GiB limit says nothing about the same GPU with no limit)."""
    gpu = hardware.gpu
    device = f"{gpu.name} {gpu.total_bytes // 2**20} MiB" if gpu else "cpu"
    limit = f" | limit {hardware.vram_limit_bytes // 2**20} MiB" if gpu and hardware.vram_limit_bytes else ""
    return f"{device}{limit} | RAM {hardware.ram_total_bytes // 2**30} GiB"


class PlanMemory:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def default(cls) -> PlanMemory:
        return cls(paths.plan_history_path())

    def recall(self, ref: ModelRef, hardware: Hardware, plan: Plan) -> Plan:
        """The remembered lower plan on ``plan``'s ladder, or ``plan`` itself if none applies.

        Walking down with ``step_down`` finds exactly the plan an out-of-memory error led to; if the
        machine or the settings changed and it is no longer on the ladder, the top plan is tried again.
        """
        target = self._read().get(_key(ref, hardware))
        if not isinstance(target, dict):  # none, or written by an older Vesper
            return plan
        current: Plan | None = plan
        for _ in range(_MAX_STEPS):
            if current is None:
                break
            if fingerprint(current) == target.get("fingerprint"):
                return current
            current = step_down(current, ref, hardware)
        return plan

    def remember(self, ref: ModelRef, hardware: Hardware, plan: Plan) -> None:
        entries = self._read()
        entries[_key(ref, hardware)] = {"fingerprint": fingerprint(plan), "plan": describe_plan(plan)}
        write_json(self.path, entries)

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def _key(ref: ModelRef, hardware: Hardware) -> str:
    return f"{ref.label} @ {machine_key(hardware)}"
