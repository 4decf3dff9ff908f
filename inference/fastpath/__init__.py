"""Fast resident decoding: static KV caches sized by the plan, CUDA-graph frame steps, GPU sampling,
batched chunks that stop on their own, and audio streamed as frames are produced.

Entry points: ``support`` says whether a loaded model can take the fast path (and why not, for the
plan's reasons), ``open_session`` builds a ``FastSession`` for a plan's batch and chunk size, and
``capacity_for`` is the cache length the planner's KV prediction already accounts for. Anything the
fast path cannot reproduce falls back to the adapter's plain ``generate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.adapters.base import LoadedModel, ModelAdapter
from inference.fastpath.sampling import Sampling
from inference.fastpath.sessions import AudioPiece, CsmSession, FastSession, PocketSession

__all__ = ["AudioPiece", "FastSession", "Support", "capacity_for", "open_session", "support"]

SESSIONS = {"csm": CsmSession, "pocket_tts": PocketSession}


@dataclass(frozen=True)
class Support:
    available: bool
    reason: str  # one line for the plan: what runs, or why plain ``generate`` does


def support(adapter: ModelAdapter, loaded: LoadedModel | None = None,
            device_map: dict | None = None) -> Support:
    """Whether the fast path serves this model on this placement; decided before or after loading."""
    if adapter.family not in SESSIONS:
        return Support(False, f"fast decode: not written for {adapter.family} yet, plain transformers "
                              "generate")
    if device_map and len({str(d) for d in device_map.values()}) > 1:
        return Support(False, "fast decode: needs the whole model on one device (offloaded plan), "
                              "plain generate")
    if adapter.family == "pocket_tts":
        return Support(True, "fast decode: static KV cache sized by the plan, lean step loop, streamed codec")
    if loaded is not None:
        model = loaded.model
        try:
            Sampling.from_generation_config(model.generation_config)
            Sampling.from_generation_config(model.depth_decoder.generation_config)
        except ValueError as exc:
            return Support(False, f"fast decode: {exc}, plain generate")
        if loaded.device.type != "cuda":
            return Support(True, "fast decode: static KV cache, eager steps (no CUDA graphs on the CPU)")
    return Support(True, "fast decode: static KV cache sized by the plan, one CUDA graph replay per frame, "
                         "sampling on the GPU, stop checks every 8 frames, streamed Mimi decode")


def capacity_for(ref, chunk_chars: int) -> int:
    """Backbone positions one chunk needs: the planner's prompt estimate plus the chunk's frame budget."""
    from inference.planner import prompt_tokens  # the planner imports adapters; import late to stay acyclic

    return prompt_tokens(ref, chunk_chars) + ref.adapter.frames_for_text("x" * chunk_chars)


def open_session(adapter: ModelAdapter, loaded: LoadedModel, batch_size: int, capacity: int,
                 warm_up: bool = True, **options) -> FastSession | None:
    """A warmed-up fast session, or None when ``support`` says plain ``generate`` must run."""
    if not support(adapter, loaded).available:
        return None
    session = SESSIONS[adapter.family](adapter, loaded, batch_size, capacity, **options)
    if warm_up:
        session.warm_up()
    return session
