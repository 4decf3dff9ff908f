"""What the plan panel shows, without Qt: the machine, a fit verdict per model, where the current plan puts
each component and why, and its predicted against its measured peak memory.

Input is plain data: a ``Hardware`` record and, per model, a ``ModelChoice`` holding a ``PlanPreview``
read from the planner's ``Plan.to_dict()`` (or none when no plan fits); ``catalogue_choices`` makes them
from the torch-free catalogue. Measured memory comes from the worker's ``MemorySample`` and
``JobFinished`` events.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from inference import catalogue
from inference.hardware import Hardware
from inference.planner import LEVELS
from inference.units import gib
from inference.worker.protocol import Event, JobFinished, JobStarted, MemorySample, PlanChanged

FULL_LEVELS = ("resident", "codec-cpu")  # every weight on the GPU (a small codec may compute on the CPU)
OFFLOAD_LEVELS = ("streamed", "zero3-cpu", "streamed-disk", "zero3-nvme")  # backbone weights come from RAM or disk
DISK_LEVELS = ("streamed-disk", "zero3-nvme")  # ... from disk
REAL_TIME = 1.0  # audio seconds per second: slower than this cannot keep up with playback
DTYPES = ("bfloat16", "float16", "float32")  # what a plan's dtype can be, as plans name it


class Fit(str, enum.Enum):
    FITS = "fits"
    OFFLOAD = "needs offload"
    CPU = "runs on the CPU"
    TOO_SLOW = "too slow"
    NO_FIT = "does not fit"


FIT_WORDS = {Fit.FITS: "✔ fits", Fit.OFFLOAD: "◐ needs offload", Fit.CPU: "◌ CPU", Fit.TOO_SLOW: "⚠ too slow",
             Fit.NO_FIT: "✖ does not fit"}  # a verdict in a table cell


@dataclass(frozen=True)
class ComponentPlacement:
    name: str
    role: str
    nbytes: int
    dtype: str
    placement: str  # in words: "cuda:0", "cpu (computes there, 0.12x real time)", "cuda:0; 8 of 28 layers ..."


@dataclass(frozen=True)
class PlanPreview:
    """The parts of a plan the panel shows."""

    model: str
    level: str
    device: str
    dtype: str
    predicted_peak_bytes: int  # the whole GPU's share: context, weights, caches, margin (0 on the CPU)
    predicted_allocator_bytes: int  # what torch's allocator will reserve at peak
    vram_budget_bytes: int
    components: tuple[ComponentPlacement, ...] = ()
    reasons: tuple[str, ...] = ()
    expected_speed: float | None = None  # audio seconds per second, where measured or estimated

    @classmethod
    def from_plan_dict(cls, data: Mapping, expected_speed: float | None = None) -> PlanPreview:
        """From ``Plan.to_dict()`` (the same fields ``vesper plan --json`` prints)."""
        memory = data["memory"]
        on_gpu = data["device"] != "cpu"
        allocator = memory["total"] - memory["cuda_context"] - memory["safety_margin"] if on_gpu else 0
        components = tuple(ComponentPlacement(name, c["role"], int(c["bytes"]), c["dtype"], c["placement"])
                           for name, c in data.get("components", {}).items())
        return cls(data["model"], data["level"], data["device"], data["dtype"], int(data["predicted_peak_bytes"]),
                   int(allocator), int(data["vram_budget_bytes"]), components, tuple(data.get("reasons", ())),
                   expected_speed)


@dataclass(frozen=True)
class ModelChoice:
    """A model the user can pick, as the catalogue describes it."""

    name: str
    description: str = ""
    hub_id: str | None = None  # None for a local folder
    companions: tuple[str, ...] = ()  # other hub repos a download fetches (a codec, a tokenizer)
    download_bytes: int | None = None
    cached: bool = False
    plan: PlanPreview | None = None  # None: no plan fits this machine
    refusal: str = ""  # why no plan fits, when the planner said

    @property
    def repos(self) -> tuple[str, ...]:
        return (self.hub_id, *self.companions) if self.hub_id else ()


@dataclass(frozen=True)
class Verdict:
    fit: Fit
    text: str  # one line for the model list


def catalogue_choices(hardware: Hardware, cache_dir: Path | None = None) -> list[ModelChoice]:
    """Every registered model with its plan for ``hardware`` (tens of ms each, no torch, no download)."""
    choices = []
    for entry in catalogue.models(cache_dir=cache_dir):
        row = catalogue.verdict(entry.name, hardware)  # what `vesper models` says: plan, refusal, speed
        plan = None if row.plan is None else PlanPreview.from_plan_dict(
            row.plan.to_dict(), 1 / row.real_time_factor if row.real_time_factor else None)
        refusal = row.why if row.plan is None else ""
        choices.append(ModelChoice(entry.name, entry.description, entry.hub_id, entry.repos[1:],
                                   entry.download_bytes, bool(entry.cached), plan, refusal))
    return choices


def limited(hardware: Hardware, limit_bytes: int) -> Hardware:
    """The machine as plans under a VRAM limit see it: no GPU offers more free memory than the limit (the
    worker caps its allocator the same way, ``WorkerSettings.vram_limit_bytes``)."""
    if not limit_bytes:
        return hardware
    return replace(hardware, gpus=tuple(replace(g, free_bytes=min(g.free_bytes, limit_bytes)) for g in hardware.gpus))


def verdict(choice: ModelChoice) -> Verdict:
    plan = choice.plan
    if plan is None:
        return Verdict(Fit.NO_FIT, choice.refusal or "Does not fit this machine, even with offload.")
    speed = f", about {plan.expected_speed:.2g}x real time" if plan.expected_speed is not None else ""
    where = plan.level
    if plan.level in OFFLOAD_LEVELS:
        where = (f"{plan.level}: {gib(plan.predicted_peak_bytes)} on the GPU, the rest in "
                 f"{'RAM and on disk' if plan.level in DISK_LEVELS else 'RAM'}")
    if plan.expected_speed is not None and plan.expected_speed < REAL_TIME:
        return Verdict(Fit.TOO_SLOW, f"Too slow here ({where}{speed}): narration takes longer than listening.")
    if plan.level in FULL_LEVELS:
        return Verdict(Fit.FITS, f"Fits fully on the GPU ({gib(plan.predicted_peak_bytes)} at peak{speed}).")
    if plan.level in OFFLOAD_LEVELS:
        return Verdict(Fit.OFFLOAD, f"Needs offload ({where}{speed}).")
    return Verdict(Fit.CPU, f"Runs on the CPU{speed}.")


def size_text(nbytes: int) -> str:
    """Bytes as a user reads them (decimal units, as download sizes are given); "—" for unknown."""
    if nbytes <= 0:
        return "—"
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}" if unit == "GB" else f"{nbytes / scale:.0f} {unit}"
    return f"{max(1, round(nbytes / 1e3))} kB"


def hardware_lines(hardware: Hardware) -> list[str]:
    """The machine in a few lines: each GPU with its memory and link, then RAM and cores."""
    lines = [f"GPU {g.index}: {g.name}, {gib(g.free_bytes)} free of {gib(g.total_bytes)}, compute "
             f"{g.compute_capability[0]}.{g.compute_capability[1]}, PCIe {g.pcie_generation} x{g.pcie_width}"
             for g in hardware.gpus] or ["No NVIDIA GPU: models run on the CPU."]
    lines.append(f"RAM: {gib(hardware.ram_available_bytes)} available of {gib(hardware.ram_total_bytes)}; "
                 f"{hardware.cpu_count} CPU threads; {hardware.os}")
    return lines


@dataclass
class MeasuredMemory:
    """What the worker reported for the running (or last) job."""

    gpu_used_peak: int = 0  # NVML: the whole GPU, every process
    reserved_peak: int = 0  # torch's allocator in the worker
    limit: int = 0
    plan_label: str = ""


@dataclass
class PlanViewModel:
    """The panel's state: the machine, the models, the chosen one, the user's overrides and measurements."""

    hardware: Hardware
    models: Sequence[ModelChoice]
    levels: Sequence[str] = LEVELS  # the planner's levels, fastest first (override choices)
    dtypes: Sequence[str] = DTYPES
    current: str = ""
    vram_limit_bytes: int = 0  # 0: no limit beyond the GPU's free memory
    level_override: str | None = None  # None: the planner decides
    dtype_override: str | None = None
    measured: MeasuredMemory = field(default_factory=MeasuredMemory)

    def __post_init__(self) -> None:
        if not self.current and self.models:
            self.current = self.models[0].name

    def rows(self) -> list[tuple[ModelChoice, Verdict]]:
        return [(m, verdict(m)) for m in self.models]

    @property
    def choice(self) -> ModelChoice | None:
        return next((m for m in self.models if m.name == self.current), None)

    @property
    def plan(self) -> PlanPreview | None:
        choice = self.choice
        return choice.plan if choice else None

    def select(self, model: str) -> None:
        self.current = model
        self.measured = MeasuredMemory()

    def update_models(self, models: Sequence[ModelChoice]) -> None:
        """New previews (another VRAM limit, a new download): the choice stays where it can."""
        self.models = models
        if self.choice is None and models:
            self.current = models[0].name

    def observe(self, event: Event) -> bool:
        """Take in a worker event; True when something shown changed."""
        m = self.measured
        if isinstance(event, JobStarted):
            self.measured = MeasuredMemory(plan_label=event.plan)
        elif isinstance(event, PlanChanged):
            m.plan_label = event.to_plan
        elif isinstance(event, MemorySample):
            m.gpu_used_peak = max(m.gpu_used_peak, event.nvml_used_bytes)
            m.reserved_peak = max(m.reserved_peak, event.cuda_reserved_bytes)
            m.limit = event.limit_bytes or m.limit
        elif isinstance(event, JobFinished):
            m.reserved_peak = max(m.reserved_peak, event.memory.cuda_peak_reserved_bytes)
            m.plan_label = event.plan
        else:
            return False
        return True

    def memory_lines(self) -> list[str]:
        """Predicted against measured peak VRAM, in words."""
        plan, m = self.plan, self.measured
        if plan is None:
            return ["No plan: nothing to predict."]
        if plan.device == "cpu":
            lines = ["CPU plan: no GPU memory is used."]
        else:
            lines = [f"Predicted peak: {gib(plan.predicted_peak_bytes)} on the GPU "
                     f"({gib(plan.predicted_allocator_bytes)} for the model's allocator), budget "
                     f"{gib(plan.vram_budget_bytes)}."]
        if m.reserved_peak or m.gpu_used_peak:
            lines.append(f"Measured peak: {gib(m.reserved_peak)} allocator"
                         + (f", {gib(m.gpu_used_peak)} in use on the GPU" if m.gpu_used_peak else "")
                         + (f" (limit {gib(m.limit)})" if m.limit else "") + ".")
        else:
            lines.append("Measured peak: not yet (run a job).")
        if m.plan_label:
            lines.append(f"Running: {m.plan_label}")
        return lines


