"""What machine are we on: GPUs (through NVML, before any CUDA context exists), RAM and OS.

The planner never asks torch about memory: creating a CUDA context costs about 0.6 GB of VRAM and
fixes the device before we know which plan fits. NVML reads free memory, compute capability and
the PCIe link without one. The same ``Hardware`` record comes from a named preset or a JSON file,
so plans can be made and tested for machines we do not have.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NoReturn

import psutil

from inference.errors import HardwareSpecError
from inference.units import GiB

# Usable host-to-device bandwidth per PCIe lane with pinned memory, GB/s: the raw lane rate times
# the ~80% that pinned copies reach in practice (measured 54.4-55.5 GB/s on Gen5 x16:
# docs/measurements.md, "Host-to-device bandwidth").
_PINNED_GBPS_PER_LANE = {1: 0.2, 2: 0.4, 3: 0.79, 4: 1.58, 5: 3.15, 6: 6.3}

# Memory bandwidth, GB/s, from the makers' specification sheets (laptop parts at their common memory
# clock), first match wins: decoding one frame reads every resident weight once, so it bounds speed.
_BANDWIDTH_BY_NAME = (("H200", 4800), ("H100 PCIe", 2000), ("H100", 3350), ("A100", 1555), ("L40", 864),
                      ("RTX 4090", 1008), ("RTX 4080", 717), ("RTX 3090", 936), ("RTX 3080", 760),
                      ("4060 Laptop", 256), ("4050 Laptop", 192), ("4070 Laptop", 256), ("4080 Laptop", 432),
                      ("3060 Laptop", 336), ("3070 Laptop", 448), ("3080 Laptop", 448), ("RTX 4060", 272),
                      ("RTX 3060", 360), ("RTX 2060", 336), ("GTX 1660", 192), ("GTX 1650", 128),
                      ("GTX 1060", 192), ("GTX 1070", 256), ("GTX 1080", 320), ("GTX 1050", 112))
# Without a known name: a typical card of the generation (compute capability major).
_BANDWIDTH_BY_MAJOR = {6: 160, 7: 300, 8: 360, 9: 2000, 10: 4000, 12: 400}


@dataclass(frozen=True)
class Gpu:
    """One NVIDIA GPU as NVML (or a preset) describes it."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int
    compute_capability: tuple[int, int]
    pcie_generation: int
    pcie_width: int
    driver: str = ""
    memory_bandwidth_gbps: float = 0.0  # 0: estimated from the name or compute capability

    @property
    def bandwidth_gbps(self) -> float:
        """Device memory bandwidth, GB/s: the one given, else the specification sheet's for the name."""
        if self.memory_bandwidth_gbps > 0:
            return self.memory_bandwidth_gbps
        known = next((gbps for part, gbps in _BANDWIDTH_BY_NAME if part in self.name), None)
        return float(known or _BANDWIDTH_BY_MAJOR.get(self.compute_capability[0], 200))

    @property
    def pinned_bandwidth_gbps(self) -> float:
        """Expected host-to-device copy rate from pinned memory, GB/s (10^9 bytes)."""
        return _PINNED_GBPS_PER_LANE.get(self.pcie_generation, 0.79) * max(self.pcie_width, 1)


@dataclass(frozen=True)
class Hardware:
    """The machine a plan is made for."""

    os: str
    cpu_count: int
    ram_total_bytes: int
    ram_available_bytes: int
    gpus: tuple[Gpu, ...] = field(default_factory=tuple)
    source: str = "detected"  # "detected", "preset:<name>" or a JSON file path
    cpu_bf16: bool = False  # the CPU multiplies bf16 natively (AVX512-BF16 or AMX): CPU plans keep bf16 weights
    vram_limit_bytes: int = 0  # the user's limit, already applied to every GPU's free_bytes (0: none)
    cpu_int8: bool = False  # int8 dot products (AVX2, VNNI): the CPU tier's projections run in int8

    @property
    def gpu(self) -> Gpu | None:
        """The GPU Vesper computes on: the one with the most free memory."""
        return max(self.gpus, key=lambda g: g.free_bytes, default=None)

    def to_dict(self) -> dict:
        data = asdict(self)
        for gpu, raw in zip(self.gpus, data["gpus"], strict=True):
            raw["compute_capability"] = list(gpu.compute_capability)
            raw["pinned_bandwidth_gbps"] = round(gpu.pinned_bandwidth_gbps, 1)
            raw["expected_memory_bandwidth_gbps"] = gpu.bandwidth_gbps  # written, not read: the estimate used
        return data


def with_vram_limit(hardware: Hardware, limit_bytes: int) -> Hardware:
    """``hardware`` as a process allowed ``limit_bytes`` of each GPU sees it: free memory is the smaller
    of what is free and the limit (the CUDA context counts inside it, as NVML counts it). 0: no limit."""
    if limit_bytes <= 0 or not hardware.gpus:
        return hardware
    gpus = tuple(replace(g, free_bytes=min(g.free_bytes, limit_bytes)) for g in hardware.gpus)
    return replace(hardware, gpus=gpus, vram_limit_bytes=limit_bytes)


def cpu_computes_bf16(flags: str | None = None) -> bool:
    """Whether the CPU has bf16 dot products (AVX512-BF16, or AMX tiles), from /proc/cpuinfo's flags.

    Elsewhere (macOS, Windows) this reads False: CPU plans then keep fp32, the safe choice.
    """
    if flags is None:
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    words = set(flags.split())
    return bool(words & {"avx512_bf16", "amx_bf16"})


def _gpu(name: str, gib: float, cc: tuple[int, int], gen: int, width: int) -> Gpu:
    # A laptop's display usually runs on the integrated GPU, leaving the dGPU nearly empty;
    # 256 MiB stands for the driver and the odd other process.
    total = int(gib * GiB)
    return Gpu(0, name, total, total - 256 * 1024**2, cc, gen, width, "preset")


PRESETS: dict[str, Hardware] = {
    "laptop-4050-6g": Hardware("Windows", 8, 16 * GiB, 10 * GiB,
                               (_gpu("NVIDIA GeForce RTX 4050 Laptop GPU", 6, (8, 9), 4, 8),)),
    "laptop-4060-8g": Hardware("Windows", 8, 16 * GiB, 10 * GiB,
                               (_gpu("NVIDIA GeForce RTX 4060 Laptop GPU", 8, (8, 9), 4, 8),)),
    "laptop-3060-6g": Hardware("Windows", 8, 16 * GiB, 10 * GiB,
                               (_gpu("NVIDIA GeForce RTX 3060 Laptop GPU", 6, (8, 6), 4, 16),)),
    "laptop-3070-8g": Hardware("Windows", 8, 16 * GiB, 10 * GiB,
                               (_gpu("NVIDIA GeForce RTX 3070 Laptop GPU", 8, (8, 6), 4, 16),)),
    "gtx1650-4g": Hardware("Linux", 4, 8 * GiB, 5 * GiB,
                           (_gpu("NVIDIA GeForce GTX 1650", 4, (7, 5), 3, 16),)),
    "gtx1060-6g": Hardware("Linux", 4, 16 * GiB, 11 * GiB,
                           (_gpu("NVIDIA GeForce GTX 1060 6GB", 6, (6, 1), 3, 16),)),
    "cpu-16g": Hardware("Linux", 4, 16 * GiB, 11 * GiB, ()),
}
PRESETS = {name: replace(h, source=f"preset:{name}") for name, h in PRESETS.items()}


def probe_gpus() -> tuple[Gpu, ...]:
    """Read every NVIDIA GPU through NVML; no GPU, no driver or no NVML library gives ()."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - any NVML failure means "no usable NVIDIA GPU"
        return ()
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        return tuple(_read_gpu(pynvml, i, driver) for i in range(pynvml.nvmlDeviceGetCount()))
    finally:
        pynvml.nvmlShutdown()


def _read_gpu(pynvml, index: int, driver: str) -> Gpu:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    try:
        # The current link can read low while the GPU idles in a power-saving state; the max is
        # what a busy copy will run at.
        gen = pynvml.nvmlDeviceGetMaxPcieLinkGeneration(handle)
        width = pynvml.nvmlDeviceGetMaxPcieLinkWidth(handle)
    except pynvml.NVMLError:  # virtualised GPUs may hide the link
        gen, width = 3, 16
    name = pynvml.nvmlDeviceGetName(handle)
    return Gpu(index, name if isinstance(name, str) else name.decode(), int(memory.total), int(memory.free),
               tuple(pynvml.nvmlDeviceGetCudaComputeCapability(handle)), int(gen), int(width),
               driver if isinstance(driver, str) else driver.decode())


def cpu_computes_int8(flags: str | None = None) -> bool:
    """Whether torch's int8 kernels (fbgemm: AVX2 at least, VNNI where present) run here, from
    /proc/cpuinfo's flags; elsewhere False, and the CPU tier keeps fp32."""
    if flags is None:
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    return "avx2" in flags.split()


def detect() -> Hardware:
    """Measure this machine."""
    memory = psutil.virtual_memory()
    return Hardware(platform.system(), os.cpu_count() or 1, int(memory.total), int(memory.available), probe_gpus(),
                    cpu_bf16=cpu_computes_bf16(), cpu_int8=cpu_computes_int8())


def from_json(path: Path) -> Hardware:
    """Read a machine description with the fields ``Hardware.to_dict`` writes (README lists them).

    ``ram_total_bytes`` and, for each GPU, ``name``, ``total_bytes`` and ``compute_capability`` are
    required; the rest have defaults. A missing or mistyped field is named with the type it needs.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise HardwareSpecError(f"Cannot read hardware description {path}: {exc}.") from exc
    spec = _Fields(path, "", data)
    ram_total = spec.get("ram_total_bytes", int)
    gpus = tuple(_gpu_from_json(_Fields(path, f"gpus[{i}].", g), i) for i, g in enumerate(spec.get("gpus", list, [])))
    return Hardware(spec.get("os", str, platform.system()), spec.get("cpu_count", int, 4), ram_total,
                    spec.get("ram_available_bytes", int, ram_total), gpus, str(path),
                    cpu_bf16=spec.get("cpu_bf16", bool, False), cpu_int8=spec.get("cpu_int8", bool, False))


def _gpu_from_json(spec: _Fields, index: int) -> Gpu:
    total = spec.get("total_bytes", int)
    capability = spec.get("compute_capability", list)
    if len(capability) != 2 or not all(_is_a(part, int) for part in capability):
        spec.fail("compute_capability", list)
    return Gpu(spec.get("index", int, index), spec.get("name", str), total, spec.get("free_bytes", int, total),
               (capability[0], capability[1]), spec.get("pcie_generation", int, 4), spec.get("pcie_width", int, 16),
               spec.get("driver", str, ""), float(spec.get("memory_bandwidth_gbps", float, 0.0)))


_REQUIRED = object()
_EXPECTED = {int: "a whole number", float: "a number", bool: "true or false", str: "a string", list: "a list"}
_UNITS = {"compute_capability": "a list of two whole numbers such as [8, 9]", "gpus": "a list of GPU objects"}


class _Fields:
    """One JSON object of a hardware description, read field by field with the type each needs."""

    def __init__(self, path: Path, prefix: str, data: object):
        self.path, self.prefix = path, prefix
        if not isinstance(data, dict):
            raise HardwareSpecError(f"Hardware description {path}: {prefix.rstrip('.') or 'the file'} must be a "
                                    "JSON object; `vesper hardware --json` shows the form.")
        self.data = data

    def get(self, name: str, kind: type, default: object = _REQUIRED):
        if name not in self.data:
            if default is _REQUIRED:
                self.fail(name, kind, missing=True)
            return default
        value = self.data[name]
        if not _is_a(value, kind):
            self.fail(name, kind)
        return value

    def fail(self, name: str, kind: type, missing: bool = False) -> NoReturn:
        expected = _UNITS.get(name) or _EXPECTED[kind] + (" (bytes)" if name.endswith("_bytes") else "")
        problem = "has no field" if missing else "has a wrong type for"
        raise HardwareSpecError(f"Hardware description {self.path} {problem} '{self.prefix}{name}': it needs "
                                f"{expected}; README lists every field and its unit.")


def _is_a(value: object, kind: type) -> bool:
    """JSON's types: a bool is not a number, though Python's ``bool`` is an ``int``; a whole number is one."""
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def resolve(spec: str | None) -> Hardware:
    """A preset name, a JSON file path, or None for this machine."""
    if spec is None:
        return detect()
    if spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise HardwareSpecError(f"Hardware file {spec} does not exist.")
        return from_json(path)
    raise HardwareSpecError(f"Unknown hardware preset '{spec}'. Known presets: {', '.join(PRESETS)}; "
                            "or pass a JSON file.")
