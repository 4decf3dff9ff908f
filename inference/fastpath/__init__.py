"""Fast decoding: static KV caches sized by the plan, CUDA-graph frame steps, GPU sampling, batched
chunks that stop on their own, and audio streamed as frames are produced.

Entry points: ``support`` says whether a model under a plan can take the fast path (and why not, for
the plan's reasons), ``open_session`` builds a ``FastSession`` for a plan's batch and chunk size,
``cpu_tier`` says whether the session is also the better decoder on a CPU, and ``capacity_for`` is
the cache length the planner's KV prediction already accounts for. Anything the fast path cannot
reproduce falls back to the adapter's plain ``generate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.adapters.base import LoadedModel, ModelAdapter
from inference.fastpath.sessions import AudioPiece, CsmSession, FastSession, PocketSession, VibeVoiceSession
from inference.planning.estimates import worst_positions

__all__ = ["AudioPiece", "FastSession", "Support", "capacity_for", "cpu_tier", "open_session", "support"]

SESSIONS = {"csm": CsmSession, "pocket_tts": PocketSession, "vibevoice": VibeVoiceSession}


@dataclass(frozen=True)
class Support:
    available: bool
    reason: str  # one line for the plan: what runs, or why plain ``generate`` does
    model_step: bool = False  # the language model is offloaded: step it through its executor, outside the graph


def support(adapter: ModelAdapter, loaded: LoadedModel | None = None, plan=None) -> Support:
    """Whether the fast path serves this model under this plan; decided before or after loading.

    Where the language model is resident (``resident``; ``codec-cpu`` when the session decodes audio
    outside its graph) the whole frame is one graph. Where the streamed executor brings backbone
    layers in from host memory, sessions that can step the model eagerly keep the rest of the frame
    graphed (``model_step``). ZeRO-3 and accelerate plans, and embedding tables read on the CPU, run
    plain ``generate``: the frame graph reads weights those executors may keep elsewhere.
    """
    session = SESSIONS.get(adapter.family)
    if session is None:
        return Support(False, f"fast decode: not written for {adapter.family} yet, plain transformers "
                              "generate")
    model_step = False
    if plan is not None:
        if plan.lookups_on_cpu or plan.executor not in ("resident", "streamed"):
            return Support(False, f"fast decode: not with the {plan.executor} executor"
                                  f"{' and embeddings read on the CPU' if plan.lookups_on_cpu else ''} "
                                  f"({plan.level} plan), plain generate")
        if plan.compute_dtype and plan.compute_dtype != plan.dtype:
            return Support(False, "fast decode: its layers read weights directly, not through the per-module "
                                  "upcast of fp16-stored weights, plain generate")
        model_step = bool(plan.streamed_layers)
        if model_step and not session.steps_offloaded_models:
            return Support(False, f"fast decode: needs the language model resident ({plan.level} plan), "
                                  "plain generate")
        if plan.compute_on_cpu and not session.codec_outside_graph:
            return Support(False, "fast decode: the codec runs inside the frame graph and must share the "
                                  "GPU, plain generate")
    if loaded is not None:
        problem = session.unsupported(loaded)
        if problem:
            return Support(False, f"fast decode: {problem}, plain generate")
    graphs = loaded is None or loaded.device.type == "cuda"
    return Support(True, "fast decode: " + session.describe(graphs, model_step), model_step)


def cpu_tier(adapter: ModelAdapter) -> bool:
    """Whether the fast session is the better decoder on a CPU too (else plain ``generate`` runs there)."""
    session = SESSIONS.get(adapter.family)
    return session is not None and session.cpu_tier


def capacity_for(ref, chunk_chars: int) -> int:
    """Backbone positions one chunk needs: the planner's prompt estimate plus the chunk's frame budget."""
    return worst_positions(ref.facts, chunk_chars)


def open_session(adapter: ModelAdapter, loaded: LoadedModel, batch_size: int, capacity: int,
                 warm_up: bool = True, **options) -> FastSession | None:
    """A warmed-up fast session, or None when ``support`` says plain ``generate`` must run."""
    if not support(adapter, loaded).available:
        return None
    session = SESSIONS[adapter.family](adapter, loaded, batch_size, capacity, **options)
    if warm_up:
        session.warm_up()
    return session
