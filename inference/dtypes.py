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
    poor fp16 arithmetic, but storing weights in fp16 halves memory and transfers, so compute
    is done in fp32. Older cards and the CPU use fp32 throughout.
    """
    if gpu is None:
        return DtypePolicy("float32", "float32", "CPU: fp32 (no fast half-precision arithmetic)")
    major, minor = gpu.compute_capability
    if major >= 8:
        return DtypePolicy("bfloat16", "bfloat16", f"compute capability {major}.{minor} >= 8.0: bf16")
    if major == 7:
        if "GTX 16" in gpu.name:
            return DtypePolicy("float32", "float32", f"{gpu.name}: fp16 produces NaNs on GTX 16xx, fp32")
        return DtypePolicy("float16", "float16", f"compute capability {major}.{minor}: fp16")
    if major == 6:
        return DtypePolicy("float16", "float32",
                           f"compute capability {major}.{minor}: fp16 storage, fp32 compute (slow fp16 math)")
    return DtypePolicy("float32", "float32", f"compute capability {major}.{minor} < 6.0: fp32")
