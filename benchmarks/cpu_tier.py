"""Pocket TTS's CPU tier: real-time factor of each weight option against fp32, and how far its audio moves.

Real-size Pocket TTS (random weights, its real codec config) through ``PocketSession``, the session the
CPU plan opens, at batch 1 on ``--threads`` threads: fp32, bf16 weight storage and int8 projections
(``weight_dtype=torch.qint8``: backbone and flow head). Variants are interleaved and repeated; each
figure is a median, next to its ratio to fp32 from the same run, with the machine's load average and the
process CPU time per thread (on a shared machine the better estimate of an idle one). The audio and the
latents of every variant are compared with fp32's for the same seed (sampling on, the released
temperature): SNR in dB, max and mean absolute difference. Random weights never end a chunk, so
every chunk runs its full budget.

    taskset -c 0,1 python benchmarks/cpu_tier.py --threads 2            # about 2 minutes on a quiet host
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.realtime import SENTENCE, build_model, machine  # noqa: E402
from inference import fastpath  # noqa: E402

VARIANTS = {"fp32": None, "bf16_weights": torch.bfloat16, "int8": torch.qint8}
FRAME_S = 0.08  # Pocket TTS: 12.5 frames per second


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    noise = float(np.sum((reference - other) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(reference ** 2)) / noise)


def difference(reference: np.ndarray, other: np.ndarray) -> dict:
    return {"snr_db": snr_db(reference, other), "max_abs": float(np.abs(reference - other).max()),
            "mean_abs": float(np.abs(reference - other).mean())}


def run(session, prompt, frames: int, seed: int) -> tuple[dict, np.ndarray]:
    start, cpu = time.perf_counter(), time.process_time()
    audio = session.generate(prompt, [SENTENCE], [seed], max_frames=frames)[0]
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    seconds = frames * FRAME_S
    return {"rtf": wall / seconds, "cpu_rtf_per_thread": cpu / torch.get_num_threads() / seconds}, audio


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=50, help="frames per timed chunk (4 s of audio)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--tag", default="local")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from inference.adapters.pocket_tts import ADAPTER
    from inference.models import describe

    with tempfile.TemporaryDirectory() as scratch:
        adapter, loaded = build_model("pocket_tts", torch.device("cpu"), torch.float32, False, Path(scratch))
    loaded.model.generation_config.do_sample, loaded.model.generation_config.temperature = True, 0.7
    audio, rate = np.random.default_rng(0).standard_normal(24000 * 5).astype(np.float32) * 0.1, 24000
    with torch.inference_mode():
        prompt = adapter.build_voice_prompt(loaded, audio, rate, None)
    capacity = fastpath.capacity_for(describe("pocket-tts"), 300)
    sessions, opened = {}, {}
    for name, weights in VARIANTS.items():
        start = time.perf_counter()
        sessions[name] = fastpath.open_session(ADAPTER, loaded, 1, capacity, weight_dtype=weights)
        opened[name] = time.perf_counter() - start
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    audio_of, latents_of = {}, {}
    for name, session in sessions.items():  # first calls, and the audio and latents for the same seed
        audio_of[name] = run(session, prompt, args.frames, seed=7)[1]
        with torch.inference_mode():
            inputs = adapter.prompt_inputs(loaded, prompt, [SENTENCE])
            latents_of[name] = session.decoder.generate(inputs, [7], args.frames)[0].numpy().copy()
    for _ in range(args.repeats):
        for name, session in sessions.items():
            figures, _ = run(session, prompt, args.frames, seed=7)
            runs[name].append({**figures, "load_1min": os.getloadavg()[0]})
    results = []
    base = statistics.median(r["rtf"] for r in runs["fp32"])
    for name in VARIANTS:
        rtf = statistics.median(r["rtf"] for r in runs[name])
        results.append({"variant": name, "rtf": rtf, "ratio_to_fp32": rtf / base,
                        "cpu_rtf_per_thread": statistics.median(r["cpu_rtf_per_thread"] for r in runs[name]),
                        "load_1min": [r["load_1min"] for r in runs[name]], "open_s": opened[name],
                        "audio_vs_fp32": difference(audio_of["fp32"], audio_of[name]),
                        "latents_vs_fp32": difference(latents_of["fp32"], latents_of[name])})
    info = {**machine(torch.device("cpu"), torch.get_num_threads()), "frames": args.frames,
            "repeats": args.repeats, "uptime": os.popen("uptime").read().strip()}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"cpu-tier-{args.tag}-{args.threads}threads"
    (args.out / f"{stem}.json").write_text(json.dumps({"machine": info, "results": results}, indent=1))
    lines = [f"# Pocket TTS CPU tier, batch 1, {args.threads} threads", "", "```", json.dumps(info, indent=1),
             "```", "", "| variant | RTF (median) | vs fp32 | CPU s per thread per audio s | load | audio SNR dB "
             "| audio max abs | latents SNR dB | latents max abs |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        a, lat = r["audio_vs_fp32"], r["latents_vs_fp32"]
        lines.append(f"| {r['variant']} | {r['rtf']:.3f} | {r['ratio_to_fp32']:.2f} | {r['cpu_rtf_per_thread']:.3f} "
                     f"| {', '.join(f'{x:.1f}' for x in r['load_1min'])} | {a['snr_db']:.1f} | {a['max_abs']:.3g} "
                     f"| {lat['snr_db']:.1f} | {lat['max_abs']:.3g} |")
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
