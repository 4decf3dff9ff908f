"""CPU time of each model's codec per second of audio: the ``cpu_real_time_factor`` the adapters declare.

Real-size codecs (the adapters' own configs) with random weights (speed does not depend on weight values),
fp32, on ``--threads`` CPU threads. Each codec runs as its model's generation runs it:

- ``mimi`` (CSM-1B): ``codec_model.decode`` of a whole chunk's 32-codebook codes;
- ``pocket`` (Pocket TTS): ``audio_tokenizer.decode`` of a whole chunk's latents;
- ``vibevoice-acoustic`` / ``vibevoice-semantic`` (VibeVoice): one frame at a time through the streaming
  padding caches, the acoustic decoder turning a latent into 3200 samples and the semantic encoder
  encoding those samples again for the next step.

Pin the process to the cores you mean (``taskset -c 0,1``). The figure is wall seconds per second of audio
(below 1: faster than real time); on a machine other processes share, the process's own CPU time over the
thread count (``cpu_s_per_thread``) is the better estimate of what an idle machine would take. Writes
``benchmarks/results/codec-cpu-<tag>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoModel, PocketTTSAudioTokenizerModel

from inference.adapters.csm import csm_1b_config
from inference.adapters.pocket_tts import real_codec_config
from inference.adapters.vibevoice import vibevoice_1_5b_config

RESULTS = Path(__file__).resolve().parent / "results"
RATE = 24000  # every codec here runs at 24 kHz


def mimi(seconds: float):
    model = AutoModel.from_config(csm_1b_config().codec_config).eval()
    frames = round(seconds * model.config.frame_rate)
    codes = torch.randint(0, model.config.codebook_size, (1, model.config.num_quantizers, frames))
    return lambda: model.decode(codes)


def pocket(seconds: float):
    config = real_codec_config()
    model = PocketTTSAudioTokenizerModel._from_config(config).eval()
    frames = round(seconds * RATE / config.frame_size)
    latents = torch.randn(1, frames, 32)
    return lambda: model.decode(latents)


def _vibevoice_towers():
    config = vibevoice_1_5b_config()
    acoustic = AutoModel.from_config(config.audio_config).eval()
    semantic = AutoModel.from_config(config.semantic_model_config).eval()
    return config, acoustic, semantic


def vibevoice_acoustic(seconds: float):
    from transformers.models.vibevoice_acoustic_tokenizer.modeling_vibevoice_acoustic_tokenizer import (
        VibeVoiceAcousticTokenizerConv1dPaddingCache as PaddingCache,
    )

    config, acoustic, _ = _vibevoice_towers()
    frames = round(seconds * RATE / config.audio_config.hop_length)
    latents = torch.randn(frames, 1, 1, config.audio_config.hidden_size)

    def run():
        cache = PaddingCache()
        for latent in latents:
            acoustic.decode(latent, padding_cache=cache, use_cache=True)

    return run


def vibevoice_semantic(seconds: float):
    from transformers.models.vibevoice_acoustic_tokenizer.modeling_vibevoice_acoustic_tokenizer import (
        VibeVoiceAcousticTokenizerConv1dPaddingCache as PaddingCache,
    )

    config, _, semantic = _vibevoice_towers()
    hop = config.audio_config.hop_length
    audio = torch.randn(round(seconds * RATE / hop), 1, 1, hop) * 0.1

    def run():
        cache = PaddingCache()
        for frame in audio:
            semantic(frame, padding_cache=cache, use_cache=True)

    return run


CODECS = {"mimi": mimi, "pocket": pocket, "vibevoice-acoustic": vibevoice_acoustic,
          "vibevoice-semantic": vibevoice_semantic}


def measure(name: str, seconds: float, repeats: int) -> dict:
    with torch.inference_mode():
        run = CODECS[name](seconds)
        run()  # warm-up: first-call allocations and kernel selection
        times, cpu_times = [], []
        for _ in range(repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    median = statistics.median(times)
    per_thread = statistics.median(cpu_times) / torch.get_num_threads()
    return {"codec": name, "audio_s": seconds, "repeats": repeats, "median_s": round(median, 3),
            "min_s": round(min(times), 3), "max_s": round(max(times), 3),
            "wall_s_per_audio_s": round(median / seconds, 3),
            "cpu_s_per_thread_per_audio_s": round(per_thread / seconds, 3),
            "load_average": round(os.getloadavg()[0], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", nargs="+", choices=list(CODECS), default=list(CODECS))
    parser.add_argument("--seconds", type=float, default=4.0, help="audio decoded per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="local-2cores")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.codecs:
        rows.append(measure(name, args.seconds, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    machine = {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
               "python": platform.python_version(), "torch": torch.__version__,
               "transformers": transformers.__version__}
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"codec-cpu-{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    lines = [f"# Codec decode on the CPU ({args.threads} threads, fp32, real size, random weights)", "",
             "```", json.dumps(machine, indent=1), "```", "",
             "| codec | audio s | repeats | median s | min s | max s | wall s per audio s | CPU s per thread per "
             "audio s | load average |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['codec']} | {r['audio_s']} | {r['repeats']} | {r['median_s']} | {r['min_s']} | {r['max_s']} | "
              f"{r['wall_s_per_audio_s']} | {r['cpu_s_per_thread_per_audio_s']} | {r['load_average']} |"
              for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
