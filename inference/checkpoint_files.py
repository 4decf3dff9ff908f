"""What a checkpoint folder's safetensors files hold, read from their headers alone (no torch, no weights read).

A plan that reads layers from disk every decode step pays their stored bytes, and weights stay in the
OS page cache (not in Vesper's RAM) only when they are used as stored; the planner reads the stored
dtype here for folders (registered models state it in ``ModelSpec.checkpoint_dtype``). The disk-streamed
executor finds each layer's tensors by name in the same files.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import cache
from pathlib import Path

from safetensors import safe_open

DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64"}  # safetensors' names


def weight_files(folder: Path) -> list[Path]:
    """The model's own safetensors files (a processor's codec in a subfolder is another checkpoint)."""
    return sorted(Path(folder).glob("*.safetensors"))


def stored_dtype(folder: Path) -> str | None:
    """The dtype most of the folder's floating-point weights are stored in, by element count (None: none)."""
    files = weight_files(folder)
    return _stored_dtype(tuple((str(f), f.stat().st_mtime_ns) for f in files))


@cache
def _stored_dtype(files: tuple[tuple[str, int], ...]) -> str | None:
    counts: Counter[str] = Counter()
    for name, _ in files:
        with safe_open(name, framework="numpy") as handle:
            for key in handle.keys():
                piece = handle.get_slice(key)
                dtype = DTYPES.get(piece.get_dtype())
                if dtype is not None:
                    counts[dtype] += math.prod(piece.get_shape())
    return counts.most_common(1)[0][0] if counts else None


def key_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the file holding it, for every safetensors file of the folder."""
    out: dict[str, Path] = {}
    for file in weight_files(folder):
        with safe_open(str(file), framework="numpy") as handle:
            out.update(dict.fromkeys(handle.keys(), file))
    return out
