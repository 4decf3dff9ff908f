"""The frame loop shared by the graphed decoders: what they hand over every few frames (``FrameBlock``),
their per-row stop state (``StopState``), and the split of a frame into a graphed head and a tail
that an offload executor may need to run eagerly (``GraphedDecoder``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from inference.fastpath.graphs import StepRunner


@dataclass
class FrameBlock:
    """Frames ``start``..``stop`` of every row, as produced, and how many frames each row keeps so far.

    ``frames`` is (rows, stop - start, ...) on the model's device (CSM's codes, Pocket's latents,
    VibeVoice's samples); a row's audio ends at ``lengths[row]`` (its end or its budget), which later
    blocks never lower.
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
    stop_checks_every_frame = False  # True where the stop flags live in host memory: reading them is free

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

    def update_stop_state(self, ended: torch.Tensor, keep: torch.Tensor | int = 0) -> None:
        """Inside the frame step: a row whose frame ``ended`` stops there (``keep`` 0: that frame is not
        kept) or after ``keep`` frames from it (the ending frame included); every row stops at its budget.

        A row that ends again before its stop keeps the first stop, as ``keep`` is fixed per row.
        """
        stop = torch.minimum(self.stop_at, self.frame + keep)
        self.stop_at.copy_(torch.where(ended & ~self.finished, stop, self.stop_at))
        self.finished |= (self.frame + 1 >= self.stop_at) | (self.frame + 1 >= self.max_frames)

    def blocks(self, out: torch.Tensor, rows: int, limit: int, first_block: int) -> Iterator[FrameBlock]:
        """Replay up to ``limit`` frames, yielding ``out``'s new frames every ``check_every`` (the first
        block after ``first_block``). Only here does the host wait for the device."""
        start, check = 0, min(first_block, limit)
        for frame in range(limit):
            self.runner()
            if frame + 1 < check and not (self.stop_checks_every_frame and bool(self.finished[:rows].all())):
                continue
            lengths = torch.minimum(self.stop_at, self.max_frames)[:rows].tolist()
            done = bool(self.finished[:rows].all()) or frame + 1 == limit
            yield FrameBlock(start, frame + 1, out[:rows, start:frame + 1].clone(), lengths, done)
            if done:
                return
            start, check = frame + 1, min(frame + 1 + self.check_every, limit)


class GraphedDecoder(StopState):
    """A decoder whose frame is ``_head`` (choose and render the frame, always graphable) then ``_tail``
    (the language model consumes it).

    With a resident model (``CachedStack``) the whole frame is one graph; with ``model_step`` (a
    ``ModelStack`` an offload executor serves) only the head is captured and the tail runs eagerly.
    """

    stack: object  # CachedStack | ModelStack
    model_step: bool
    batch: int
    capacity: int
    _use_graph: bool | None

    def _head(self) -> None:
        raise NotImplementedError

    def _tail(self) -> None:
        raise NotImplementedError

    def _allocate(self, batch: int, capacity: int) -> None:
        raise NotImplementedError

    def _clear(self) -> None:
        """Zero the caches after capture: warm-up garbage must never meet a mask (0 x NaN = NaN)."""
        self.stack.clear()

    def _frame(self) -> None:
        self._head()
        self._tail()

    def _eager(self) -> None:
        """What runs after the graph with ``model_step``: the tail (a decoder whose other parts an executor
        streams too runs them here)."""
        self._tail()

    def build_runner(self, device: torch.device) -> None:
        if self.model_step:
            self.runner = StepRunner(self._head, device, self._use_graph, then=self._eager)
        else:
            self.runner = StepRunner(self._frame, device, self._use_graph)

    def fit_request(self, embeds: torch.Tensor, mask: torch.Tensor,
                    max_frames: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Grow the buffers if this request needs more rows or positions, capture the graph if not yet
        done, and pad the prompts to the batch: extra rows repeat row 0 (their budget will be 0)."""
        rows, seq = mask.shape
        if rows > self.batch or seq + max(max_frames) > self.capacity:
            self._allocate(max(rows, self.batch), seq + max(max_frames))
        self.warm_up()
        extra = self.batch - rows
        if extra:
            embeds = torch.cat([embeds, embeds[:1].expand(extra, -1, -1)])
            mask = torch.cat([mask, mask[:1].expand(extra, -1)])
        return embeds, mask

    def warm_up(self) -> float:
        """Capture the frame graph now (on CUDA); returns the seconds it took. Idempotent."""
        if self.runner.use_graph and self.runner.graph is None:
            self.stack.ready_for_capture()
            self.runner.capture()
            self._clear()
        return self.runner.capture_seconds
