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
from inference.fastpath.sessions import AudioPiece, CsmSession, FastSession, PocketSession, VibeVoiceSession

__all__ = ["AudioPiece", "FastSession", "Support", "capacity_for", "cpu_tier", "open_session", "support"]

SESSIONS = {"csm": CsmSession, "pocket_tts": PocketSession, "vibevoice": VibeVoiceSession}


@dataclass(frozen=True)
class Support:
    available: bool
    reason: str  # one line for the plan: what runs, or why plain ``generate`` does


def support(adapter: ModelAdapter, loaded: LoadedModel | None = None, plan=None) -> Support:
    """Whether the fast path serves this model under this plan; decided before or after loading.

    It serves plans whose language model is resident on the GPU: ``resident``, and ``codec-cpu``
    where the session decodes audio outside its graph (the codec then decodes each block of frames
    on the CPU). Plans that stream layers or read embeddings on the CPU run plain ``generate``.
    """
    session = SESSIONS.get(adapter.family)
    if session is None:
        return Support(False, f"fast decode: not written for {adapter.family} yet, plain transformers "
                              "generate")
    if plan is not None:
        if plan.streamed_layers or plan.lookups_on_cpu or plan.executor != "resident":
            return Support(False, f"fast decode: needs the language model resident on one device "
                                  f"({plan.level} plan), plain generate")
        if plan.compute_on_cpu and not session.codec_outside_graph:
            return Support(False, "fast decode: the codec runs inside the frame graph and must share the "
                                  "GPU, plain generate")
    if loaded is not None:
        problem = session.unsupported(loaded)
        if problem:
            return Support(False, f"fast decode: {problem}, plain generate")
    graphs = loaded is None or loaded.device.type == "cuda"
    return Support(True, "fast decode: " + session.describe(graphs))


def cpu_tier(adapter: ModelAdapter) -> bool:
    """Whether the fast session is the better decoder on a CPU too (else plain ``generate`` runs there)."""
    session = SESSIONS.get(adapter.family)
    return session is not None and session.cpu_tier


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
