"""Choosing where every part of a model lives, and predicting the peak memory that choice needs.

The planner works from sizes computed on the meta device and a ``Hardware`` record, so it can plan
for any machine (a preset, a JSON file) before a byte of weights is downloaded. Levels are tried in
order, from fastest to most frugal, until the predicted peak fits the GPU; the reasons for every
rejection end up in the plan, so the user can see why Vesper runs the way it does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from inference.dtypes import DtypePolicy, dtype_policy
from inference.errors import VesperError
from inference.hardware import GiB, Hardware
from inference.models import ModelRef
from inference.sizes import ModelSize, measure

MiB = 1024**2
CUDA_CONTEXT_BYTES = 600 * MiB  # read through NVML before and after the first kernel (NOTES.md)
REFERENCE_PLAN_SECONDS = 20.0  # voice prompts are planned for this much reference audio
DEFAULT_CHUNK_CHARS = 300
MIN_CHUNK_CHARS = 80
RAM_HEADROOM = 0.85  # leave the OS and the GUI some of the available RAM


@dataclass(frozen=True)
class Workload:
    """What the plan must handle at worst: the longest chunk and how many chunks run together."""

    chunk_chars: int = DEFAULT_CHUNK_CHARS
    batch_size: int = 1


@dataclass(frozen=True)
class MemoryBreakdown:
    """Predicted peak device memory, by cause, in bytes."""

    cuda_context: int = 0
    weights_resident: int = 0
    streamed_buffers: int = 0
    kv_cache: int = 0
    activations: int = 0
    safety_margin: int = 0

    @property
    def total(self) -> int:
        return sum(asdict(self).values())

    @property
    def allocator_peak(self) -> int:
        """What torch's caching allocator will hold at peak: everything but the context and the margin."""
        return self.total - self.cuda_context - self.safety_margin


@dataclass(frozen=True)
class Plan:
    model: str
    level: str  # "resident" or "cpu" (offload levels join in the offload planner)
    executor: str
    device: str  # the compute device
    dtype: str
    device_map: dict[str, str]  # module path -> device, accelerate style ("" = the whole model)
    max_chunk_chars: int
    batch_size: int
    kv_budget_bytes: int
    memory: MemoryBreakdown
    vram_budget_bytes: int
    ram_needed_bytes: int
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def predicted_peak_bytes(self) -> int:
        return self.memory.total if self.device != "cpu" else 0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["memory"]["total"] = self.memory.total
        data["predicted_peak_bytes"] = self.predicted_peak_bytes
        data["reasons"] = list(self.reasons)
        return data


def make_plan(ref: ModelRef, hardware: Hardware, workload: Workload = Workload()) -> Plan:
    """The fastest plan whose predicted peak fits the machine."""
    return candidates(ref, hardware, workload)[0]


def candidates(ref: ModelRef, hardware: Hardware, workload: Workload = Workload()) -> list[Plan]:
    """Every plan that fits this machine, fastest first; the last one is the most frugal.

    The worker walks down this list when memory runs short at run time (``step_down``).
    """
    reasons: list[str] = []
    plans: list[Plan] = []
    gpu = hardware.gpu
    if gpu is None:
        reasons.append("no NVIDIA GPU found: running on the CPU")
    else:
        policy = dtype_policy(gpu)
        size = measure(ref, policy.compute)
        for chars in _chunk_sizes(workload.chunk_chars):
            plan = _resident(ref, hardware, policy, size, Workload(chars, workload.batch_size), reasons)
            if plan is not None:
                plans.append(plan)
                break
    plans.append(_cpu(ref, hardware, workload, reasons))
    return plans + _smaller_batches(plans[-1])


def step_down(plan: Plan, ref: ModelRef, hardware: Hardware) -> Plan | None:
    """The next more frugal plan after ``plan``, or None when nothing lower is left."""
    ladder = candidates(ref, hardware, Workload(plan.max_chunk_chars, plan.batch_size))
    keys = [_key(p) for p in ladder]
    index = keys.index(_key(plan)) if _key(plan) in keys else -1
    lower = ladder[index + 1:]
    if not lower:
        return None
    chosen = lower[0]
    return replace(chosen, reasons=chosen.reasons + (f"stepped down from {describe_plan(plan)} after running "
                                                       "out of memory",))


def describe_plan(plan: Plan) -> str:
    """A short human label: level, device and batch."""
    return f"{plan.level} on {plan.device}, batch {plan.batch_size}"


def _key(plan: Plan) -> tuple:
    return (plan.level, plan.device, plan.batch_size, tuple(sorted(plan.device_map.items())))


def _smaller_batches(plan: Plan) -> list[Plan]:
    """Last resort: the same placement with half the chunks decoded together, down to one."""
    out = []
    batch = plan.batch_size
    while batch > 1:
        batch //= 2
        out.append(replace(plan, batch_size=batch))
    return out


def _chunk_sizes(chars: int) -> list[int]:
    """Shrinking chunks is cheaper than offloading weights: try the asked size, then halves."""
    sizes = [chars]
    while sizes[-1] // 2 >= MIN_CHUNK_CHARS:
        sizes.append(sizes[-1] // 2)
    return sizes


def _resident(ref: ModelRef, hardware: Hardware, policy: DtypePolicy, size: ModelSize,
              work: Workload, reasons: list[str]) -> Plan | None:
    gpu = hardware.gpu
    assert gpu is not None
    memory = MemoryBreakdown(
        cuda_context=CUDA_CONTEXT_BYTES,
        weights_resident=size.total_bytes,
        kv_cache=kv_cache_bytes(ref, size, work),
        activations=activation_bytes(ref, size, work, policy),
    )
    memory = _with_margin(memory, gpu.free_bytes)
    if memory.total > gpu.free_bytes:
        reasons.append(f"all on GPU with {work.chunk_chars}-character chunks needs {_gib(memory.total)} "
                       f"but {gpu.name} has {_gib(gpu.free_bytes)} free")
        return None
    reasons.append(f"all on GPU: predicted peak {_gib(memory.total)} of {_gib(gpu.free_bytes)} free on {gpu.name}")
    reasons.append(policy.reason)
    return Plan(ref.label, "resident", "resident", f"cuda:{gpu.index}", policy.storage_name,
                {"": f"cuda:{gpu.index}"}, work.chunk_chars, work.batch_size, memory.kv_cache, memory,
                gpu.free_bytes, 0, tuple(reasons))


def _cpu(ref: ModelRef, hardware: Hardware, work: Workload, reasons: list[str]) -> Plan:
    policy = dtype_policy(None)
    size = measure(ref, policy.compute)
    kv = kv_cache_bytes(ref, size, work)
    need = size.total_bytes + kv + activation_bytes(ref, size, work, policy)
    if need > hardware.ram_available_bytes * RAM_HEADROOM:
        raise VesperError(f"{ref.label} needs about {_gib(need)} of RAM on the CPU but only "
                          f"{_gib(hardware.ram_available_bytes)} is available: close other programs or "
                          "choose a smaller model (pocket-tts needs under 1 GB).")
    reasons.append(policy.reason)
    return Plan(ref.label, "cpu", "resident", "cpu", policy.storage_name, {"": "cpu"}, work.chunk_chars,
                work.batch_size, kv, MemoryBreakdown(), 0, need, tuple(reasons))


def prompt_tokens(ref: ModelRef, chunk_chars: int) -> int:
    """Backbone positions before generation: the voice prompt's frames plus the text's tokens."""
    return int(REFERENCE_PLAN_SECONDS * ref.adapter.frame_rate) + chunk_chars // 2 + 32


def kv_cache_bytes(ref: ModelRef, size: ModelSize, work: Workload) -> int:
    """K and V of the backbone for the whole prompt plus the longest chunk's frames, every sequence."""
    frames = ref.adapter.frames_for_text("x" * work.chunk_chars)
    positions = prompt_tokens(ref, work.chunk_chars) + frames
    return positions * size.kv_bytes_per_token * work.batch_size * ref.adapter.kv_cache_copies


def activation_bytes(ref: ModelRef, size: ModelSize, work: Workload, policy: DtypePolicy) -> int:
    """The largest transient tensors: the prompt's prefill and the codec decoding a whole chunk.

    Prefill holds a few hidden-sized tensors and an MLP intermediate (~4x hidden) per position;
    the codec's decoder upsamples to the waveform through convolutions of a few hundred channels.
    Both constants are deliberately generous: calibration replaces them with measurements.
    """
    element = 4 if policy.compute.is_floating_point and policy.compute.itemsize == 4 else 2
    prefill = work.batch_size * prompt_tokens(ref, work.chunk_chars) * size.hidden_size * 12 * element
    seconds = ref.adapter.frames_for_text("x" * work.chunk_chars) / ref.adapter.frame_rate
    codec = int(work.batch_size * seconds * ref.adapter.sample_rate * 64 * element)
    return prefill + codec


def _with_margin(memory: MemoryBreakdown, budget: int) -> MemoryBreakdown:
    """Fragmentation and allocator rounding: 5% of the budget, at least 256 MiB."""
    margin = max(256 * MiB, int(budget * 0.05))
    return MemoryBreakdown(memory.cuda_context, memory.weights_resident, memory.streamed_buffers,
                           memory.kv_cache, memory.activations, margin)


def _gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB"
