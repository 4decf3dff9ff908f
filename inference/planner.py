"""Choosing where every part of a model lives, and predicting the peak memory that choice needs.

The planner works from sizes computed on the meta device and a ``Hardware`` record, so it can plan
for any machine (a preset, a JSON file) before a byte of weights is downloaded. Levels are tried in
order, from fastest to most frugal, until the predicted peak fits the GPU:

1. ``resident``: everything on the GPU;
2. ``codec-cpu``: codecs whose measured CPU speed allows it run on the CPU (the adapter says how fast);
3. ``streamed``: the last backbone layers live in pinned host memory and are copied in one layer ahead,
   as many layers resident as fit;
4. ``zero3-cpu``: DeepSpeed ZeRO-3 holds the backbone layers in host memory (pageable, when pinning
   that much would starve the machine), keeping as much resident as fits by persistence thresholds;
5. ``zero3-nvme``: the same with the layers on disk, when RAM is short too;
6. ``cpu``: everything on the CPU.

Within a level, shorter chunks are tried before more layers are offloaded. Everything that differs
between model families comes from the adapter (components, roles, pinned modules, codec CPU speed)
and from ``sizes``; the planner names no model. Every plan carries the reasons for its choices, and
a calibration measured on this machine (``calibration``) corrects the prediction when one exists.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from inference import calibration
from inference.adapters.base import Role
from inference.audio import MAX_REFERENCE_SECONDS  # read_reference trims to it: voice prompts never exceed it
from inference.defaults import DEFAULT_CHUNK_CHARS
from inference.dtypes import DtypePolicy, dtype_policy
from inference.errors import VesperError
from inference.executors import unavailable_reason
from inference.hardware import GiB, Gpu, Hardware
from inference.models import ModelRef
from inference.sizes import ComponentSize, ModelSize, measure

MiB = 1024**2
CUDA_CONTEXT_BYTES = 600 * MiB  # read through NVML before and after the first kernel (NOTES.md)
MIN_CHUNK_CHARS = 80
RAM_HEADROOM = 0.85  # leave the OS and the GUI some of the available RAM
PIN_FRACTION = 0.5  # page-locking more than half the available RAM starves the OS of reclaimable memory
CODEC_CPU_MAX_RTF = 0.35  # a codec may move to the CPU when it costs at most this many seconds per audio second
STREAM_SLOTS = 2  # GPU buffers for streamed layers: the one computing and the one being copied in
LEVELS = ("resident", "codec-cpu", "streamed", "zero3-cpu", "zero3-nvme", "cpu")


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


@dataclass(frozen=True)
class Plan:
    """Where every component lives, how offloaded weights move, and what that costs in memory.

    ``device_map`` is accelerate-style (module path -> device; "cpu" for weights kept in host memory,
    "disk" for weights kept on disk). ``compute_on_cpu`` lists module paths the CPU computes (a codec
    moved off the GPU); ``streamed_layers`` the layers the executor moves in while the model runs;
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

    @property
    def predicted_peak_bytes(self) -> int:
        return self.memory.total if self.device != "cpu" else 0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["memory"]["total"] = self.memory.total
        data["predicted_peak_bytes"] = self.predicted_peak_bytes
        data["reasons"] = list(self.reasons)
        data["compute_on_cpu"] = list(self.compute_on_cpu)
        data["streamed_layers"] = list(self.streamed_layers)
        return data


def make_plan(ref: ModelRef, hardware: Hardware, workload: Workload = Workload(),
              executor: str | None = None) -> Plan:
    """The fastest plan whose predicted peak fits the machine."""
    return candidates(ref, hardware, workload, executor)[0]


def candidates(ref: ModelRef, hardware: Hardware, workload: Workload = Workload(),
               executor: str | None = None) -> list[Plan]:
    """Every plan that fits this machine, fastest first; the last one is the most frugal.

    The worker walks down this list when memory runs short at run time (``step_down``). ``executor``
    forces the executor of the offload levels (benchmarks and tests compare them on one placement).
    """
    notes: list[str] = []
    plans: list[Plan] = []
    if hardware.gpu is None:
        notes.append("no NVIDIA GPU found: running on the CPU")
    else:
        plans = _gpu_plans(ref, hardware, workload, executor, notes)
    try:
        plans.append(_cpu(ref, hardware, workload, notes))
    except VesperError as exc:
        if not plans:
            raise
        notes.append(f"CPU only: not possible ({exc})")
    asked = (workload.chunk_chars, workload.batch_size)
    return [replace(p, asked=asked) for p in plans + _smaller_batches(plans[-1])]


def _gpu_plans(ref: ModelRef, hardware: Hardware, workload: Workload, executor: str | None,
               notes: list[str]) -> list[Plan]:
    """Every GPU level at the asked batch; if none fits, at half the batch, and so on down to one.

    Fewer chunks at a time on the GPU beat the CPU by far, so the CPU comes only after batch 1.
    """
    batch = workload.batch_size
    while True:
        ctx = _Context(ref, hardware, hardware.gpu, _loadable(dtype_policy(hardware.gpu)),
                       Workload(workload.chunk_chars, batch), executor)
        plans = [p for level in (_resident, _codec_cpu, _streamed, _zero3_cpu, _zero3_nvme)
                 for p in level(ctx, notes)]
        if plans or batch == 1:
            return plans
        notes.append(f"nothing fits the GPU at batch {batch}: trying batch {batch // 2}")
        batch //= 2


def _loadable(policy: DtypePolicy) -> DtypePolicy:
    """The policy the executors can honour today: weights stored in the dtype they are computed in.

    Pascal's fp16-storage/fp32-compute split needs an executor that upcasts each layer before use;
    until one exists, loading fp16 there would compute in fp16 at a sixty-fourth of the fp32 rate,
    so such GPUs load fp32 weights (and offload sooner).
    """
    if policy.storage == policy.compute:
        return policy
    return DtypePolicy(policy.compute, policy.compute,
                       f"{policy.reason}; weights load in {str(policy.compute).removeprefix('torch.')} "
                       "(no upcasting executor yet)")


def step_down(plan: Plan, ref: ModelRef, hardware: Hardware) -> Plan | None:
    """The next more frugal plan after ``plan``, or None when nothing lower is left."""
    executor = plan.executor if plan.executor == "accelerate" else None
    chars, batch = plan.asked if plan.asked[0] else (plan.max_chunk_chars, plan.batch_size)
    ladder = candidates(ref, hardware, Workload(chars, batch), executor)
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
    return (plan.level, plan.executor, plan.device, plan.batch_size, plan.max_chunk_chars,
            tuple(sorted(plan.device_map.items())))


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


# ---------------------------------------------------------------------------------------------- sizes


def prompt_tokens(ref: ModelRef, chunk_chars: int) -> int:
    """Backbone positions before generation: the voice prompt's frames plus the text's tokens."""
    return int(MAX_REFERENCE_SECONDS * ref.adapter.frame_rate) + chunk_chars // 2 + 32


def worst_positions(ref: ModelRef, chunk_chars: int) -> int:
    """Backbone positions at the end of the longest chunk: prompt plus every generated frame."""
    return prompt_tokens(ref, chunk_chars) + ref.adapter.frames_for_text("x" * chunk_chars)


def kv_cache_bytes(ref: ModelRef, size: ModelSize, work: Workload) -> int:
    """K and V of the backbone for the whole prompt plus the longest chunk's frames, every sequence."""
    return worst_positions(ref, work.chunk_chars) * size.kv_bytes_per_token * work.batch_size \
        * ref.adapter.kv_cache_copies


def prefill_bytes(ref: ModelRef, size: ModelSize, work: Workload, policy: DtypePolicy) -> int:
    """The prompt's prefill: a few hidden-sized tensors and an MLP intermediate (~4x hidden) per position.

    Deliberately generous; calibration replaces it with a measurement.
    """
    element = policy.compute.itemsize
    sequences = work.batch_size * ref.adapter.kv_cache_copies
    return sequences * prompt_tokens(ref, work.chunk_chars) * size.hidden_size * 12 * element


def codec_activation_bytes(ref: ModelRef, work: Workload, policy: DtypePolicy) -> int:
    """The codec decoding a whole chunk: convolutions of a few dozen channels at the waveform's rate."""
    seconds = ref.adapter.frames_for_text("x" * work.chunk_chars) / ref.adapter.frame_rate
    return int(work.batch_size * seconds * ref.adapter.sample_rate * 64 * policy.compute.itemsize)


def activation_bytes(ref: ModelRef, size: ModelSize, work: Workload, policy: DtypePolicy) -> int:
    """The largest transient tensors on the GPU with every component there: prefill plus codec."""
    return prefill_bytes(ref, size, work, policy) + codec_activation_bytes(ref, work, policy)


def pcie_bound_ms(nbytes: int, gbps: float) -> float:
    """The least time moving ``nbytes`` from pinned host memory can take at ``gbps`` (10^9 bytes/s)."""
    return 1000 * nbytes / (gbps * 1e9)


def _margin(budget: int) -> int:
    """Fragmentation and allocator rounding: 5% of the budget, at least 256 MiB."""
    return max(256 * MiB, int(budget * 0.05))


def _gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB"


# --------------------------------------------------------------------------------------------- levels


@dataclass(frozen=True)
class _Placement:
    """What one GPU level moves off the GPU, before memory is counted."""

    level: str
    executor: str
    cpu_components: tuple[ComponentSize, ...] = ()
    offloaded_layers: tuple[tuple[str, int], ...] = ()  # (path, bytes) kept off the GPU
    layer_home: str = "cpu"  # where offloaded layers live: "cpu" or "disk"
    buffers: int = 0  # GPU bytes the executor needs to move offloaded layers through
    resident_layer_bytes: int = 0  # bytes of offloaded layers kept on the GPU anyway (persistence)
    ram: int = 0  # host memory held for the whole run
    offload: dict = field(default_factory=dict)
    lookups: tuple[tuple[str, int], ...] = ()  # (path, bytes) of embedding tables read on the CPU


class _Context:
    """One planning request: the model, the machine and its dtype policy."""

    def __init__(self, ref: ModelRef, hardware: Hardware, gpu: Gpu, policy: DtypePolicy, work: Workload,
                 executor: str | None):
        self.ref, self.hardware, self.gpu, self.policy, self.work = ref, hardware, gpu, policy, work
        self.executor = executor
        self.size = measure(ref, policy.storage)
        self.device = f"cuda:{gpu.index}"

    @property
    def budget(self) -> int:
        return self.gpu.free_bytes

    def memory(self, placement: _Placement, work: Workload) -> MemoryBreakdown:
        moved = sum(c.nbytes for c in placement.cpu_components) + sum(n for _, n in placement.lookups)
        offloaded = sum(n for _, n in placement.offloaded_layers)
        codec_on_gpu = any(c.role is Role.CODEC for c in self.size.components
                           if c not in placement.cpu_components)
        activations = prefill_bytes(self.ref, self.size, work, self.policy)
        if codec_on_gpu:
            activations += codec_activation_bytes(self.ref, work, self.policy)
        return MemoryBreakdown(
            cuda_context=CUDA_CONTEXT_BYTES,
            weights_resident=self.size.total_bytes - moved - offloaded + placement.resident_layer_bytes,
            streamed_buffers=placement.buffers,
            kv_cache=kv_cache_bytes(self.ref, self.size, work),
            activations=activations,
            safety_margin=_margin(self.budget),
        )

    def plan(self, placement: _Placement, work: Workload, memory: MemoryBreakdown, reasons: list[str]) -> Plan:
        device_map = self.device_map(placement)
        plan = Plan(self.ref.label, placement.level, placement.executor, self.device, self.policy.storage_name,
                    device_map, work.chunk_chars, work.batch_size, memory.kv_cache, memory, self.budget,
                    placement.ram, tuple(reasons), self.components(placement),
                    tuple(p for c in placement.cpu_components for p in c.component.module_paths),
                    tuple(p for p, _ in placement.offloaded_layers), tuple(p for p, _ in placement.lookups),
                    dict(placement.offload), False, calibration.gpu_identity(self.gpu))
        return calibration.corrected(plan, self.ref)

    def device_map(self, placement: _Placement) -> dict[str, str]:
        """Accelerate-style: every component's modules, layers one by one where some are offloaded."""
        if not placement.cpu_components and not placement.offloaded_layers:
            return {"": self.device}
        offloaded = {p for p, _ in placement.offloaded_layers}
        out: dict[str, str] = {}
        for c in self.size.components:
            home = "cpu" if c in placement.cpu_components else self.device
            if c.layer_paths and offloaded.intersection(c.layer_paths):
                out.update({p: home for p in c.fixed_paths})
                out.update({p: placement.layer_home if p in offloaded else home for p in c.layer_paths})
            else:
                out.update({p: home for p in c.component.module_paths})
        out.update({p: self.device for p in self.size.loose_paths})
        out.update({p: "cpu" for p, _ in placement.lookups})
        return out

    def components(self, placement: _Placement) -> dict[str, dict]:
        """Per component: bytes, dtype and where it lives, in words."""
        offloaded = {p for p, _ in placement.offloaded_layers}
        out = {}
        for c in self.size.components:
            where = f"{self.device}"
            if c in placement.cpu_components:
                where = f"cpu (computes there, {c.component.cpu_real_time_factor:.2f}x real time)"
            elif set(c.component.module_paths) & {p for p, _ in placement.lookups}:
                where = f"{self.device}; embedding table read on the cpu, its rows sent to the GPU"
            elif offloaded.intersection(c.layer_paths):
                count = len(offloaded.intersection(c.layer_paths))
                how = {"streamed": "streamed from pinned host memory",
                       "deepspeed": f"ZeRO-3 partitions in {placement.offload.get('device', 'cpu')}",
                       "accelerate": f"accelerate hooks from {placement.layer_home}"}[placement.executor]
                where = f"{self.device}; {count} of {len(c.layer_paths)} layers {how}"
            out[c.name] = {"role": c.role.value, "bytes": c.nbytes, "dtype": self.policy.storage_name,
                           "compute_dtype": str(self.policy.compute).removeprefix("torch."), "placement": where}
        return out

    def fits(self, memory: MemoryBreakdown) -> bool:
        return memory.total <= self.budget

    def ram_ok(self, ram: int) -> bool:
        return ram <= self.hardware.ram_available_bytes * RAM_HEADROOM


def _resident(ctx: _Context, notes: list[str]) -> list[Plan]:
    return _fitting(ctx, _Placement("resident", "resident"), notes, "all on GPU")


def _codec_cpu(ctx: _Context, notes: list[str]) -> list[Plan]:
    movable, why = _cpu_codecs(ctx)
    if not movable:
        notes.append(f"codec on CPU: not possible ({why})")
        return []
    placement = _Placement("codec-cpu", "resident", movable, ram=sum(c.nbytes for c in movable))
    return _fitting(ctx, placement, notes, f"{_names(movable)} on the CPU ({why})")


def _cpu_codecs(ctx: _Context) -> tuple[tuple[ComponentSize, ...], str]:
    """Codecs the adapter measured fast enough on a CPU, and which are free to move."""
    codecs = ctx.size.by_role(Role.CODEC)
    if not codecs:
        return (), "the model has no separate codec"
    pinned = [c for c in codecs if c.component.pinned_to_compute]
    if pinned:
        return (), f"{_names(pinned)} must stay on the compute device: generation reads it outside forward"
    unknown = [c for c in codecs if c.component.cpu_real_time_factor is None]
    if unknown:
        return (), f"the CPU speed of {_names(unknown)} is not known"
    rtf = sum(c.component.cpu_real_time_factor for c in codecs)
    if rtf > CODEC_CPU_MAX_RTF:
        return (), f"on the CPU it takes {rtf:.2f} s per second of audio, more than {CODEC_CPU_MAX_RTF}"
    return tuple(codecs), f"{rtf:.2f} s per second of audio there"


def _fitting(ctx: _Context, placement: _Placement, notes: list[str], what: str) -> list[Plan]:
    """Plans of one placement at the asked chunk length and every shorter one that fits."""
    plans = []
    for chars in _chunk_sizes(ctx.work.chunk_chars):
        work = Workload(chars, ctx.work.batch_size)
        memory = ctx.memory(placement, work)
        plan = ctx.plan(placement, work, memory, [])
        if not ctx.fits(plan.memory):
            if not plans:
                notes.append(f"{what} with {chars}-character chunks needs {_gib(plan.memory.total)} but "
                             f"{ctx.gpu.name} has {_gib(ctx.budget)} free")
            continue
        if not ctx.ram_ok(placement.ram):
            notes.append(f"{what}: needs {_gib(placement.ram)} of RAM, {_gib(ctx.hardware.ram_available_bytes)} "
                         "available")
            return []
        reasons = notes + [f"{what}: predicted peak {_gib(plan.memory.total)} of {_gib(ctx.budget)} free on "
                           f"{ctx.gpu.name}" + (" (calibrated on this machine)" if plan.calibrated else ""),
                           ctx.policy.reason]
        if chars < ctx.work.chunk_chars:
            reasons.append(f"chunks shortened to {chars} characters: cheaper than offloading weights")
        plans.append(replace(plan, reasons=tuple(reasons)))
    return plans


def _streamed(ctx: _Context, notes: list[str]) -> list[Plan]:
    """The last backbone layers offloaded, as few as fit, moved by the streamed (or accelerate) executor."""
    layers = ctx.size.streamable_layers
    if not layers:
        notes.append("streaming layers: not possible (the backbone has no layers that can stream)")
        return []
    executor = ctx.executor if ctx.executor in ("streamed", "accelerate") else "streamed"
    cpu, _ = _cpu_codecs(ctx)
    # Offloading fewer layers than there are GPU slots saves nothing: each one still needs a slot.
    least = min(len(layers), STREAM_SLOTS + 1)
    options: list[tuple[int, int, Plan]] = []
    for lookups in ((), ctx.size.lookups):  # embedding tables leave the GPU only when layers alone do not do
        for chars in _chunk_sizes(ctx.work.chunk_chars):
            work = Workload(chars, ctx.work.batch_size)
            for count in range(least, len(layers) + 1):
                placement = _stream_placement(ctx, executor, cpu, _spread(layers, count), lookups)
                plan = ctx.plan(placement, work, ctx.memory(placement, work), [])
                if ctx.fits(plan.memory):
                    options.append((count, -chars, plan))
                    break
        if options or not ctx.size.lookups:
            break
        notes.append(f"streaming every backbone layer still does not fit {_gib(ctx.budget)} on {ctx.gpu.name}"
                     + ("; trying with the embedding tables read on the CPU" if ctx.size.lookups else ""))
    if not options:
        if ctx.size.lookups:
            notes.append("nor with the embedding tables on the CPU")
        return []
    options.sort(key=lambda o: (o[0], o[1]))
    if options[-1][0] < len(layers):  # a rung with every layer streamed, for stepping down at run time
        placement = _stream_placement(ctx, executor, cpu, tuple(layers), lookups)
        plan = ctx.plan(placement, ctx.work, ctx.memory(placement, ctx.work), [])
        if ctx.fits(plan.memory):
            options.append((len(layers), -ctx.work.chunk_chars, plan))
    first = options[0][2]
    pin_limit = int(ctx.hardware.ram_available_bytes * PIN_FRACTION)
    if executor == "streamed" and first.ram_needed_bytes > pin_limit:
        notes.append(f"streaming {len(first.streamed_layers)} layers would pin {_gib(first.ram_needed_bytes)} of "
                     f"host memory, more than half of the {_gib(ctx.hardware.ram_available_bytes)} available")
        return []
    out = []
    for count, neg_chars, plan in options:
        moved = sum(n for p, n in layers if p in plan.streamed_layers)
        reasons = notes + [
            f"{count} of {len(layers)} backbone layers ({_gib(moved)}) stay in host memory and are copied in one "
            f"layer ahead; the other {len(layers) - count} stay resident",
            f"predicted peak {_gib(plan.memory.total)} of {_gib(ctx.budget)} free on {ctx.gpu.name}"
            + (" (calibrated on this machine)" if plan.calibrated else ""),
            f"each pass of the backbone moves {_gib(moved)} over PCIe {ctx.gpu.pcie_generation}.0 "
            f"x{ctx.gpu.pcie_width}: at least {pcie_bound_ms(moved, ctx.gpu.pinned_bandwidth_gbps):.0f} ms per "
            "decode step, shared by every chunk of the batch",
            ctx.policy.reason]
        if cpu:
            reasons.append(f"{_names(cpu)} computes on the CPU")
        if plan.lookups_on_cpu:
            reasons.append(f"embedding tables {', '.join(plan.lookups_on_cpu)} are read on the CPU: a step "
                           "looks up a few rows")
        if -neg_chars < ctx.work.chunk_chars:
            reasons.append(f"chunks shortened to {-neg_chars} characters: cheaper than offloading more layers")
        out.append(replace(plan, reasons=tuple(reasons)))
    return out


def _spread(layers: list[tuple[str, int]], count: int) -> tuple[tuple[str, int], ...]:
    """``count`` layers spread evenly through the stack, the last one included.

    The copy of the next streamed layer starts when the previous streamed layer begins and runs while
    every resident layer between them computes; bunched at the end, the copies would have only one
    layer's compute each to hide behind and the GPU would wait on PCIe instead.
    """
    n = len(layers)
    return tuple(layers[(k + 1) * n // count - 1] for k in range(count))


def _stream_placement(ctx: _Context, executor: str, cpu: tuple[ComponentSize, ...],
                      offloaded: tuple[tuple[str, int], ...], lookups: tuple[tuple[str, int], ...] = ()
                      ) -> _Placement:
    """Offloaded layers cost two of the largest on the GPU: the one computing and the one arriving.

    accelerate's hooks hold one layer at a time, but measured on an H100 a 4 GB plan that counted one
    layer for them ran out of memory (their copies and frees interleave with the allocator's caching),
    so they are counted like the others.
    """
    largest = max(n for _, n in offloaded)
    ram = sum(c.nbytes for c in cpu) + sum(n for _, n in offloaded) + sum(n for _, n in lookups)
    return _Placement("streamed", executor, cpu, offloaded, "cpu", min(len(offloaded), STREAM_SLOTS) * largest, 0,
                      ram, lookups=lookups)


def _zero3_cpu(ctx: _Context, notes: list[str]) -> list[Plan]:
    return _zero3(ctx, notes, "cpu")


def _zero3_nvme(ctx: _Context, notes: list[str]) -> list[Plan]:
    return _zero3(ctx, notes, "nvme")


def _zero3(ctx: _Context, notes: list[str], device: str) -> list[Plan]:
    """Every backbone layer handed to DeepSpeed ZeRO-3, resident as far as the budget allows.

    Without DeepSpeed (not installed, not Linux, no libaio for NVMe) accelerate's hooks do the same
    placement from pageable memory ("cpu") or from disk ("disk"): slower, but it runs.
    """
    layers = tuple(ctx.size.streamable_layers)
    level = f"zero3-{device}"
    if not layers:
        return []
    missing = unavailable_reason("deepspeed", ctx.hardware, {"device": device})
    executor = "deepspeed" if missing is None and ctx.executor in (None, "deepspeed") else "accelerate"
    if missing is not None:
        notes.append(f"DeepSpeed ZeRO-3 ({device}): {missing}; accelerate hooks take its place")
    cpu, _ = _cpu_codecs(ctx)
    largest = max(n for _, n in layers)
    host = sum(n for _, n in layers)
    ram = sum(c.nbytes for c in cpu) + (host if device == "cpu" else 4 * largest)
    if not ctx.ram_ok(ram):
        notes.append(f"{level}: needs {_gib(ram)} of RAM, {_gib(ctx.hardware.ram_available_bytes)} available")
        return []
    plans: list[Plan] = []
    for lookups in ((), ctx.size.lookups):
        plans = _zero3_plans(ctx, notes, level, executor, device, cpu, lookups, ram)
        if plans or not ctx.size.lookups:
            break
    return plans


def _zero3_plans(ctx: _Context, notes: list[str], level: str, executor: str, device: str,
                 cpu: tuple[ComponentSize, ...], lookups: tuple[tuple[str, int], ...], ram: int) -> list[Plan]:
    layers = tuple(ctx.size.streamable_layers)
    largest = max(n for _, n in layers)
    host = sum(n for _, n in layers)
    plans = []
    for chars in _chunk_sizes(ctx.work.chunk_chars):
        work = Workload(chars, ctx.work.batch_size)
        bare = _Placement(level, executor, cpu, layers, "cpu" if device == "cpu" else "disk",
                          largest * STREAM_SLOTS, 0, ram + sum(n for _, n in lookups),
                          lookups=lookups)
        memory = ctx.memory(bare, work)
        spare = ctx.budget - memory.total
        if spare < 0:
            if not plans:
                notes.append(f"{level} with {chars}-character chunks needs {_gib(memory.total)} but "
                             f"{ctx.gpu.name} has {_gib(ctx.budget)} free")
            continue
        persist = min(host, spare) if executor == "deepspeed" else 0
        placement = replace(bare, resident_layer_bytes=persist, offload={
            "device": device, "persist_bytes": persist, "layers": len(layers), "max_live_bytes": largest,
            "element_size": ctx.size.element_size,
            "pin_memory": host <= ctx.hardware.ram_available_bytes * PIN_FRACTION})
        plan = ctx.plan(placement, work, ctx.memory(placement, work), [])
        if not ctx.fits(plan.memory):
            continue
        reasons = notes + [
            f"{len(layers)} backbone layers handed to {'DeepSpeed ZeRO-3' if executor == 'deepspeed' else 'accelerate'}"
            f" with weights in {'host memory' if device == 'cpu' else 'files on disk'}"
            + (f"; {_gib(persist)} of them kept resident by the persistence threshold" if persist else ""),
            f"predicted peak {_gib(plan.memory.total)} of {_gib(ctx.budget)} free on {ctx.gpu.name}",
            ctx.policy.reason]
        if device == "nvme":
            reasons.append("loading reads the checkpoint through the page cache once (safetensors are mapped)")
        if lookups:
            reasons.append(f"embedding tables {', '.join(p for p, _ in lookups)} are read on the CPU")
        plans.append(replace(plan, reasons=tuple(reasons)))
    return plans


def _cpu(ref: ModelRef, hardware: Hardware, work: Workload, notes: list[str]) -> Plan:
    policy = dtype_policy(None)
    size = measure(ref, policy.compute)
    kv = kv_cache_bytes(ref, size, work)
    need = size.total_bytes + kv + activation_bytes(ref, size, work, policy)
    if need > hardware.ram_available_bytes * RAM_HEADROOM:
        raise VesperError(f"{ref.label} needs about {_gib(need)} of RAM on the CPU but only "
                          f"{_gib(hardware.ram_available_bytes)} is available: close other programs or "
                          "choose a smaller model (`vesper plan --model NAME` shows what each needs).")
    reasons = tuple(notes) + (policy.reason,)
    components = {c.name: {"role": c.role.value, "bytes": c.nbytes, "dtype": policy.storage_name,
                           "compute_dtype": policy.storage_name, "placement": "cpu"} for c in size.components}
    return Plan(ref.label, "cpu", "resident", "cpu", policy.storage_name, {"": "cpu"}, work.chunk_chars,
                work.batch_size, kv, MemoryBreakdown(), 0, need, reasons, components)


def _names(components) -> str:
    return " and ".join(c.name for c in components)
