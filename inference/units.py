"""Byte sizes for people: the one formatter every command, plan reason and message uses, and the one parser
of sizes they type (``--vram-limit 6GiB``, ``VESPER_VRAM_LIMIT``)."""

from __future__ import annotations

import re

from inference.errors import BadInputError

MiB = 1024**2
GiB = 1024**3

# Binary units as written by Windows' task manager and nvidia-smi ("GB" meaning GiB there) would make
# "6GB" ambiguous; Vesper follows the SI and IEC meanings: GB = 10^9 bytes, GiB = 2^30.
_UNITS = {"": GiB, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": MiB,
          "g": 10**9, "gb": 10**9, "gib": GiB, "t": 10**12, "tb": 10**12, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


def gib(n: int | float) -> str:
    """``n`` bytes as GiB with two decimals ("4.98 GiB"): plans are compared at that precision."""
    return f"{n / GiB:.2f} GiB"


def parse_size(text: str, what: str = "size") -> int:
    """Bytes in ``text``: "6GiB", "6 GB" (10^9), "6144MiB", or a bare number of GiB ("5.5").

    ``what`` names the setting in the error, which says how to write one.
    """
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise BadInputError(f"{what} {text!r} is not a size: give a positive one such as 6GiB, 6GB or 6144MiB.")
    return int(float(match.group(1)) * _UNITS[unit])
