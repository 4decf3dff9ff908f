"""The fit: choosing where every part of a model lives so that its predicted peak fits the machine.

Laid out like ``common/fit.cpp`` in ggml's C++ runtime: first measure (the model's sizes at the GPU's dtype,
from ``shapes``), then try named steps from the fastest placement to the most frugal, each step
logging its decision (``logging``, logger ``inference.planning.fit``) and keeping it in the plan's
reasons, until one fits:

1. ``resident``: everything on the GPU;
2. ``codec-cpu``: codecs whose measured CPU speed allows it run on the CPU (the family says how fast);
3. ``streamed``: the last backbone layers live in pinned host memory and are copied in one layer ahead,
   as many layers resident as fit;
4. ``zero3-cpu``: DeepSpeed ZeRO-3 holds the backbone layers in host memory (pageable, when pinning
   that much would starve the machine), keeping as much resident as fits by persistence thresholds;
5. ``streamed-disk``: as ``streamed``, the layers read from the checkpoint's own memory-mapped
   safetensors (the OS page cache keeps what RAM allows), when RAM is short too;
6. ``zero3-nvme``: DeepSpeed ZeRO-3 with the layers on NVMe (only where DeepSpeed runs);
7. ``cpu``: everything on the CPU (the weights left in the checkpoint's memory-mapped files where the
   CPU computes in their dtype and they do not fit the RAM).

Within a step, shorter chunks are tried before more layers are offloaded, and one GPU slot for streamed
layers before none fits; if no step fits at the asked batch, half the batch is tried, down to one,
before the CPU. Everything that differs between
model families comes from the family's facts and the model's shape; this module names no model.
A calibration measured on this machine (``corrections``) corrects the prediction when one exists.
When nothing fits, the refusal says which part of the nearest plan was largest and what would help.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from inference.dtypes import ELEMENT_BYTES, DtypePolicy, cpu_policy, dtype_policy, upcast_policy
from inference.errors import VesperError
from inference.executors import UPCASTING, unavailable_reason
from inference.families import Role
from inference.hardware import Gpu, Hardware
from inference.models import ModelRef
from inference.planning.corrections import corrected, gpu_identity
from inference.planning.estimates import (
    CUBLAS_WORKSPACE_BYTES,
    CUDA_RUNTIME_BYTES,
    DECODE_STREAMS,
    activation_bytes,
    island_bytes,
    kv_cache_bytes,
    pcie_bound_ms,
    safety_margin,
    upcast_bytes,
)
from inference.planning.shapes import ComponentSize, stored
from inference.planning.types import MemoryBreakdown, Plan, Workload, describe_plan, fingerprint
from inference.speed import DISK_READ_GBPS, real_time_factor
from inference.units import gib

log = logging.getLogger(__name__)

MIN_CHUNK_CHARS = 80
RAM_HEADROOM = 0.85  # leave the OS and the GUI some of the available RAM
PIN_FRACTION = 0.5  # page-locking more than half the available RAM starves the OS of reclaimable memory
CODEC_CPU_MAX_RTF = 0.35  # a codec may move to the CPU when it costs at most this many seconds per audio second
STREAM_SLOTS = 2  # GPU buffers for streamed layers: the one computing and the one being copied in
LEVELS = ("resident", "codec-cpu", "streamed", "zero3-cpu", "streamed-disk", "zero3-nvme", "cpu")


class NoPlanFitsError(VesperError):
    """Neither the GPU nor the CPU of this machine can hold the model with the asked workload."""


class _Search:
    """One planning request's running account: the reasons so far, each one logged as it is made,
    and the nearest GPU miss (the plan that came closest to fitting), which a refusal names."""

    def __init__(self, ref: ModelRef) -> None:
        self.ref = ref
        self.reasons: list[str] = []
        self.closest: tuple[MemoryBreakdown, int, int] | None = None  # (memory, budget, chunk chars)
        self.cpu_need = 0  # RAM the CPU plan needs
        self.cpu_disk = ""  # why the CPU plan's weights cannot stay on disk, or that they already do

    def note(self, reason: str) -> None:
        log.info("%s: %s", self.ref.label, reason)
        self.reasons.append(reason)

    def miss(self, memory: MemoryBreakdown, budget: int, chars: int) -> None:
        if self.closest is None or memory.total < self.closest[0].total:
            self.closest = (memory, budget, chars)


def usable_ram(hardware: Hardware) -> int:
    """The RAM a plan may use: the available RAM less the headroom kept for the system and other apps."""
    return int(hardware.ram_available_bytes * RAM_HEADROOM)


def _ram_words(hardware: Hardware) -> str:
    return (f"{gib(usable_ram(hardware))} usable ({RAM_HEADROOM:.0%} of the {gib(hardware.ram_available_bytes)} "
            "available; the rest is kept for the system and other programs)")


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
    search = _Search(ref)
    plans: list[Plan] = []
    if hardware.vram_limit_bytes and hardware.gpu is not None:
        search.note(f"VRAM limit {gib(hardware.vram_limit_bytes)} (CUDA context included): planning for "
                    f"{gib(hardware.gpu.free_bytes)} of the GPU")
    if hardware.gpu is None:
        search.note("no NVIDIA GPU found: running on the CPU")
    else:
        plans = _gpu_plans(ref, hardware, workload, executor, search)
    cpu = _cpu(ref, hardware, workload, search)
    if cpu is not None:
        plans.append(cpu)
    if not plans:
        raise NoPlanFitsError(_refusal(ref, hardware, workload, search))
    asked = (workload.chunk_chars, workload.batch_size)
    return [replace(p, asked=asked) for p in plans + _smaller_batches(plans[-1])]


def _gpu_plans(ref: ModelRef, hardware: Hardware, workload: Workload, executor: str | None,
               search: _Search) -> list[Plan]:
    """Every GPU step at the asked batch; if none fits, at half the batch, and so on down to one.

    Fewer chunks at a time on the GPU beat the CPU by far, so the CPU comes only after batch 1.
    """
    batch = workload.batch_size
    policy = dtype_policy(hardware.gpu)
    while True:
        work = Workload(workload.chunk_chars, batch)
        upcasting = _Context(ref, hardware, hardware.gpu, policy, work, executor)
        plain = _Context(ref, hardware, hardware.gpu, _loadable(policy), work, executor)
        plans = [p for step in STEPS for p in step(upcasting if _upcasts(step, executor) else plain, search)]
        if plans or batch == 1:
            return plans
        search.note(f"nothing fits the GPU at batch {batch}: trying batch {batch // 2}")
        batch //= 2


def _upcasts(step, executor: str | None) -> bool:
    """Whether ``step``'s executor upcasts stored weights per layer (``executors.UPCASTING``).

    ZeRO-3 partitions and accelerate's hooks replace parameters behind the upcasting hooks' back, so
    their steps store weights in the dtype they compute in.
    """
    if step in (_zero3_cpu, _zero3_nvme):
        return False
    return executor is None or executor in UPCASTING


def _loadable(policy: DtypePolicy) -> DtypePolicy:
    """``policy`` for an executor that cannot upcast: weights stored in the dtype they are computed in.

    Computing fp16 on Pascal runs at a sixty-fourth of the fp32 rate (and gives NaNs on GTX 16xx), so
    those GPUs load fp32 weights for such executors.
    """
    if policy.storage == policy.compute:
        return policy
    return DtypePolicy(policy.compute, policy.compute,
                       f"{policy.reason}; this executor cannot upcast, so weights load in {policy.compute}")


def step_down(plan: Plan, ref: ModelRef, hardware: Hardware) -> Plan | None:
    """The next more frugal plan after ``plan``, or None when nothing lower is left."""
    chars, batch = plan.asked if plan.asked[0] else (plan.max_chunk_chars, plan.batch_size)
    # An accelerate plan is a rung of the default ladder (ZeRO's fallback) or of one made with accelerate forced.
    ladders = [candidates(ref, hardware, Workload(chars, batch), executor)
               for executor in ((None, "accelerate") if plan.executor == "accelerate" else (None,))]
    ladder = next((rungs for rungs in ladders if fingerprint(plan) in [fingerprint(p) for p in rungs]), ladders[0])
    lower = ladder[_position(plan, ladder) + 1:]
    if not lower:
        return None
    chosen = lower[0]
    return replace(chosen, reasons=chosen.reasons + (f"stepped down from {describe_plan(plan)} after running "
                                                       "out of memory",))


def _position(plan: Plan, ladder: list[Plan]) -> int:
    """Where ``plan`` stands on ``ladder`` (-1: above its top).

    By its fingerprint; else the last rung of its level sized as it is (chunk length and batch); else after
    every rung of a higher level. A plan made in another worker process can differ in what that process
    measured (RAM free for pinning, say): not finding it must never send a job back up the ladder to the plan
    that ran out of memory first (the H200 matrix looped streamed-disk -> streamed that way).
    """
    keys = [fingerprint(p) for p in ladder]
    if fingerprint(plan) in keys:
        return keys.index(fingerprint(plan))
    sized = (plan.level, plan.max_chunk_chars, plan.batch_size)
    same = [i for i, p in enumerate(ladder) if (p.level, p.max_chunk_chars, p.batch_size) == sized]
    if same:
        return same[-1]
    rank = LEVELS.index(plan.level)
    return max((i for i, p in enumerate(ladder) if LEVELS.index(p.level) < rank), default=-1)


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
        self.size = ref.shape.at(policy.storage)
        self.facts = ref.facts
        self.device = f"cuda:{gpu.index}"

    @property
    def budget(self) -> int:
        return self.gpu.free_bytes

    def memory(self, placement: _Placement, work: Workload) -> MemoryBreakdown:
        moved = sum(c.nbytes for c in placement.cpu_components) + sum(n for _, n in placement.lookups)
        offloaded = sum(n for _, n in placement.offloaded_layers)
        on_gpu = [c for c in self.size.components if c not in placement.cpu_components]
        codec_on_gpu = any(c.role is Role.CODEC and not c.component.prompt_only for c in on_gpu)
        encoder_on_gpu = any(c in on_gpu for c in _voice_encoders(self.size.components))
        activations = activation_bytes(self.facts, self.size, work, self.policy, codec_on_gpu, encoder_on_gpu) \
            + upcast_bytes(self.size, self.policy) + DECODE_STREAMS * CUBLAS_WORKSPACE_BYTES
        return MemoryBreakdown(
            cuda_context=CUDA_RUNTIME_BYTES,
            weights_resident=self.size.total_bytes - moved - offloaded + placement.resident_layer_bytes,
            streamed_buffers=placement.buffers,
            kv_cache=kv_cache_bytes(self.facts, self.ref.shape.at(self.policy.compute), work),
            activations=activations,
            safety_margin=safety_margin(self.budget),
        )

    def plan(self, placement: _Placement, work: Workload, memory: MemoryBreakdown, reasons: list[str]) -> Plan:
        device_map = self.device_map(placement)
        plan = Plan(self.ref.label, placement.level, placement.executor, self.device, self.policy.storage,
                    device_map, work.chunk_chars, work.batch_size, memory.kv_cache, memory, self.budget,
                    placement.ram, tuple(reasons), self.components(placement),
                    tuple(p for c in placement.cpu_components if not c.component.prompt_only
                          for p in c.component.module_paths),
                    tuple(p for p, _ in placement.offloaded_layers), tuple(p for p, _ in placement.lookups),
                    dict(placement.offload), False, gpu_identity(self.gpu), model_digest=self.ref.shape.digest,
                    compute_dtype=_compute_dtype(self.policy),
                    prompt_on_cpu=tuple(p for c in placement.cpu_components if c.component.prompt_only
                                        for p in c.component.module_paths))
        return corrected(plan)

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
            if c in placement.cpu_components and c.component.prompt_only:
                rtf = c.component.cpu_real_time_factor
                where = "cpu (encodes each new voice there, once" + \
                    (f": {rtf:.1f} s per second of the reference on 2 threads" if rtf else "") + "; nothing per frame)"
            elif c in placement.cpu_components:
                where = f"cpu (computes there, {c.component.cpu_real_time_factor:.2f}x real time)"
            elif set(c.component.module_paths) & {p for p, _ in placement.lookups}:
                where = f"{self.device}; embedding table read on the cpu, its rows sent to the GPU"
            elif offloaded.intersection(c.layer_paths):
                count = len(offloaded.intersection(c.layer_paths))
                how = {"streamed": "streamed from pinned host memory" if placement.layer_home == "cpu"
                       else "streamed from the checkpoint's memory-mapped files on disk",
                       "deepspeed": f"ZeRO-3 partitions in {placement.offload.get('device', 'cpu')}",
                       "accelerate": f"accelerate hooks from {placement.layer_home}"}[placement.executor]
                where = f"{self.device}; {count} of {len(c.layer_paths)} layers {how}"
            out[c.name] = {"role": c.role.value, "bytes": c.nbytes, "dtype": self.policy.storage,
                           "compute_dtype": self.policy.compute, "placement": where}
        return out

    def fits(self, memory: MemoryBreakdown) -> bool:
        return memory.total <= self.budget

    def ram_ok(self, ram: int) -> bool:
        return ram <= usable_ram(self.hardware)

    def island_ram(self, parts: tuple[ComponentSize, ...]) -> int:
        """Host memory of ``parts`` computing on the CPU (fp32 weights and their transients there)."""
        encodes = any(c in parts for c in _voice_encoders(self.size.components))
        return island_bytes(self.facts, parts, self.size.element_size, self.work, encodes)


def _voice_encoders(components: tuple[ComponentSize, ...]) -> list[ComponentSize]:
    """The parts that encode a voice's reference: those that run only for it, else the codecs."""
    return [c for c in components if c.component.prompt_only] or [c for c in components if c.role is Role.CODEC]


def _resident(ctx: _Context, search: _Search) -> list[Plan]:
    return _fitting(ctx, _Placement("resident", "resident"), search, "all on GPU")


def _codec_cpu(ctx: _Context, search: _Search) -> list[Plan]:
    movable, why = _cpu_codecs(ctx)
    if not movable:
        search.note(f"codec on CPU: not possible ({why})")
        return []
    placement = _Placement("codec-cpu", "resident", movable, ram=ctx.island_ram(movable))
    return _fitting(ctx, placement, search, f"{_names(movable)} on the CPU ({why})")


def _cpu_codecs(ctx: _Context) -> tuple[tuple[ComponentSize, ...], str]:
    """Parts that may compute on the CPU, and why: those that only encode the voice prompt (no per-frame
    cost), and codecs the adapter measured fast enough on a CPU that are free to move."""
    prompt = tuple(c for c in ctx.size.components if c.component.prompt_only)
    codecs, why = _frame_codecs(ctx)
    if prompt:
        only = f"{_names(prompt)} only {'encode' if len(prompt) > 1 else 'encodes'} each new voice"
        why = f"{only}, {why}" if codecs else f"{only}; {why}"
    return prompt + codecs, why


def _cpu_choices(ctx: _Context) -> list[tuple[ComponentSize, ...]]:
    """What an offload level may compute on the CPU, most VRAM saved first: with the parts that only encode
    voices, then without them, for when their fp32 copy there is more than the RAM allows."""
    cpu, _ = _cpu_codecs(ctx)
    frame = tuple(c for c in cpu if not c.component.prompt_only)
    return [cpu] + ([frame] if frame != cpu else [])


def _with_cpu(cpu: tuple[ComponentSize, ...]) -> str:
    return f" with {_names(cpu)} on the CPU" if cpu else ""


def _frame_codecs(ctx: _Context) -> tuple[tuple[ComponentSize, ...], str]:
    """Per-frame codecs the adapter measured fast enough on a CPU, and which are free to move."""
    codecs = [c for c in ctx.size.by_role(Role.CODEC) if not c.component.prompt_only]
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


def _fitting(ctx: _Context, placement: _Placement, search: _Search, what: str) -> list[Plan]:
    """Plans of one placement at the asked chunk length and every shorter one that fits."""
    plans = []
    for chars in _chunk_sizes(ctx.work.chunk_chars):
        work = Workload(chars, ctx.work.batch_size)
        memory = ctx.memory(placement, work)
        plan = ctx.plan(placement, work, memory, [])
        if not ctx.fits(plan.memory):
            search.miss(plan.memory, ctx.budget, chars)
            if not plans:
                search.note(f"{what} with {chars}-character chunks needs {gib(plan.memory.total)} but "
                             f"{ctx.gpu.name} has {gib(ctx.budget)} free")
            continue
        if not ctx.ram_ok(placement.ram):
            search.note(f"{what}: needs {gib(placement.ram)} of RAM, more than the {_ram_words(ctx.hardware)}")
            return []
        reasons = search.reasons + [f"{what}: predicted peak {gib(plan.memory.total)} of {gib(ctx.budget)} free on "
                           f"{ctx.gpu.name}" + (" (calibrated on this machine)" if plan.calibrated else ""),
                           ctx.policy.reason]
        if chars < ctx.work.chunk_chars:
            reasons.append(f"chunks shortened to {chars} characters: cheaper than offloading weights")
        plans.append(replace(plan, reasons=tuple(reasons)))
    return plans


def _streamed(ctx: _Context, search: _Search) -> list[Plan]:
    """The last backbone layers in pinned host memory, as few as fit, moved by the streamed (or accelerate)
    executor."""
    return _layer_streaming(ctx, search, "cpu")


def _streamed_disk(ctx: _Context, search: _Search) -> list[Plan]:
    """The same with the layers read from the checkpoint's memory-mapped files, for RAM too small to hold
    them: nothing is copied anywhere, the page cache keeps what RAM allows. The streamed executor only
    (a forced accelerate is the ``zero3-nvme`` level's disk offload)."""
    if ctx.executor not in (None, "streamed"):
        return []
    return _layer_streaming(ctx, search, "disk")


def _layer_streaming(ctx: _Context, search: _Search, home: str) -> list[Plan]:
    """Plans streaming backbone layers from ``home`` ("cpu": pinned host memory, "disk"): for each chunk
    length, as few layers as fit; where even every layer does not fit with two GPU slots, one slot."""
    layers = ctx.size.streamable_layers
    if not layers:
        if home == "cpu":
            search.note("streaming layers: not possible (the backbone has no layers that can stream)")
        return []
    executor = ctx.executor if home == "cpu" and ctx.executor in ("streamed", "accelerate") else "streamed"
    for cpu in _cpu_choices(ctx):
        plans = _streaming_with(ctx, search, home, executor, layers, cpu)
        if plans:
            return plans
    return []


def _streaming_with(ctx: _Context, search: _Search, home: str, executor: str, layers: list[tuple[str, int]],
                    cpu: tuple[ComponentSize, ...]) -> list[Plan]:
    # Offloading fewer layers than there are GPU slots saves nothing: each one still needs a slot.
    least = min(len(layers), STREAM_SLOTS + 1)
    options: list[Plan] = []
    for lookups in ((), ctx.size.lookups):  # embedding tables leave the GPU only when layers alone do not do
        for chars in _chunk_sizes(ctx.work.chunk_chars):
            work = Workload(chars, ctx.work.batch_size)
            for count in range(least, len(layers) + 1):
                placement = _stream_placement(ctx, executor, cpu, _spread(layers, count), lookups, home)
                plan = ctx.plan(placement, work, ctx.memory(placement, work), [])
                if ctx.fits(plan.memory):
                    options.append(plan)
                    break
            else:  # not even with every layer streamed through two slots: one slot, if the executor has slots
                if executor == "streamed":
                    placement = _stream_placement(ctx, executor, cpu, tuple(layers), lookups, home, slots=1)
                    plan = ctx.plan(placement, work, ctx.memory(placement, work), [])
                if ctx.fits(plan.memory):
                    options.append(plan)
                else:
                    search.miss(plan.memory, ctx.budget, chars)
        if options or not ctx.size.lookups:
            break
        if home == "cpu":
            search.note(f"streaming every backbone layer still does not fit {gib(ctx.budget)} on {ctx.gpu.name}"
                        "; trying with the embedding tables read on the CPU")
    if not options and ctx.size.tower_layers:
        search.note(f"streaming every backbone layer still does not fit {gib(ctx.budget)} on {ctx.gpu.name}: "
                    "trying with layers of the per-frame towers streamed too")
        options = _tower_options(ctx, search, executor, cpu, layers, home)
    if not options:
        if ctx.size.lookups and home == "cpu":
            search.note("nor with the embedding tables on the CPU")
        return []
    options.sort(key=lambda p: (len(p.streamed_layers), -_slots(p), -p.max_chunk_chars))
    last = options[-1]
    if len(last.streamed_layers) < len(layers):  # a rung with every layer streamed, for stepping down at run time
        placement = _stream_placement(ctx, executor, cpu, tuple(layers), tuple(
            (p, n) for p, n in ctx.size.lookups if p in last.lookups_on_cpu), home)
        plan = ctx.plan(placement, ctx.work, ctx.memory(placement, ctx.work), [])
        if ctx.fits(plan.memory):
            options.append(plan)
    first = options[0]
    pin_limit = int(ctx.hardware.ram_available_bytes * PIN_FRACTION)
    pinned = sum(n for p, n in layers + ctx.size.tower_layers if p in first.streamed_layers)  # islands are not
    if home == "cpu" and executor == "streamed" and pinned > pin_limit:
        search.note(f"streaming {len(first.streamed_layers)} layers would pin {gib(pinned)} of "
                    f"host memory, more than half of the {gib(ctx.hardware.ram_available_bytes)} available")
        return []
    if not ctx.ram_ok(first.ram_needed_bytes):
        where = "from disk" if home == "disk" else f"{len(first.streamed_layers)} layers{_with_cpu(cpu)}"
        search.note(f"streaming {where}: needs {gib(first.ram_needed_bytes)} of RAM, more than the "
                    f"{_ram_words(ctx.hardware)}")
        return []
    return [replace(plan, reasons=tuple(search.reasons + _streaming_reasons(ctx, plan, layers, home)))
            for plan in options]


def _streaming_reasons(ctx: _Context, plan: Plan, layers: list[tuple[str, int]], home: str) -> list[str]:
    count = len(set(plan.streamed_layers) & {p for p, _ in layers})
    moved = sum(n for p, n in layers if p in plan.streamed_layers)
    towers = [(p, n) for p, n in ctx.size.tower_layers if p in plan.streamed_layers]
    where = ("stay in host memory" if home == "cpu" else
             "are read from the checkpoint's own safetensors, memory-mapped (nothing is copied; the OS page "
             "cache keeps what RAM allows),")
    when = "one layer ahead" if _slots(plan) > 1 else "as each one runs"
    reasons = [
        f"{count} of {len(layers)} backbone layers ({gib(moved)}) {where} and are copied in {when}; the "
        f"other {len(layers) - count} stay resident"]
    if towers:
        moved += sum(n for _, n in towers)
        reasons.append(f"{len(towers)} of the per-frame towers' {len(ctx.size.tower_layers)} widest layers "
                       f"({gib(sum(n for _, n in towers))}) stream through the same slots, once per frame")
    reasons.append(f"predicted peak {gib(plan.memory.total)} of {gib(ctx.budget)} free on {ctx.gpu.name}"
                   + (" (calibrated on this machine)" if plan.calibrated else ""))
    if home == "cpu":
        reasons.append(f"each pass of the backbone moves {gib(moved)} over PCIe {ctx.gpu.pcie_generation}.0 "
                       f"x{ctx.gpu.pcie_width}: at least {pcie_bound_ms(moved, ctx.gpu.pinned_bandwidth_gbps):.0f} "
                       "ms per decode step, shared by every chunk of the batch")
    else:
        reasons.append(_disk_speed(ctx.ref, plan, gpu=ctx.gpu))
    reasons.append(ctx.policy.reason)
    if _slots(plan) == 1:
        reasons.append("one GPU slot for streamed layers (two do not fit): each layer's copy waits for the "
                       "previous layer's compute")
    for c in ctx.size.components:
        if set(c.component.module_paths) & set(plan.cpu_islands):
            reasons.append(f"{c.name} " + ("encodes each new voice on the CPU (once per voice; nothing per frame)"
                                           if c.component.prompt_only else "computes on the CPU"))
    if plan.lookups_on_cpu:
        reasons.append(f"embedding tables {', '.join(plan.lookups_on_cpu)} are read on the CPU: a step "
                       "looks up a few rows")
    if plan.max_chunk_chars < ctx.work.chunk_chars:
        reasons.append(f"chunks shortened to {plan.max_chunk_chars} characters: cheaper than offloading more "
                       "layers")
    return reasons


def _slots(plan: Plan) -> int:
    return int(plan.offload.get("slots", STREAM_SLOTS))


def _tower_options(ctx: _Context, search: _Search, executor: str, cpu: tuple[ComponentSize, ...],
                   layers: list[tuple[str, int]], home: str) -> list[Plan]:
    """Every backbone layer streamed and as few of the per-frame towers' layers as fit, for each chunk length
    (with the embedding tables read on the CPU too, when they can be and that alone does not do).

    The towers run once per frame, their layers through ``forward``, so they stream through the same
    two slots (no larger than a backbone layer) and their bytes cross PCIe once per frame, as the
    backbone's do. Ring order is execution order within a frame: the towers render the frame the
    language model then consumes.
    """
    towers = ctx.size.tower_layers
    options: list[Plan] = []
    for lookups in ((), ctx.size.lookups):
        for chars in _chunk_sizes(ctx.work.chunk_chars):
            work = Workload(chars, ctx.work.batch_size)
            for count in range(1, len(towers) + 1):
                streamed = _spread(towers, count) + tuple(layers)
                placement = _stream_placement(ctx, executor, cpu, streamed, lookups, home)
                plan = ctx.plan(placement, work, ctx.memory(placement, work), [])
                if ctx.fits(plan.memory):
                    options.append(plan)
                    break
            else:
                search.miss(plan.memory, ctx.budget, chars)
        if options or not ctx.size.lookups:
            break
    if options and len(options[-1].streamed_layers) < len(layers) + len(towers):  # all of them: a rung to step to
        placement = _stream_placement(ctx, executor, cpu, tuple(towers) + tuple(layers), lookups, home)
        plan = ctx.plan(placement, ctx.work, ctx.memory(placement, ctx.work), [])
        if ctx.fits(plan.memory):
            options.append(plan)
    return options


def _spread(layers: list[tuple[str, int]], count: int) -> tuple[tuple[str, int], ...]:
    """``count`` layers spread evenly through the stack, the last one included.

    The copy of the next streamed layer starts when the previous streamed layer begins and runs while
    every resident layer between them computes; bunched at the end, the copies would have only one
    layer's compute each to hide behind and the GPU would wait on PCIe instead.
    """
    n = len(layers)
    return tuple(layers[(k + 1) * n // count - 1] for k in range(count))


def _stream_placement(ctx: _Context, executor: str, cpu: tuple[ComponentSize, ...],
                      offloaded: tuple[tuple[str, int], ...], lookups: tuple[tuple[str, int], ...] = (),
                      home: str = "cpu", slots: int = STREAM_SLOTS) -> _Placement:
    """Offloaded layers cost ``slots`` of the largest on the GPU: the one computing and the one arriving.

    accelerate's hooks hold one layer at a time, but measured on an H100 a 4 GB plan that counted one
    layer for them ran out of memory (their copies and frees interleave with the allocator's caching),
    so they are counted like the others. From pinned memory the layers take RAM; from disk only the
    pinned staging buffers do (one per slot), the page cache holding the layers as far as RAM allows.
    """
    largest = max(n for _, n in offloaded)
    held = min(len(offloaded), slots) * largest
    layers = sum(n for _, n in offloaded) if home == "cpu" else held
    ram = ctx.island_ram(cpu) + layers + sum(n for _, n in lookups)
    offload: dict = {"slots": 1} if slots == 1 else {}
    if home == "disk":
        offload.update(home="disk", slots=slots, disk_bytes=_stored_bytes(ctx, sum(n for _, n in offloaded)))
    level = "streamed" if home == "cpu" else "streamed-disk"
    return _Placement(level, executor, cpu, offloaded, home, held, 0, ram, offload, lookups)


def _stored_bytes(ctx: _Context, nbytes: int) -> int:
    """``nbytes`` of weights at the plan's dtype as the checkpoint stores them (what a read from disk moves)."""
    stored = ctx.ref.checkpoint_dtype or ctx.policy.storage
    return nbytes * ELEMENT_BYTES.get(stored, ctx.size.element_size) // ctx.size.element_size


def _zero3_cpu(ctx: _Context, search: _Search) -> list[Plan]:
    return _zero3(ctx, search, "cpu")


def _zero3_nvme(ctx: _Context, search: _Search) -> list[Plan]:
    return _zero3(ctx, search, "nvme")


def _zero3(ctx: _Context, search: _Search, device: str) -> list[Plan]:
    """Every backbone layer handed to DeepSpeed ZeRO-3, resident as far as the budget allows.

    Without DeepSpeed (not installed, not Linux, no libaio for NVMe) accelerate's hooks do the same
    placement from pageable memory ("cpu"): slower, but it runs. On disk they would first copy every
    layer into an offload folder, which ``streamed-disk`` does not need, so they take NVMe's place only
    when forced (``executor="accelerate"``, the benchmarks' baseline).
    """
    layers = tuple(ctx.size.streamable_layers)
    level = f"zero3-{device}"
    if not layers:
        return []
    missing = unavailable_reason("deepspeed", ctx.hardware, {"device": device})
    executor = "deepspeed" if missing is None and ctx.executor in (None, "deepspeed") else "accelerate"
    if missing is not None and device == "nvme" and ctx.executor != "accelerate":
        search.note(f"DeepSpeed ZeRO-3 ({device}): {missing}; streamed-disk reads the layers from the checkpoint "
                    "itself instead")
        return []
    if missing is not None:
        search.note(f"DeepSpeed ZeRO-3 ({device}): {missing}; accelerate hooks take its place")
    largest = max(n for _, n in layers)
    host = sum(n for _, n in layers)
    for cpu in _cpu_choices(ctx):
        ram = ctx.island_ram(cpu) + (host if device == "cpu" else 4 * largest)
        if ctx.ram_ok(ram):
            break
        search.note(f"{level}{_with_cpu(cpu)}: needs {gib(ram)} of RAM, more than the {_ram_words(ctx.hardware)}")
    else:
        return []
    plans: list[Plan] = []
    for lookups in ((), ctx.size.lookups):
        plans = _zero3_plans(ctx, search, level, executor, device, cpu, lookups, ram)
        if plans or not ctx.size.lookups:
            break
    return plans


def _zero3_plans(ctx: _Context, search: _Search, level: str, executor: str, device: str,
                 cpu: tuple[ComponentSize, ...], lookups: tuple[tuple[str, int], ...], ram: int) -> list[Plan]:
    layers = tuple(ctx.size.streamable_layers)
    largest = max(n for _, n in layers)
    host = sum(n for _, n in layers)
    ram += sum(n for _, n in lookups)  # tables read on the CPU live in RAM too
    if not ctx.ram_ok(ram):
        search.note(f"{level} with embedding tables on the CPU: needs {gib(ram)} of RAM, more than the "
                    f"{_ram_words(ctx.hardware)}")
        return []
    plans = []
    for chars in _chunk_sizes(ctx.work.chunk_chars):
        work = Workload(chars, ctx.work.batch_size)
        bare = _Placement(level, executor, cpu, layers, "cpu" if device == "cpu" else "disk",
                          largest * STREAM_SLOTS, 0, ram,
                          lookups=lookups)
        memory = ctx.memory(bare, work)
        spare = ctx.budget - memory.total
        if spare < 0:
            search.miss(memory, ctx.budget, chars)
            if not plans:
                search.note(f"{level} with {chars}-character chunks needs {gib(memory.total)} but "
                             f"{ctx.gpu.name} has {gib(ctx.budget)} free")
            continue
        persist = min(host, spare) if executor == "deepspeed" else 0
        placement = replace(bare, resident_layer_bytes=persist, offload={
            "device": device, "persist_bytes": persist, "layers": len(layers), "max_live_bytes": largest,
            "element_size": ctx.size.element_size,
            "pin_memory": host <= ctx.hardware.ram_available_bytes * PIN_FRACTION})
        plan = ctx.plan(placement, work, ctx.memory(placement, work), [])
        if not ctx.fits(plan.memory):
            continue
        reasons = search.reasons + [
            f"{len(layers)} backbone layers handed to {'DeepSpeed ZeRO-3' if executor == 'deepspeed' else 'accelerate'}"
            f" with weights in {'host memory' if device == 'cpu' else 'files on disk'}"
            + (f"; {gib(persist)} of them kept resident by the persistence threshold" if persist else ""),
            f"predicted peak {gib(plan.memory.total)} of {gib(ctx.budget)} free on {ctx.gpu.name}",
            ctx.policy.reason]
        if device == "nvme":
            reasons.append("loading reads the checkpoint through the page cache once (safetensors are mapped)")
            if executor == "accelerate":
                reasons.append(_disk_speed(ctx.ref, plan, host - persist, ctx.gpu))
        if lookups:
            reasons.append(f"embedding tables {', '.join(p for p, _ in lookups)} are read on the CPU")
        plans.append(replace(plan, reasons=tuple(reasons)))
    return plans


def _disk_speed(ref: ModelRef, plan: Plan, nbytes: int | None = None, gpu: Gpu | None = None) -> str:
    """The expected speed of a plan that reads ``nbytes`` (default: its ``disk_bytes``) from disk on every pass
    of the model, as ``speed.real_time_factor`` (the one estimate ``vesper models`` shows too) predicts it."""
    nbytes = plan.offload.get("disk_bytes", 0) if nbytes is None else nbytes
    rtf = real_time_factor(plan, ref.family, gpu.bandwidth_gbps if gpu else 0.0,
                           gpu.pinned_bandwidth_gbps if gpu else 0.0)
    passes = ref.facts.kv_cache_copies
    each = (f"on each of the up to {passes} passes of the model a frame makes, one per KV cache" if passes > 1
            else "on each decode step")
    return (f"expected speed: about {rtf:.1f} s of decoding per second of audio, reading {gib(nbytes)} from disk "
            f"{each}: {nbytes / (DISK_READ_GBPS * 1e9):.1f} s at the {DISK_READ_GBPS:g} GB/s NVMe read assumed, "
            "less for what the page cache holds; it runs, far slower than real time")


def _cpu(ref: ModelRef, hardware: Hardware, work: Workload, search: _Search) -> Plan | None:
    """Everything on the CPU, or None (with the reason noted) when it needs more RAM than may be used.

    bf16 where the CPU computes it natively; else fp32, and when fp32 weights do not fit, bf16 storage
    upcast per layer to fp32 (half the RAM, fp32 arithmetic). Where the weights still do not fit and the
    CPU computes in the dtype the checkpoint stores (``_maps_weights``), they stay in the checkpoint's
    memory-mapped files: only the KV cache and activations need RAM, the page cache holds what it can.
    """
    policy = cpu_policy(hardware.cpu_bf16)
    need = _cpu_need(ref, work, policy)
    if need > usable_ram(hardware) and policy.storage == "float32":
        search.note(f"CPU in fp32: needs {gib(need)} of RAM, more than the {_ram_words(hardware)}; "
                    "trying bf16 weights upcast per layer")
        policy = upcast_policy(policy)
        need = _cpu_need(ref, work, policy)
    weights = ref.shape.at(policy.storage).total_bytes
    offload: dict = {}
    if need > usable_ram(hardware) and _maps_weights(ref, policy):
        need -= weights
        offload = {"home": "disk", "disk_bytes": weights}
        search.cpu_disk = f"even with its {gib(weights)} of weights left in the checkpoint's files on disk"
        search.note(f"CPU: its {gib(weights)} of {policy.storage} weights do not fit the RAM; they stay in the "
                    "checkpoint's memory-mapped safetensors, read through the page cache every decode step")
    elif need > usable_ram(hardware):
        search.cpu_disk = _unmapped_why(ref, policy)
    search.cpu_need = need
    if need > usable_ram(hardware):
        search.note(f"CPU only: not possible (needs {gib(need)} of RAM, {_ram_words(hardware)})")
        return None
    reasons = tuple(search.reasons) + (policy.reason,)
    projections = "int8" if hardware.cpu_int8 else ""
    if projections:
        reasons += ("a CPU tier decodes with int8 projections (this CPU has AVX2 int8 dot products)",)
    codec_dtype = "bfloat16" if hardware.cpu_bf16 else ""
    if codec_dtype:
        reasons += ("a CPU tier decodes audio with its codec in bf16 (this CPU computes bf16 natively)",)
    components = {c.name: {"role": c.role.value, "bytes": c.nbytes, "dtype": policy.storage,
                           "compute_dtype": policy.compute, "placement": "cpu"}
                  for c in ref.shape.at(policy.storage).components}
    plan = Plan(ref.label, "cpu", "resident", "cpu", policy.storage, {"": "cpu"}, work.chunk_chars,
                work.batch_size, kv_cache_bytes(ref.facts, ref.shape.at(policy.storage), work), MemoryBreakdown(), 0,
                need, reasons, components, offload=offload, model_digest=ref.shape.digest,
                compute_dtype=_compute_dtype(policy), cpu_projections=projections,
                cpu_codec_dtype=codec_dtype)
    return replace(plan, reasons=reasons + (_disk_speed(ref, plan),)) if offload else plan


def _maps_weights(ref: ModelRef, policy: DtypePolicy) -> bool:
    """Whether a CPU plan may leave its weights in the checkpoint's memory-mapped files: the checkpoint
    stores them in the dtype the plan keeps (loading converts nothing into RAM) and the CPU computes in
    it natively (bf16 only with AVX512-BF16 or AMX). A bf16 checkpoint on a CPU without native bf16 is not
    run from disk (per-layer upcasting on top of the disk reads): the refusal names a model that fits."""
    return policy.storage == policy.compute == ref.checkpoint_dtype


def _unmapped_why(ref: ModelRef, policy: DtypePolicy) -> str:
    """Why ``_maps_weights`` is false, in words a refusal can end on."""
    stored = ref.checkpoint_dtype
    if stored is None:
        return "the dtype its weights are stored in is not known before the download, so none are left on disk"
    if policy.compute != policy.storage and stored == policy.storage:
        return f"this CPU has no native {stored} arithmetic (AVX512-BF16 or AMX) to compute from weights left on disk"
    return f"its weights are stored in {stored}, not the {policy.storage} the CPU keeps, so none are left on disk"


def _cpu_need(ref: ModelRef, work: Workload, policy: DtypePolicy) -> int:
    """RAM of a CPU plan: weights in storage, KV cache and activations in compute, the upcast temporaries."""
    size = ref.shape.at(policy.storage)
    compute = ref.shape.at(policy.compute)
    return size.total_bytes + kv_cache_bytes(ref.facts, compute, work) \
        + activation_bytes(ref.facts, compute, work, policy) + upcast_bytes(compute, policy)


def _compute_dtype(policy: DtypePolicy) -> str:
    return policy.compute if policy.compute != policy.storage else ""


_PART_WORDS = {"weights_resident": "the weights that cannot leave the GPU", "kv_cache": "the KV cache",
               "activations": "activations", "streamed_buffers": "buffers for streamed layers",
               "cuda_context": "the CUDA context and runtime", "safety_margin": "the safety margin"}


def _refusal(ref: ModelRef, hardware: Hardware, work: Workload, search: _Search) -> str:
    """One sentence: what the nearest plan needed, its largest part, and what would make a plan fit.

    The figures printed are the figures compared: RAM against the usable share, VRAM against free.
    """
    mapped = search.cpu_disk.startswith("even")
    cpu = (f"on the CPU it needs {gib(search.cpu_need)} of RAM{' ' + search.cpu_disk if mapped else ''}, more than "
           f"the {_ram_words(hardware)}" + (f", and {search.cpu_disk}" if search.cpu_disk and not mapped else ""))
    advice = ["close other programs"]
    if search.closest is None:
        where = cpu
    else:
        memory, budget, chars = search.closest
        part, nbytes = memory.largest()
        where = (f"its smallest GPU plan needs {gib(memory.total)} of the {gib(budget)} free on "
                 f"{hardware.gpu.name}, the largest part being {_PART_WORDS[part]} ({gib(nbytes)}), and {cpu}")
        if part in ("kv_cache", "activations") and chars > MIN_CHUNK_CHARS:
            advice.insert(0, f"use shorter chunks ({MIN_CHUNK_CHARS} characters)")
        if work.batch_size > 1:
            advice.insert(0, "decode one chunk at a time")
    smaller = _largest_smaller_fitting(ref, hardware, work)
    if smaller:
        advice.append(f"choose {smaller}, the largest model that fits here (`vesper models` lists them all)")
    elif ref.label != min(stored(), key=lambda name: stored()[name].parameters):
        advice.append("choose a smaller model (`vesper models` shows which fit)")
    return f"{ref.label} does not fit this machine: {where}; {', '.join(advice[:-1])} or {advice[-1]}." \
        if len(advice) > 1 else f"{ref.label} does not fit this machine: {where}; {advice[0]}."


def _largest_smaller_fitting(ref: ModelRef, hardware: Hardware, work: Workload) -> str | None:
    """The registered model with the most parameters, fewer than ``ref``'s, that gets a plan here.

    Advice, not a silent switch: a user who named a model gets that model or a refusal that says what
    would fit (the default model is already the smallest).
    """
    from inference.models import describe

    own = ref.shape.parameters
    for name in sorted(stored(), key=lambda n: stored()[n].parameters, reverse=True):
        if stored()[name].parameters < own:
            try:
                candidates(describe(name), hardware, work)
            except NoPlanFitsError:
                continue
            return name
    return None


def _names(components) -> str:
    return " and ".join(c.name for c in components)


STEPS = (_resident, _codec_cpu, _streamed, _zero3_cpu, _streamed_disk, _zero3_nvme)  # the GPU steps, fastest first
