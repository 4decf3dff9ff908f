"""The fast path on streamed plans: plain ``generate`` vs the fast session stepping the language model
through the streamed executor, for real-size models (random weights) under a laptop-sized VRAM cap.

For each (model, cap) the planner's plan for this GPU capped at that size is placed by Vesper's
streamed executor (layers the cap cannot hold are copied in from pinned host memory one layer
ahead), then ``generate`` and the fast session decode the same chunk, interleaved, medians of
repeats. The PCIe bound per frame is the streamed bytes per language-model pass over the measured
pinned bandwidth, times the passes per frame. Random weights never end a chunk: every variant runs
to the frame budget (VibeVoice's audio token is forced in both, as in realtime.py). ``generate`` runs
VibeVoice's guidance pair as two model calls per frame (two passes over the streamed layers), the
fast session as one batch of two rows (one pass).

    python benchmarks/streamed_fast.py                       # csm-1b at 4 GB, vibevoice-1.5b at 6 GB
    python benchmarks/streamed_fast.py --cells csm:4 --frames 48
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import offload  # noqa: E402  (benchmarks/offload.py: environment, capped machine, warm-up)
import realtime  # noqa: E402  (benchmarks/realtime.py: real-size models, timed variants)

from inference import executors, fastpath  # noqa: E402
from inference.models import describe  # noqa: E402
from inference.planner import Workload, candidates  # noqa: E402

GiB = 1024**3


def cell(family: str, cap_gb: float, env: dict, args, scratch: Path) -> list[dict]:
    """Place one model for one cap with the streamed executor and time both decoders."""
    name = realtime.SPEC_NAMES[family]
    ref = describe(name)
    plan = next((p for p in candidates(ref, offload.machine(cap_gb, env), Workload(300, 1))
                 if p.executor == "streamed"), None)
    base = {"model": name, "cap_gb": cap_gb}
    if plan is None:
        return [{**base, "skipped": "no streamed plan for this cap"}]
    adapter, loaded = realtime.build_model(family, torch.device("cpu"), torch.bfloat16, False, scratch)
    allowed = int(cap_gb * 1e9) - env["cuda_context_bytes"]
    torch.cuda.set_per_process_memory_fraction(min(1.0, allowed / env["total_bytes"]))
    placed = executors.get("streamed").place(loaded, replace(plan, device="cuda:0"))
    loaded = placed.loaded
    streamed_bytes = sum(p.numel() * p.element_size() for path in plan.streamed_layers
                         for p in loaded.model.get_submodule(path).parameters())
    pass_ms = 1000 * streamed_bytes / (env["pinned_h2d_gbps"] * 1e9)
    # generate runs the guidance pair as two model calls, the fast session as one batch of two rows
    passes = {"generate": adapter.kv_cache_copies, "fast (model stepped)": 1}
    audio, rate = sf.read(realtime.REPO / "assets" / "voices" / "sample.wav", dtype="float32")
    with torch.inference_mode():
        prompt = adapter.build_voice_prompt(loaded, np.tile(audio, 2)[: 10 * rate], rate, None)
    session = fastpath.open_session(adapter, loaded, 1, fastpath.capacity_for(ref, 300), model_step=True)
    if family == "vibevoice":
        session.decoder.allowed.fill_(loaded.model.config.audio_token_id)
    variants = {"generate": lambda: realtime.run_hf(family, adapter, loaded, prompt, [realtime.SENTENCE],
                                                    args.frames),
                "fast (model stepped)": lambda: realtime.run_fast(session, adapter, prompt, [realtime.SENTENCE],
                                                                  args.frames)}
    for fn in variants.values():  # first calls: capture, allocator growth
        realtime.timed(fn, loaded.device)
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for variant, fn in variants.items():
            runs[variant].append(realtime.timed(fn, loaded.device))
    rows = []
    for variant, results in runs.items():
        row = {**base, "variant": variant, "plan": f"{plan.level}: {len(plan.streamed_layers)} layers streamed",
               "streamed_gb": round(streamed_bytes / 1e9, 2),
               "pcie_bound_ms_per_frame": round(passes[variant] * pass_ms, 1),
               **realtime.median_of(results)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    for item in placed.keep:
        if hasattr(item, "close"):
            item.close()
    torch.cuda.set_per_process_memory_fraction(1.0)
    return rows


def markdown(env: dict, rows: list[dict]) -> str:
    head = (f"# Fast path on streamed plans\n\n{env['gpu']}, PCIe {env['pcie_current']} (max {env['pcie_max']}), "
            f"driver {env['driver']}, pinned host-to-device {env['pinned_h2d_gbps']} GB/s, torch "
            f"{env['versions']['torch']}, transformers {env['versions']['transformers']}.\n\n")
    keys = ["model", "cap_gb", "plan", "variant", "frames", "ms_per_frame", "ms_per_frame_all", "rtf", "ttfa_s",
            "pcie_bound_ms_per_frame", "streamed_gb", "peak_alloc_gib", "error", "skipped"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = []
        for key in keys:
            value = row.get(key, "")
            cells.append(f"{value:.3g}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", default="csm:4,vibevoice:6", help="family:cap_gb pairs")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    env = offload.environment()
    offload.warm_up(3.0)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for spec in args.cells.split(","):
            family, cap = spec.split(":")
            rows += cell(family, float(cap), env, args, Path(scratch))
            gc.collect()  # a session's graph and the executor's hooks hold the model in reference cycles
            torch.cuda.empty_cache()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"streamed-fast-{env['gpu'].replace(' ', '-').lower()}"
    (args.out / f"{stem}.json").write_text(json.dumps({"machine": env, "results": rows}, indent=1, default=str))
    (args.out / f"{stem}.md").write_text(markdown(env, rows))
    print(markdown(env, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
