"""The status bar's model: GPU, live VRAM used / limit, the plan, and notices (no Qt).

Fed from worker events: ``JobStarted`` gives the plan, ``MemorySample`` the memory, ``PlanChanged``
and ``WorkerRestarted`` (and plain ``Notice``s) a notice the user should read. The GPU's name comes
from the hardware probe the window runs once (NVML, no CUDA context).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inference.worker.protocol import JobStarted, MemorySample, Notice, PlanChanged, WorkerRestarted

GiB = 2**30
MAX_NOTICES = 20


@dataclass
class StatusModel:
    gpu_name: str = "CPU only"
    vram_used: int = 0
    vram_total: int = 0
    vram_limit: int = 0
    rss: int = 0
    plan: str = ""
    notices: list[str] = field(default_factory=list)

    def apply(self, event: object) -> str | None:
        """Take in one event; returns a notice to show now, if the event carries one."""
        if isinstance(event, JobStarted):
            self.plan = event.plan
        elif isinstance(event, MemorySample):
            self.rss = event.rss_bytes
            self.vram_used = event.nvml_used_bytes or event.cuda_reserved_bytes
            self.vram_total = event.nvml_total_bytes or self.vram_total
            self.vram_limit = event.limit_bytes
        elif isinstance(event, PlanChanged):
            self.plan = event.to_plan
            return self._notice(event.message or f"The plan stepped down to {event.to_plan}.")
        elif isinstance(event, WorkerRestarted):
            return self._notice(event.message or f"The inference worker {event.cause.value} and was restarted.")
        elif isinstance(event, Notice):
            return self._notice(event.message)
        return None

    def _notice(self, message: str) -> str:
        self.notices = [*self.notices, message][-MAX_NOTICES:]
        return message

    @property
    def memory_text(self) -> str:
        """``VRAM 3.1 / 6.0 GiB`` (the limit if one is set, else the card's size), or the worker's RAM on a CPU plan."""
        ceiling = self.vram_limit or self.vram_total
        if self.vram_used and ceiling:
            return f"VRAM {self.vram_used / GiB:.1f} / {ceiling / GiB:.1f} GiB"
        if self.rss:
            return f"RAM {self.rss / GiB:.1f} GiB"
        return "Memory: -"

    @property
    def plan_text(self) -> str:
        return f"Plan: {self.plan}" if self.plan else "Plan: not loaded"
