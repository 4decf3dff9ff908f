"""Worker memory over many consecutive jobs: does anything creep?

Runs N short jobs through one worker process, the way the GUI does, and prints for every job what the
worker recorded after its cleanup: resident and peak RSS and, when the job ran on CUDA, allocated and
reserved memory and their peaks. Growth is measured from the end of the warm-up (the first jobs load
the model, encode the voice and fill allocator caches). Writes JSON and markdown to benchmarks/results/.

    python benchmarks/worker_memory.py --tiny                 # tiny random Pocket TTS, no download
    python benchmarks/worker_memory.py --model pocket-tts     # the real model (downloaded once)
    python benchmarks/worker_memory.py --model csm-1b --jobs 200 --warmup 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inference.worker.client import WorkerClient  # noqa: E402 - needs the repository on sys.path
from inference.worker.protocol import JobStarted, MemoryStats, SpeakJob, WorkerSettings  # noqa: E402

MiB = 2**20
FIELDS = ("rss_bytes", "peak_rss_bytes", "cuda_allocated_bytes", "cuda_reserved_bytes",
          "cuda_peak_allocated_bytes", "cuda_peak_reserved_bytes")
RESIDENT = ("rss_bytes", "cuda_allocated_bytes", "cuda_reserved_bytes")  # what must not creep


def main() -> int:
    args = _parser().parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        model = _tiny_model(Path(scratch)) if args.tiny else args.model
        label = "tiny-pocket-tts" if args.tiny else args.model.replace("/", "_")
        report = run(model, label, args.voice, args.jobs, args.warmup, WorkerSettings(max_batch=args.batch))
    print_table(report)
    write(report, args.out)
    return 0


def run(model: str, label: str, voice: Path, jobs: int, warmup: int, settings: WorkerSettings) -> dict:
    """``jobs`` one-sentence jobs in one worker; the memory it recorded after each."""
    series, plan = [], ""
    started = time.perf_counter()

    def on_event(event) -> None:
        nonlocal plan
        if isinstance(event, JobStarted):
            plan = event.plan

    with WorkerClient(settings) as client:
        for i in range(jobs):
            text = f"Line {i + 1}: the quick brown fox jumps over the lazy dog."
            result = client.speak(SpeakJob(text, voice, model=model, seed=i), on_event)
            series.append({"job": i + 1, "seconds": round(result.seconds, 3), **_fields(result.memory)})
    return {"model": label, "plan": plan, "jobs": jobs, "warmup": warmup, "settings": vars(settings),
            "machine": {"python": platform.python_version(), "os": platform.platform()},
            "total_seconds": round(time.perf_counter() - started, 1), "growth": growth(series, warmup),
            "series": series}


def growth(series: list[dict], warmup: int) -> dict:
    """For each resident series: its value after the warm-up, and the largest and final rise above it."""
    base = series[min(warmup, len(series)) - 1]
    after = series[min(warmup, len(series)) - 1:]
    return {name: {"after_warmup": base[name], "max_rise": max(s[name] for s in after) - base[name],
                   "final_rise": after[-1][name] - base[name]} for name in RESIDENT}


def print_table(report: dict) -> None:
    print(f"{report['model']}: {report['jobs']} jobs, {report['plan']}, {report['total_seconds']} s")
    print(_row(["job", "s", *(_short(f) for f in FIELDS)]))
    for entry in report["series"]:
        print(_row([entry["job"], entry["seconds"], *(f"{entry[f] / MiB:.1f}" for f in FIELDS)]))
    for name, g in report["growth"].items():
        print(f"{name}: {g['after_warmup'] / MiB:.1f} MiB after warm-up, "
              f"rise max {g['max_rise'] / MiB:+.2f} MiB, final {g['final_rise'] / MiB:+.2f} MiB")


def write(report: dict, out_dir: Path) -> None:
    device = report["plan"].split(" on ")[-1].split(",")[0].replace(":", "")
    stem = out_dir / f"worker_memory-{report['model']}-{device}"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    lines = [f"# Worker memory: {report['model']}, {report['jobs']} jobs", "",
             f"Plan: {report['plan']}. Warm-up: {report['warmup']} jobs. Total {report['total_seconds']} s. "
             f"Figures in MiB, recorded by the worker after each job's cleanup.", "",
             "| series | after warm-up | max rise | final rise |", "|---|---|---|---|"]
    lines += [f"| {name} | {g['after_warmup'] / MiB:.1f} | {g['max_rise'] / MiB:+.2f} | "
              f"{g['final_rise'] / MiB:+.2f} |" for name, g in report["growth"].items()]
    lines += ["", "| job | s | " + " | ".join(_short(f) for f in FIELDS) + " |",
              "|---" * (len(FIELDS) + 2) + "|"]
    lines += [f"| {e['job']} | {e['seconds']} | " + " | ".join(f"{e[f] / MiB:.1f}" for f in FIELDS) + " |"
              for e in report["series"]]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem}.json and {stem}.md")


def _fields(stats: MemoryStats | None) -> dict:
    return {f: getattr(stats, f, 0) for f in FIELDS}


def _short(field: str) -> str:
    return field.removesuffix("_bytes").replace("cuda_", "cuda ").replace("_", " ")


def _row(cells: list) -> str:
    return "  ".join(f"{c!s:>18}" for c in cells)


def _tiny_model(scratch: Path) -> str:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tests.tiny_models import build

    return str(build("pocket_tts", scratch / "pocket_tts"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", default="pocket-tts", help="registered name, hub id or folder")
    which.add_argument("--tiny", action="store_true", help="a tiny random Pocket TTS (no download)")
    parser.add_argument("--voice", type=Path, default=REPO / "assets" / "voices" / "sample.wav")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch", type=int, default=WorkerSettings().max_batch, help="micro-batch size")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    return parser


if __name__ == "__main__":
    sys.exit(main())
