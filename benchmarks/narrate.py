"""Narration speed: ``narrate`` end to end vs the engine's own batch throughput vs a one-chunk generate loop.

One text of about ``--minutes`` of speech (about 150 words a minute), cut into the same chunks for all three:

1. **narrate**: the whole narration path (worker process, micro-batches a chapter at a time, chunk files,
   assembly, mastering, encoding to M4B), timed on a warm worker (the model loaded by a first job, as a
   long narration amortises it);
2. **engine batch**: ``Engine.synthesize_batch`` over the chunks in batches of ``--batch`` in this
   process: the ceiling narration can reach;
3. **anchor loop**: one chunk at a time through the adapter's plain ``generate``, the way a simple script
   would (``--anchor-chunks`` times only the first N chunks and scales by audio seconds).

Each is reported in audio seconds per wall-clock second; the goals are narrate >= 0.8 of the engine and
>= 20x the anchor loop. Writes JSON and markdown to benchmarks/results/.

    python benchmarks/narrate.py --tiny --minutes 2                      # tiny random Pocket TTS, CPU
    python benchmarks/narrate.py --model pocket-tts                      # the real model (downloaded once)
    python -m tests.tiny_models --full-size /tmp/full                    # real-size random weights, then:
    python benchmarks/narrate.py --model /tmp/full/csm --batch 8 --vram-gib 8 --anchor-chunks 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inference.text import chunk_text  # noqa: E402 - needs the repository on sys.path

WORDS = ("the quiet river turned slowly past the old mill while a grey heron watched from the reeds and "
         "somewhere beyond the hill a bell rang twice for the evening service of the village").split()
WORDS_PER_MINUTE = 150
GiB = 2**30


def book_text(minutes: float) -> str:
    """Deterministic prose: sentences of 8-16 words, paragraphs of four sentences."""
    words, sentences, i = int(minutes * WORDS_PER_MINUTE), [], 0
    while sum(len(s.split()) for s in sentences) < words:
        length = 8 + (i * 7) % 9
        body = " ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(length))
        sentences.append(body[0].upper() + body[1:] + ".")
        i += 1
    return "\n\n".join(" ".join(sentences[p:p + 4]) for p in range(0, len(sentences), 4))


def run_narrate(model: str, voice: Path, chunks: list[str], batch: int, vram_bytes: int, scratch: Path) -> dict:
    from inference.narration.book import Narration, narrate
    from inference.narration.runner import Relay, Runner
    from inference.narration.script import Chapter, Chunk, Paragraph, Script
    from inference.voice_library import voice_from_file
    from inference.worker.client import WorkerClient
    from inference.worker.protocol import WorkerSettings

    per_chapter = 16
    chapters = tuple(Chapter(f"Chapter {n + 1}", (Paragraph(tuple(Chunk(c, (c,)) for c in chunks[i:i + per_chapter])),))
                     for n, i in enumerate(range(0, len(chunks), per_chapter)))
    narrator = voice_from_file(voice)
    narration = Narration("benchmark", Script(chapters, title="Benchmark"), {None: narrator}, scratch / "project",
                          model, out=scratch / "book.m4b")
    warm_chapter = Chapter("Warm-up", (Paragraph((Chunk("Warming up.", ("Warming up.",)),)),))
    warm_up = replace(narration, script=Script((warm_chapter,)), project=scratch / "warm-up", out=None)
    relay = Relay()
    with WorkerClient(WorkerSettings(max_batch=batch, vram_limit_bytes=vram_bytes), on_event=relay) as client:
        warm = time.perf_counter()
        narrate(warm_up, relay.serve(Runner(client)))  # load the model, encode the voice
        load_seconds = time.perf_counter() - warm
        started = time.perf_counter()
        result = narrate(narration, relay.serve(Runner(client)))
        seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "generation_seconds": round(result.run.seconds, 2),
            "audio_seconds": round(result.run.audio_seconds, 2), "book_seconds": round(result.timeline.seconds, 2),
            "load_seconds": round(load_seconds, 2), "plan": result.run.plan,
            "audio_s_per_s": round(result.run.audio_seconds / seconds, 3)}


def run_engine(model: str, voice: Path, chunks: list[str], batch: int, vram_bytes: int,
               anchor_chunks: int | None) -> tuple[dict, dict]:
    import torch

    from inference import hardware
    from inference.audio import read_reference
    from inference.engine import Engine
    from inference.models import describe
    from inference.planner import Workload, make_plan

    ref = describe(model)
    plan = make_plan(ref, hardware.detect(), Workload(max(len(c) for c in chunks), batch))
    if vram_bytes and plan.device.startswith("cuda"):
        total = torch.cuda.get_device_properties(plan.device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, vram_bytes / total), plan.device)
    engine = Engine.load(ref, plan)
    audio, rate = read_reference(voice)
    prompt = engine.voice_prompt(audio, rate, None)
    engine.synthesize_batch(prompt, chunks[:batch], list(range(batch)))  # warm-up: graphs, caches
    started = time.perf_counter()
    produced = 0
    for start in range(0, len(chunks), plan.batch_size):
        group = chunks[start:start + plan.batch_size]
        produced += sum(len(a) for a in engine.synthesize_batch(prompt, group, list(range(start, start + len(group)))))
    seconds = time.perf_counter() - started
    batch_result = {"seconds": round(seconds, 2), "audio_seconds": round(produced / engine.sample_rate, 2),
                    "audio_s_per_s": round(produced / engine.sample_rate / seconds, 3), "batch": plan.batch_size,
                    "plan_reasons": list(engine.plan.reasons)}
    subset = chunks[:anchor_chunks] if anchor_chunks else chunks
    started, produced = time.perf_counter(), 0
    with torch.inference_mode():
        for index, text in enumerate(subset):
            torch.manual_seed(index)
            produced += len(ref.adapter.generate(engine.loaded, prompt, [text])[0])
    seconds = time.perf_counter() - started
    audio_seconds = produced / engine.sample_rate
    anchor = {"seconds": round(seconds, 2), "chunks": len(subset), "audio_seconds": round(audio_seconds, 2),
              "audio_s_per_s": round(audio_seconds / seconds, 3)}
    return batch_result, anchor


def main() -> int:
    args = _parser().parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from inference import hardware

    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        model = _tiny_model(scratch) if args.tiny else args.model
        label = args.label or ("tiny-pocket-tts" if args.tiny else Path(args.model).name)
        chunks = chunk_text(book_text(args.minutes))
        vram = int(args.vram_gib * GiB)
        narrated = run_narrate(model, args.voice, chunks, args.batch, vram, scratch)
        engine, anchor = run_engine(model, args.voice, chunks, args.batch, vram, args.anchor_chunks)
    report = {"model": label, "minutes_of_text": args.minutes, "chunks": len(chunks), "batch": args.batch,
              "vram_cap_gib": args.vram_gib, "machine": hardware.detect().to_dict(),
              "narrate": narrated, "engine_batch": engine, "anchor_loop": anchor,
              "narrate_vs_engine": round(narrated["audio_s_per_s"] / engine["audio_s_per_s"], 3),
              "narrate_vs_anchor": round(narrated["audio_s_per_s"] / anchor["audio_s_per_s"], 2)}
    markdown = _markdown(report)
    print(markdown)
    out = REPO / "benchmarks" / "results" / f"narrate-{label}"
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown)
    return 0


def _markdown(report: dict) -> str:
    gpu = (report["machine"]["gpus"] or [{}])[0]
    device = (f"{gpu['name']}, PCIe Gen{gpu['pcie_generation']} x{gpu['pcie_width']}" if gpu else
              f"CPU, {report['machine']['cpu_count']} cores")
    rows = [("narrate (end to end)", report["narrate"]), ("engine batch", report["engine_batch"]),
            ("anchor loop (one chunk, plain generate)", report["anchor_loop"])]
    cap = f"{report['vram_cap_gib']} GiB" if report["vram_cap_gib"] else "none"
    lines = [f"# Narration speed: {report['model']} ({device})", "",
             f"{report['minutes_of_text']} min of text, {report['chunks']} chunks, batch {report['batch']}, "
             f"VRAM cap {cap}; narrate plan: {report['narrate']['plan']}.", "",
             "| path | wall s | audio s | audio s per s |", "|---|---|---|---|"]
    lines += [f"| {name} | {r['seconds']} | {r['audio_seconds']} | {r['audio_s_per_s']} |" for name, r in rows]
    lines += ["", f"narrate / engine batch: **{report['narrate_vs_engine']}** (goal >= 0.8); "
                  f"narrate / anchor loop: **{report['narrate_vs_anchor']}x** (goal >= 20x).", ""]
    if report["model"].startswith("tiny"):
        lines += ["A tiny random checkpoint speaks chunks of well under a second: this measures the overheads "
                  "(worker messages, chunk files, assembly, mastering, encoding), not the goals.", ""]
    return "\n".join(lines)


def _tiny_model(scratch: Path) -> str:
    from tests.tiny_models import build

    return str(build("pocket_tts", scratch / "tiny-pocket"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pocket-tts", help="name, hub id or folder")
    parser.add_argument("--tiny", action="store_true", help="a tiny random Pocket TTS checkpoint (no download)")
    parser.add_argument("--label", help="the results file's name (default: from the model)")
    parser.add_argument("--voice", type=Path, default=REPO / "assets" / "voices" / "sample.wav")
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of speech in the text (default 10)")
    parser.add_argument("--batch", type=int, default=8, help="chunks decoded together (default 8)")
    parser.add_argument("--vram-gib", type=float, default=0.0, help="cap GPU memory at this (0: no cap)")
    parser.add_argument("--anchor-chunks", type=int, help="time the anchor loop on the first N chunks only")
    return parser


if __name__ == "__main__":
    sys.exit(main())
