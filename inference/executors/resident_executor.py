"""Every module on its device: the whole model on the GPU, or a codec on the CPU and the rest on the GPU."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from inference.adapters.base import LoadedModel
from inference.executors.base import Executor, Placed, computes_upcast, place_resident_part

if TYPE_CHECKING:
    from inference.models import ModelRef
    from inference.planning.types import Plan


class ResidentExecutor(Executor):
    name = "resident"

    def load(self, ref: ModelRef, plan: Plan, path: Path) -> Placed:
        """Straight onto the compute device when nothing stays on the CPU: no detour through host memory."""
        if plan.cpu_islands or plan.lookups_on_cpu:
            return super().load(ref, plan, path)
        loaded = ref.adapter.load(path, getattr(torch, plan.dtype), torch.device(plan.device))
        return Placed(loaded, computes_upcast(loaded, plan, list))

    def place(self, loaded: LoadedModel, plan: Plan) -> Placed:
        device = torch.device(plan.device)


        def place() -> list:
            keep = place_resident_part(loaded.model, plan, device)
            loaded.device = device
            return keep

        return Placed(loaded, computes_upcast(loaded, plan, place))


EXECUTOR = ResidentExecutor()
