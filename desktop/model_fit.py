"""One line per registered model for the model picker: is it downloaded, and where would it run here.

Reads the torch-free catalogue (stored sizes, the Hugging Face cache on disk, the planner's ladder),
so it is quick enough to run as the window opens; the plan panel shows the details.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference import catalogue
from inference.errors import VesperError
from inference.hardware import Hardware


@dataclass(frozen=True)
class ModelFit:
    name: str
    description: str
    verdict: str  # a few words for the list
    detail: str  # a sentence for the tooltip


def fits(hardware: Hardware) -> list[ModelFit]:
    return [_fit(entry, hardware) for entry in catalogue.models()]


def _fit(entry: catalogue.Entry, hardware: Hardware) -> ModelFit:
    downloaded = "downloaded" if entry.cached else f"{entry.download_bytes / 1e9:.1f} GB download"
    try:
        plan = catalogue.preview(entry.name, hardware)[0]
    except VesperError as exc:
        return ModelFit(entry.name, entry.description, "does not fit", str(exc))
    if plan.device == "cpu":
        where = "runs on the CPU"
    elif plan.level == "resident":
        where = "fits on the GPU"
    else:
        where = f"fits with {plan.level} offload"
    return ModelFit(entry.name, entry.description, f"{where}, {downloaded}",
                    f"{entry.description} Plan here: {plan.level} on {plan.device}, {plan.dtype}.")
