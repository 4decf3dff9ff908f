"""VibeVoice's acoustic encoder on a voice reference, on the CPU: time and peak memory above the weights.

The real-size encoder (the 1.5B's ``audio_config``, random weights: memory and speed do not depend on their
values) in fp32, as a GPU plan's CPU island runs it, encodes ``--seconds`` of audio whole and in the
family's ``encode_piece_seconds`` pieces through its padding cache (what ``build_voice_prompt`` does). A
thread samples the process's RSS every 2 ms; the peak above the RSS before the call, over the samples
encoded at once, is the activation figure per sample that ``Family.codec_elements_per_sample`` rounds up
(in 4-byte elements). Each measurement runs in a fresh process, so one call's freed pages do not hide the
next one's. Writes ``benchmarks/results/tower-activations-<tag>.{json,md}``.

    taskset -c 0,1 python benchmarks/tower_activations.py --threads 2 --tag local-2cores
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inference.families import FAMILIES  # noqa: E402 - needs the repository on sys.path

RATE = 24_000


def measure(seconds: float, piece: float | None, threads: int) -> dict:
    """Encode ``seconds`` of noise (whole, or ``piece`` seconds at a time); wall time and peak RSS growth."""
    import psutil
    import torch
    from transformers import AutoModel
    from transformers.models.vibevoice_acoustic_tokenizer.modeling_vibevoice_acoustic_tokenizer import (
        VibeVoiceAcousticTokenizerConv1dPaddingCache as PaddingCache,
    )

    from inference.adapters.vibevoice import vibevoice_1_5b_config

    torch.set_num_threads(threads)
    config = vibevoice_1_5b_config().audio_config
    encoder = AutoModel.from_config(config).encoder.eval()
    hop = config.hop_length
    samples = int(seconds * RATE) // hop * hop
    audio = torch.randn(1, 1, samples) * 0.1
    step = int(piece * RATE) // hop * hop if piece else samples
    process = psutil.Process()
    base = peak = process.memory_info().rss
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    with torch.inference_mode():
        cache = PaddingCache() if step < samples else None
        for part in audio.split(step, dim=-1):
            encoder(part, padding_cache=cache, use_cache=cache is not None)
    wall = time.perf_counter() - started
    done.set()
    watcher.join()
    at_once = min(step, samples)
    return {"seconds": seconds, "piece_s": piece, "threads": threads, "wall_s": round(wall, 2),
            "wall_s_per_audio_s": round(wall / seconds, 3), "peak_above_weights_mib": round((peak - base) / 2**20),
            "fp32_elements_per_sample": round((peak - base) / 4 / at_once)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", nargs="+", type=float, default=[8, 20])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="local")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--one", nargs=2, type=float, help=argparse.SUPPRESS)  # internal: seconds, piece (0: whole)
    args = parser.parse_args(argv)
    if args.one:
        seconds, piece = args.one
        print(json.dumps(measure(seconds, piece or None, args.threads)))
        return 0
    piece = FAMILIES["vibevoice"].encode_piece_seconds
    rows = []
    for seconds in args.seconds:
        for each in (0.0, piece) if seconds > piece else (0.0,):
            done = subprocess.run([sys.executable, __file__, "--one", str(seconds), str(each), "--threads",
                                   str(args.threads)], capture_output=True, text=True, check=True, cwd=REPO)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    import torch
    import transformers

    env = {"cpu": platform.processor() or platform.machine(), "threads": args.threads, "torch": torch.__version__,
           "transformers": transformers.__version__}
    command = "python benchmarks/tower_activations.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"tower-activations-{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps({"environment": env, "command": command, "rows": rows}, indent=1))
    lines = ["# VibeVoice's acoustic encoder on a reference, CPU fp32 (real size, random weights)", "",
             f"`{command}`", "", "```", json.dumps(env, indent=1), "```", "",
             "| audio s | piece s | wall s | wall s per audio s | peak above weights MiB | fp32 elements per sample "
             "encoded at once |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['seconds']:g} | {r['piece_s'] or 'whole'} | {r['wall_s']} | {r['wall_s_per_audio_s']} | "
              f"{r['peak_above_weights_mib']} | {r['fp32_elements_per_sample']} |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
