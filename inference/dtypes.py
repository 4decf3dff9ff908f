"""Which floating-point formats a device can use without losing speed or correctness.

Policies name dtypes as strings ("bfloat16", "float16", "float32"), the names torch gives them, so
planning needs no torch; the engine and executors turn a name into a torch dtype with
``getattr(torch, name)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.hardware import Gpu

ELEMENT_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class DtypePolicy:
    """How weights are stored and in what precision they are computed, with the reason."""

    storage: str
    compute: str
    reason: str

    @property
    def compute_bytes(self) -> int:
        """Bytes of one element in the compute dtype (activations are that wide)."""
        return ELEMENT_BYTES[self.compute]


def dtype_policy(gpu: Gpu | None) -> DtypePolicy:
    """Pick dtypes for a GPU (None: the CPU).

    bf16 needs Ampere (8.0) or newer to run at full speed. Turing and Volta (7.x) run fp16 well,
    except the GTX 16xx cards, whose fp16 path produces NaNs in these models. Pascal (6.x) has
    poor fp16 arithmetic. On both, storing weights in fp16 halves memory and transfers, and the
    resident and streamed executors upcast each layer's weights to fp32 just before it computes
    (``inference.executors.upcast``). bf16 checkpoint values in fp16's normal range are exact in fp16
    (10 mantissa bits against 7). Older cards use fp32 throughout; the CPU: ``cpu_policy``.
    """
    if gpu is None:
        return cpu_policy(False)
    major, minor = gpu.compute_capability
    if major >= 8:
        return DtypePolicy("bfloat16", "bfloat16", f"compute capability {major}.{minor} >= 8.0: bf16")
    if major == 7:
        if "GTX 16" in gpu.name:
            return DtypePolicy("float16", "float32", f"{gpu.name}: fp16 arithmetic gives NaNs on GTX 16xx: "
                               "fp16 storage, each layer upcast to fp32 to compute")
        return DtypePolicy("float16", "float16", f"compute capability {major}.{minor}: fp16")
    if major == 6:
        return DtypePolicy("float16", "float32", f"compute capability {major}.{minor}: fp16 storage, each layer "
                           "upcast to fp32 to compute (slow fp16 math)")
    return DtypePolicy("float32", "float32", f"compute capability {major}.{minor} < 6.0: fp32")


def cpu_policy(computes_bf16: bool) -> DtypePolicy:
    """The CPU's dtypes: bf16 where it has bf16 dot products (AVX512-BF16, AMX), else fp32."""
    if computes_bf16:
        return DtypePolicy("bfloat16", "bfloat16", "CPU with AVX512-BF16/AMX: bf16 weights and arithmetic")
    return DtypePolicy("float32", "float32", "CPU: fp32 (no fast half-precision arithmetic)")


def upcast_policy(policy: DtypePolicy) -> DtypePolicy:
    """``policy`` with bf16 storage and fp32 compute: half the memory of fp32, each layer upcast to compute.

    The CPU's last resort when fp32 weights do not fit its RAM.
    """
    return DtypePolicy("bfloat16", "float32", "CPU: fp32 weights do not fit RAM: bf16 storage, each layer upcast "
                       "to fp32 to compute")
