"""Pocket TTS's CPU tier: the real-time factor of what each kind of CPU's plan runs, against fp32, where the time
goes, and how far each variant's audio moves from fp32's.

A random full-size checkpoint (``tests.tiny_models.full_size``, written to a temporary folder: no download) is
loaded through the app's own path: ``make_plan`` for this machine with its CPU flags set each way, then
``Engine.load``, which opens the plan's ``PocketSession`` at batch 1. The variants the app runs:

- ``fp32``: a CPU with neither flag, the reference;
- ``int8``: int8 dot products but no native bf16 (AVX2): fp32 model, int8 projections (backbone, flow head,
  codec transformer);
- ``bf16+int8``: native bf16 too (AVX512-BF16, AMX): bf16 model, int8 projections, the codec's SEANet in bf16.
  Only where this CPU computes bf16 natively (elsewhere no plan picks it, and bf16 convolutions are emulated).

and, beside it on the same loaded model, what each of its parts is worth: ``bf16+int8, codec fp32`` (the codec
as before: fp32 SEANet) and ``int8, codec bf16`` (the fp32 model with the bf16 codec). Every variant decodes
the same chunk (``--frames`` frames of one sentence after a 5 s voice, sampling on, seed 7; random weights never
end it early); the timed runs are interleaved, ``--repeats`` per variant, each figure a median, its ratio to
fp32's median of the same run, the process CPU time per thread (on a shared machine the better estimate of an
idle one) and the load average. Then one more run per variant with timers around the session's parts splits its
time: prompt prefill, backbone steps, flow head, codec transformer, codec SEANet, and the rest (Python, noise,
copies, the upsampler). The audio of every variant is compared with fp32's (``tests.audio_difference``: SNR,
max and mean absolute difference, mel spectrogram relative and dB difference). Last, each change of the tier
against what it replaced, part by part, on the model this CPU's plan runs (``benchmarks/cpu_tier_parts.py``).
Needs only the packages setup.cfg lists.

    taskset -c 0,1 python3 benchmarks/cpu_tier.py --threads 2 --repeats 3 --tag HOST-2cores

Writes ``benchmarks/results/cpu-tier-<tag>-<threads>threads.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import cpu_tier_parts  # noqa: E402
from benchmarks.realtime import SENTENCE, machine  # noqa: E402
from inference import fastpath  # noqa: E402
from inference.engine import Engine  # noqa: E402
from inference.hardware import Hardware, cpu_computes_bf16, cpu_computes_int8, detect  # noqa: E402
from inference.models import describe  # noqa: E402
from inference.planner import make_plan  # noqa: E402
from tests.audio_difference import difference  # noqa: E402
from tests.tiny_models.full_size import build_full  # noqa: E402

FRAME_S = 0.08  # Pocket TTS: 12.5 frames per second
SEED = 7
PARTS = ("prefill", "backbone", "flow_head", "codec_transformer", "codec_seanet")


@dataclass
class Variant:
    name: str
    what: str  # one line for the table
    session: fastpath.FastSession
    rate: int


def _plan_variants(ref, hardware: Hardware, threads: int) -> dict[str, Variant]:
    """The app's variants (Engine.load of the plan for each flag set) and the ablations beside them."""
    flags = {"fp32": (False, False), "int8": (False, True)}
    if hardware.cpu_bf16:
        flags["bf16+int8"] = (True, True)
    variants, engines = {}, {}
    for name, (bf16, int8) in flags.items():
        plan = make_plan(ref, replace(hardware, cpu_bf16=bf16, cpu_int8=int8))
        engines[name] = engine = Engine.load(ref, plan)
        what = f"plan: {plan.dtype}, projections {plan.cpu_projections or 'as the model'}, codec " \
               f"{plan.cpu_codec_dtype or 'float32'}"
        variants[name] = Variant(name, what, engine.fast, engine.sample_rate)
    if hardware.cpu_bf16:
        ablations = {"bf16+int8, codec fp32": ("bf16+int8", None), "int8, codec bf16": ("int8", torch.bfloat16)}
        for name, (base, codec) in ablations.items():
            engine = engines[base]
            session = fastpath.open_session(engine.ref.adapter, engine.loaded, 1, engine.fast.decoder.capacity,
                                            weight_dtype=torch.qint8, codec_dtype=codec)
            variants[name] = Variant(name, f"{base}'s model, codec {'bfloat16' if codec else 'float32'}",
                                     session, engine.sample_rate)
    torch.set_num_threads(threads)  # Engine.load picks the machine's cores; the benchmark pins its own count
    return variants


def _chunk(variant: Variant, prompt, frames: int) -> tuple[float, float, np.ndarray]:
    """Wall and CPU seconds of one chunk, and its audio."""
    start, cpu = time.perf_counter(), time.process_time()
    audio = variant.session.generate(prompt, [SENTENCE], [SEED], max_frames=frames)[0]
    return time.perf_counter() - start, time.process_time() - cpu, audio


def _timed(totals: dict[str, float], part: str, call: Callable) -> Callable:
    def run(*args, **kwargs):
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            totals[part] += time.perf_counter() - start
    return run


def _split(variant: Variant, prompt, frames: int) -> dict[str, float]:
    """One chunk with timers around the session's parts: each part's share of the chunk's wall time."""
    session, totals = variant.session, defaultdict(float)
    decoder, codec = session.decoder, session.codec.decoder
    targets = {"prefill": (decoder, "_prefill"), "backbone": (decoder.stack, "step"),
               "flow_head": (decoder, "_flow"), "codec_transformer": (codec.decoder_transformer, "forward"),
               "codec_seanet": (codec.decoder_seanet, "forward")}
    for part, (owner, name) in targets.items():
        setattr(owner, name, _timed(totals, part, getattr(owner, name)))
    try:
        wall = _chunk(variant, prompt, frames)[0]
    finally:
        for owner, name in targets.values():
            delattr(owner, name)  # the instance attribute only: the class's method shows through again
    shares = {part: totals[part] / wall for part in PARTS}
    shares["rest"] = 1 - sum(shares.values())
    return {"rtf": wall / (frames * FRAME_S), **shares}


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=50, help="frames per timed chunk (4 s of audio)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--tag", default="local")
    args = p.parse_args(argv)
    hardware = replace(detect(), gpus=())  # the CPU's plans, on a GPU machine too
    seconds = args.frames * FRAME_S
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = build_full("pocket-tts", Path(scratch) / "pocket-tts", device="cpu")
        ref = describe(str(checkpoint))
        variants = _plan_variants(ref, hardware, args.threads)
    voice = np.random.default_rng(0).standard_normal(24000 * 5).astype(np.float32) * 0.1
    prompts = {}
    audio_of = {}
    for name, variant in variants.items():  # first calls; the audio for the same seed
        with torch.inference_mode():
            prompts[name] = variant.session.adapter.build_voice_prompt(variant.session.loaded, voice,
                                                                              24000, None)
        audio_of[name] = _chunk(variant, prompts[name], args.frames)[2]
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, variant in variants.items():
            wall, cpu, _ = _chunk(variant, prompts[name], args.frames)
            runs[name].append({"rtf": wall / seconds, "cpu_rtf_per_thread": cpu / args.threads / seconds,
                               "load_1min": os.getloadavg()[0]})
    splits = {name: _split(variant, prompts[name], args.frames) for name, variant in variants.items()}
    app = variants["bf16+int8" if hardware.cpu_bf16 else "int8"]  # what this CPU's plan runs
    with torch.inference_mode():
        inputs = app.session.adapter.prompt_inputs(app.session.loaded, prompts[app.name], [SENTENCE])
    parts = cpu_tier_parts.measure(cpu_tier_parts.parts(app.session, inputs, hardware.cpu_bf16),
                                   2 * args.repeats + 1, args.threads)
    base = statistics.median(r["rtf"] for r in runs["fp32"])
    results = []
    for name, variant in variants.items():
        rtf = statistics.median(r["rtf"] for r in runs[name])
        results.append({"variant": name, "what": variant.what, "kind": variant.session.kind, "rtf": rtf,
                        "ratio_to_fp32": rtf / base,
                        "cpu_rtf_per_thread": statistics.median(r["cpu_rtf_per_thread"] for r in runs[name]),
                        "load_1min": [r["load_1min"] for r in runs[name]], "split": splits[name],
                        "audio_vs_fp32": difference(audio_of["fp32"], audio_of[name], variant.rate)})
    info = {**machine(torch.device("cpu"), torch.get_num_threads()), "cpu_name": _cpu_name(),
            "cpu_bf16": cpu_computes_bf16(), "cpu_int8": cpu_computes_int8(), "affinity": _affinity(),
            "frames": args.frames, "repeats": args.repeats, "uptime": os.popen("uptime").read().strip()}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"cpu-tier-{args.tag}-{args.threads}threads"
    (args.out / f"{stem}.json").write_text(json.dumps({"machine": info, "results": results, "parts": parts},
                                                      indent=1) + "\n")
    text = markdown(results, info, args.threads) + "\n".join(["", *cpu_tier_parts.markdown(parts), ""])
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    print(f"Written: {args.out / stem}.{{json,md}}. On a quiet host, pinned to two cores:\n"
          "taskset -c 0,1 python3 benchmarks/cpu_tier.py --threads 2 --repeats 3 --tag h200host-2cores")
    return 0


def _affinity() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def markdown(results: list[dict], info: dict, threads: int) -> str:
    lines = [f"# Pocket TTS CPU tier, batch 1, {threads} threads", "", "```", json.dumps(info, indent=1), "```", "",
             "| variant | what runs | RTF (median) | vs fp32 | CPU s per thread per audio s | load | audio SNR dB "
             "| audio max abs | mel relative | mel dB mean abs |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        a = r["audio_vs_fp32"]
        lines.append(f"| {r['variant']} | {r['what']} | {r['rtf']:.3f} | {r['ratio_to_fp32']:.2f} "
                     f"| {r['cpu_rtf_per_thread']:.3f} | {', '.join(f'{x:.1f}' for x in r['load_1min'])} "
                     f"| {a['snr_db']:.1f} | {a['max_abs']:.3g} | {a['mel_relative']:.3f} "
                     f"| {a['mel_db_mean_abs']:.2f} |")
    lines += ["", "Where one chunk's time goes (one extra run per variant, timers around the session's parts; "
              "shares of its wall time):", "",
              "| variant | RTF of this run | " + " | ".join(PARTS) + " | rest |",
              "|---|---|" + "---|" * (len(PARTS) + 1)]
    for r in results:
        s = r["split"]
        lines.append(f"| {r['variant']} | {s['rtf']:.3f} | "
                     + " | ".join(f"{100 * s[part]:.0f}%" for part in (*PARTS, "rest")) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
