"""What a streaming decoder hands over every few frames."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class FrameBlock:
    """Frames ``start``..``stop`` of every row, as produced, and how many frames each row keeps so far.

    ``frames`` is (rows, stop - start, ...) on the model's device (CSM's codes, Pocket's latents); a
    row's audio ends at ``lengths[row]`` (its end or its budget), which later blocks never lower.
    """

    start: int
    stop: int
    frames: torch.Tensor
    lengths: list[int]
    done: bool
