"""A loaded model under a plan: voice prompts in, waveforms out, a batch of chunks at a time.

The engine is what runs inside the worker process. It owns the model's memory; everything it is
given (text, a decoded reference recording) and gives back (numpy audio) is plain data, so the
caller never needs torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import psutil
import torch

from inference import calibration, executors, fastpath
from inference.adapters.base import LoadedModel, VoicePrompt
from inference.audio import resample
from inference.executors.base import closed_on_failure
from inference.models import ModelRef, fetch
from inference.planning.types import Plan
from inference.settings import threads_chosen_by_user


def chunk_seed(seed: int, index: int) -> int:
    """Each chunk draws from its own seed, so any chunk can be regenerated alone (resume, retry)."""
    return seed + index


class Engine:
    """One model loaded for one plan."""

    def __init__(self, ref: ModelRef, plan: Plan, loaded: LoadedModel, keep: list | None = None,
                 fast: fastpath.FastSession | None = None):
        self.ref = ref
        self.plan = plan
        self.loaded = loaded
        self.keep = keep or []  # what the executor needs alive while the model runs (hooks, engines)
        self.fast = fast  # the fast decode session, where the model and placement allow one

    @classmethod
    def load(cls, ref: ModelRef, plan: Plan) -> Engine:
        """Fetch the checkpoint if needed and let the plan's executor place it.

        On a GPU, the first load of a plan on this machine also calibrates it (one probe at the
        worst-case chunk); ``engine.plan`` then carries the measured correction. A load that fails after
        the executor placed the model (the probe or the fast session ran out of memory) closes what the
        executor keeps before the error leaves, so no pinned memory or hooks outlive it.
        """
        if plan.device != "cpu":
            # cuDNN attention builds an execution plan for every new key length, i.e. at every decode
            # step (~12 ms of CPU per call, measured on an H100): the flash and memory-efficient kernels
            # need none.
            torch.backends.cuda.enable_cudnn_sdp(False)
        placed = executors.get(plan.executor).load(ref, plan, fetch(ref))
        with closed_on_failure(placed.keep):
            plan = calibration.calibrate(plan, ref, placed.loaded)
            fast, reason = _open_fast_session(ref, plan, placed.loaded)
        return cls(ref, replace(plan, reasons=plan.reasons + (reason,)), placed.loaded, placed.keep, fast)

    def close(self) -> None:
        """End what the executor keeps (hooks, streams, page-locked host memory) now rather than at garbage
        collection, each keeper even if another fails; the model itself goes when the last reference does."""
        keep, self.keep, self.fast = self.keep, [], None
        errors = []
        for held in keep:
            try:
                held.close()
            except Exception as exc:  # noqa: BLE001 - the others must still be closed; the first is raised
                errors.append(exc)
        if errors:
            raise errors[0]

    @property
    def sample_rate(self) -> int:
        return self.ref.adapter.sample_rate

    def voice_prompt(self, audio: np.ndarray, rate: int, transcript: str | None) -> VoicePrompt:
        """Encode a reference recording (any rate) for this model."""
        with torch.inference_mode():
            target = self.ref.adapter.sample_rate
            return self.ref.adapter.build_voice_prompt(self.loaded, resample(audio, rate, target), target,
                                                       transcript)

    def synthesize(self, prompt: VoicePrompt, text: str, seed: int) -> np.ndarray:
        """One chunk of text as a mono float32 waveform at ``sample_rate``."""
        return self.synthesize_batch(prompt, [text], [seed])[0]

    def synthesize_batch(self, prompt: VoicePrompt, texts: list[str], seeds: list[int]) -> list[np.ndarray]:
        """Several chunks in one decode loop, one waveform each, chunk ``i`` drawn from ``seeds[i]``.

        The fast path draws each chunk's randomness from its own seed, whatever batch it runs in.
        Plain ``generate`` shares one random stream, seeded with the first chunk's seed, so its audio
        is reproducible for the same batch composition: callers group chunks the same way every time
        (fixed by index).
        """
        with torch.inference_mode():
            if self.fast is not None:
                return self.fast.generate(prompt, list(texts), list(seeds))
            torch.manual_seed(seeds[0])
            return self.ref.adapter.generate(self.loaded, prompt, list(texts))


    def stream_batch(self, prompt: VoicePrompt, texts: list[str],
                     seeds: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Audio of a batch as the fast path produces it: ``(row, next samples)``, in order per row.

        Without a fast session nothing streams: each row comes whole, once the batch is done.
        """
        if self.fast is None:
            yield from enumerate(self.synthesize_batch(prompt, texts, seeds))
            return
        for piece in self.fast.stream(prompt, list(texts), list(seeds)):  # the session runs in inference mode
            yield piece.row, piece.audio


def _open_fast_session(ref: ModelRef, plan: Plan, loaded: LoadedModel) -> tuple[fastpath.FastSession | None, str]:
    """The fast decode session where the plan and the model allow one, with the reason the plan shows.

    On the CPU only sessions written as a CPU tier run (Pocket TTS: it streams audio from the first
    frames and is faster than ``generate`` on two cores, benchmarks/results/realtime.md); other models
    run the adapter's plain ``generate`` there, which is what transformers itself computes.
    """
    if plan.device == "cpu":
        if not threads_chosen_by_user():
            torch.set_num_threads(_physical_cores())
        if not fastpath.cpu_tier(ref.adapter):
            return None, "decode: plain transformers generate on the CPU"
    support = fastpath.support(ref.adapter, loaded, plan)
    if not support.available:
        return None, support.reason
    capacity = fastpath.capacity_for(ref, plan.max_chunk_chars)
    options = {"model_step": True} if support.model_step else {}
    if plan.device == "cpu" and plan.cpu_projections == "int8":
        # 0.58x fp32's time on one thread (load 4.4), audio 35 dB SNR: results/cpu-tier-local-1threads
        options["weight_dtype"] = torch.qint8
    return fastpath.open_session(ref.adapter, loaded, plan.batch_size, capacity, **options), support.reason


def _physical_cores() -> int:
    """Decode steps are matrix-vector products: hyper-threads share a core's vector units and only contend."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1
