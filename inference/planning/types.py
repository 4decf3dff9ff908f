"""What a plan is: the workload it is made for, its predicted memory, and the plan itself.

Plain data, no torch: the worker, the GUI's catalogue and the CLI all read plans. ``fingerprint`` is
the one identity of a plan: the planner finds a plan on its ladder by it, calibration records and
the plan history are stored under it, and the worker reloads a model only when its placement part
changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from inference.defaults import DEFAULT_CHUNK_CHARS


@dataclass(frozen=True)
class Workload:
    """What the plan must handle at worst: the longest chunk and how many chunks run together."""

    chunk_chars: int = DEFAULT_CHUNK_CHARS
    batch_size: int = 1


@dataclass(frozen=True)
class MemoryBreakdown:
    """Predicted peak device memory, by cause, in bytes.

    ``calibration`` is the correction measured on this machine (signed; 0 when none was measured).
    """

    cuda_context: int = 0
    weights_resident: int = 0
    streamed_buffers: int = 0
    kv_cache: int = 0
    activations: int = 0
    safety_margin: int = 0
    calibration: int = 0

    @property
    def total(self) -> int:
        return sum(asdict(self).values())

    @property
    def allocator_peak(self) -> int:
        """What torch's caching allocator will hold at peak: everything but the context and the margin."""
        return self.total - self.cuda_context - self.safety_margin

    def largest(self) -> tuple[str, int]:
        """The biggest part of the prediction, by name: what a refusal says to shrink."""
        parts = {k: v for k, v in asdict(self).items() if k != "calibration"}
        name = max(parts, key=parts.__getitem__)
        return name, parts[name]


@dataclass(frozen=True)
class Plan:
    """Where every component lives, how offloaded weights move, and what that costs in memory.

    ``device_map`` is accelerate-style (module path -> device; "cpu" for weights kept in host memory,
    "disk" for weights kept on disk). ``compute_on_cpu`` lists module paths the CPU computes (a codec
    moved off the GPU); ``prompt_on_cpu`` those it computes only while a voice prompt is encoded (the
    adapter moves their result to the compute device; nothing of them runs in a frame, so the fast
    path keeps its graph); ``streamed_layers`` the layers the executor moves in while the model runs;
    ``offload`` the executor's settings (offload device, resident budget for persistence thresholds).
    """

    model: str
    level: str
    executor: str
    device: str  # the compute device
    dtype: str
    device_map: dict[str, str]
    max_chunk_chars: int
    batch_size: int
    kv_budget_bytes: int
    memory: MemoryBreakdown
    vram_budget_bytes: int
    ram_needed_bytes: int
    reasons: tuple[str, ...] = field(default_factory=tuple)
    components: dict[str, dict] = field(default_factory=dict)
    compute_on_cpu: tuple[str, ...] = ()
    streamed_layers: tuple[str, ...] = ()
    lookups_on_cpu: tuple[str, ...] = ()  # embedding tables read on the CPU, the rows sent to the GPU
    offload: dict = field(default_factory=dict)
    calibrated: bool = False
    gpu_id: str = ""  # the GPU model and driver the plan was made for (calibration records are per machine)
    asked: tuple[int, int] = (0, 0)  # the (chunk_chars, batch_size) the ladder holding this plan was made for
    model_digest: str = ""  # the model's sizes (``ModelShape.digest``): another checkpoint is another plan
    compute_dtype: str = ""  # the dtype layers compute in when wider than ``dtype`` (upcast per layer); "": same
    cpu_projections: str = ""  # "int8": a CPU tier's decoder runs its projections in int8 (hardware.cpu_int8)
    cpu_codec_dtype: str = ""  # "bfloat16": a CPU tier decodes audio with its codec in bf16 (hardware.cpu_bf16)
    prompt_on_cpu: tuple[str, ...] = ()

    @property
    def cpu_islands(self) -> tuple[str, ...]:
        """Every module path that computes on the CPU inside this plan (executors set them up alike)."""
        return self.compute_on_cpu + self.prompt_on_cpu

    @property
    def from_disk(self) -> bool:
        """Whether weights stay in the checkpoint's memory-mapped files, read every pass (``offload["home"]``):
        the streamed layers of a ``streamed-disk`` plan, or all of a CPU plan's."""
        return self.offload.get("home") == "disk"

    @property
    def predicted_peak_bytes(self) -> int:
        return self.memory.total if self.device != "cpu" else 0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["memory"]["total"] = self.memory.total
        data["predicted_peak_bytes"] = self.predicted_peak_bytes
        data["reasons"] = list(self.reasons)
        data["compute_on_cpu"] = list(self.compute_on_cpu)
        data["prompt_on_cpu"] = list(self.prompt_on_cpu)
        data["streamed_layers"] = list(self.streamed_layers)
        return data


def fingerprint(plan: Plan, placement_only: bool = False) -> str:
    """A stable name for what a plan decides: model, machine, dtype, placement and, unless
    ``placement_only``, the chunk length and batch it was sized for.

    Predictions, reasons and calibration are left out: the same decision, measured or not, is the same
    plan. ``placement_only`` is what a loaded model depends on: a smaller batch or shorter chunks on the
    same placement need no reload.
    """
    parts = {
        "model": plan.model, "model_digest": plan.model_digest, "gpu": plan.gpu_id, "level": plan.level,
        "executor": plan.executor, "device": plan.device, "dtype": plan.dtype,
        "device_map": sorted(plan.device_map.items()), "cpu": list(plan.compute_on_cpu),
        "streamed": list(plan.streamed_layers), "lookups": list(plan.lookups_on_cpu),
        "offload": sorted((k, str(v)) for k, v in plan.offload.items()),
    }
    if plan.compute_dtype and plan.compute_dtype != plan.dtype:  # absent otherwise: older records stay valid
        parts["compute"] = plan.compute_dtype
    if plan.prompt_on_cpu:  # the same
        parts["prompt_cpu"] = list(plan.prompt_on_cpu)
    if not placement_only:
        parts.update(chunk=plan.max_chunk_chars, batch=plan.batch_size)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def describe_plan(plan: Plan) -> str:
    """A short human label: level, device and batch."""
    return f"{plan.level} on {plan.device}, batch {plan.batch_size}"
