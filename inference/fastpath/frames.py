"""What a streaming decoder hands over every few frames."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


class StopState:
    """Per-row stop bookkeeping of a graph-stepped decoder, kept on the device, and the host loop that
    replays frames and hands them out in blocks.

    The frame step (``runner``) writes ``out[:, frame]``, ``stop_at`` (the first frame a row did not
    produce) and ``finished``; the host reads them only once per block.
    """

    runner: Callable[[], None]
    check_every: int

    def allocate_stop_state(self, batch: int, device: torch.device) -> None:
        long = {"dtype": torch.long, "device": device}
        self.frame = torch.zeros(1, **long)
        self.seeds = torch.zeros(batch, **long)
        self.max_frames = torch.zeros(batch, **long)
        self.stop_at = torch.zeros(batch, **long)
        self.finished = torch.zeros(batch, dtype=torch.bool, device=device)

    def reset_stop_state(self, seeds: list[int], max_frames: list[int], never: int) -> None:
        """Start a request; rows past ``seeds`` are padding and start finished (a budget of 0)."""
        extra = self.max_frames.shape[0] - len(seeds)
        budgets = list(max_frames) + [0] * extra
        self.seeds.copy_(torch.tensor(list(seeds) + [0] * extra))
        self.max_frames.copy_(torch.tensor(budgets))
        self.stop_at.fill_(never)
        self.finished.copy_(torch.tensor([b <= 0 for b in budgets]))
        self.frame.zero_()

    def update_stop_state(self, ended: torch.Tensor) -> None:
        """Inside the frame step: rows whose frame ``ended`` stop there; every row stops at its budget."""
        self.stop_at.copy_(torch.where(ended & ~self.finished, self.frame, self.stop_at))
        self.finished |= ended | (self.frame + 1 >= self.max_frames)

    def blocks(self, out: torch.Tensor, rows: int, limit: int, first_block: int) -> Iterator[FrameBlock]:
        """Replay up to ``limit`` frames, yielding ``out``'s new frames every ``check_every`` (the first
        block after ``first_block``). Only here does the host wait for the device."""
        start, check = 0, min(first_block, limit)
        for frame in range(limit):
            self.runner()
            if frame + 1 < check:
                continue
            lengths = torch.minimum(self.stop_at, self.max_frames)[:rows].tolist()
            done = bool(self.finished[:rows].all()) or frame + 1 == limit
            yield FrameBlock(start, frame + 1, out[:rows, start:frame + 1].clone(), lengths, done)
            if done:
                return
            start, check = frame + 1, min(frame + 1 + self.check_every, limit)
