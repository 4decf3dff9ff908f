"""The memory guarantee measured through the app's own path: models x VRAM limits x text lengths.

Each cell is what ``vesper say TEXT --model FOLDER --vram-limit CAP`` does: a fresh ``WorkerClient`` (so a
fresh worker process, as every CLI run starts), the job planned for the smaller of free VRAM and the limit,
the worker's allocator capped to it, out-of-memory step-downs as the app takes them. The client's typed
events give the plan chosen and every plan change with its cause; a thread samples NVML every 20 ms for
the GPU's used memory, less what was used before the worker started (the GPU is otherwise idle), which
is the whole worker process: CUDA context, allocator and cuBLAS workspaces.

Every cell gets a fresh Vesper cache folder (``VESPER_CACHE_DIR``): the worker remembers plans that ran out
of memory, so without it a cell would start on what an earlier cell learnt and "first time right" would
measure that memory, not the prediction. Results are written after every cell; ``--budget-s`` starts no
new cell after that many seconds (the rest are listed as not run).

Models are folders: ``python -m tests.tiny_models --full-size DIR`` writes each registered model at its
real size with random weights. Goal: every cell finishes with peak <= limit, at least 90% of cells on
their first plan (no step-down). Writes ``benchmarks/results/memory-matrix-<tag>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import pynvml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inference.worker.client import WorkerClient  # noqa: E402
from inference.worker.protocol import (  # noqa: E402
    GenerationProgress,
    JobStarted,
    PlanChanged,
    SpeakJob,
    WorkerRestarted,
    WorkerSettings,
)

GiB = 1024**3
SENTENCE = "The old lighthouse keeper climbed the stairs each evening to watch the ships come home."
PARAGRAPH = ("The harbour was quiet when the storm finally passed. Fishermen walked along the pier, counting the "
             "boats that had come back and the ones that had not. Nobody spoke much; the gulls did the talking. "
             "By noon the sun had found the town again, and the bakery opened its doors as if nothing had "
             "happened at all.")
TEXTS = {
    "sentence": SENTENCE,
    "3-paragraphs": "\n\n".join([PARAGRAPH] * 3),
    "2000-words": " ".join([PARAGRAPH] * (2000 // len(PARAGRAPH.split()) + 1)),
}


class NvmlPeak:
    """The most memory the GPU held above its starting level, sampled on a thread."""

    def __init__(self, index: int = 0, period_s: float = 0.02):
        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.base = self._used()
        self.peak = 0
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _used(self) -> int:
        return int(pynvml.nvmlDeviceGetMemoryInfo(self.handle).used)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._used() - self.base)
            time.sleep(self.period_s)

    def __enter__(self) -> NvmlPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_cell(model: Path, cap_gib: float, text_name: str, voice: Path, batch: int) -> dict:
    limit = int(cap_gib * GiB)
    changes: list[dict] = []
    restarts: list[str] = []
    started: list[str] = []
    produced = [0.0]

    def watch(event) -> None:
        if isinstance(event, JobStarted) and not started:
            started.append(event.plan)
        elif isinstance(event, PlanChanged):
            changes.append({"from": event.from_plan, "to": event.to_plan, "cause": event.cause.value,
                            "at_chunk": event.at_chunk})
        elif isinstance(event, WorkerRestarted):
            restarts.append(event.cause.value)
        elif isinstance(event, GenerationProgress):
            produced[0] = event.audio_seconds

    cell = {"model": model.name, "cap_gib": cap_gib, "text": text_name, "chars": len(TEXTS[text_name])}
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vesper-cell-") as cache, NvmlPeak() as nvml:
        os.environ["VESPER_CACHE_DIR"] = cache  # the worker process inherits it: no plan history
        try:
            with WorkerClient(WorkerSettings(max_batch=batch, vram_limit_bytes=limit)) as client:
                result = client.speak(SpeakJob(TEXTS[text_name], voice, None, str(model), 0), watch)
            cell.update(finished=True, final_plan=result.plan, audio_s=round(len(result.audio()) /
                                                                             result.sample_rate, 1))
        except Exception as exc:  # noqa: BLE001 - a failed cell is a result, recorded with its message
            cell.update(finished=False, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                        audio_s=round(produced[0], 1))
    wall = time.perf_counter() - begin
    cell.update(first_plan=started[0] if started else None, plan_changes=changes, restarts=restarts,
                peak_nvml_gib=round(nvml.peak / GiB, 3), within_limit=nvml.peak <= limit,
                first_time_right=not changes and not restarts, wall_s=round(wall, 1),
                audio_s_per_s=round(cell["audio_s"] / wall, 2) if wall else None)
    print(json.dumps(cell), flush=True)
    return cell


def environment() -> dict:
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    name = pynvml.nvmlDeviceGetName(handle)
    return {"gpu": name if isinstance(name, str) else name.decode(),
            "total_gib": round(pynvml.nvmlDeviceGetMemoryInfo(handle).total / GiB, 1),
            "pcie_max": f"Gen{pynvml.nvmlDeviceGetMaxPcieLinkGeneration(handle)} "
                        f"x{pynvml.nvmlDeviceGetMaxPcieLinkWidth(handle)}",
            "driver": pynvml.nvmlSystemGetDriverVersion()}


def markdown(cells: list[dict], env: dict, command: str) -> str:
    done = [c for c in cells if c["finished"] and c["within_limit"]]
    first = [c for c in cells if c["first_time_right"]]
    lines = [f"# Memory matrix through the app ({env['gpu']}, PCIe {env['pcie_max']}, driver {env['driver']})", "",
             f"`{command}`", "",
             f"{len(done)} of {len(cells)} cells finished with peak <= limit; {len(first)} of {len(cells)} on their "
             "first plan (no step-down, no restart).", "",
             "| model | limit GiB | text | finished | first plan | final plan | changes | peak NVML GiB | <= limit | "
             "audio s | audio s/s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        change = "; ".join([f"{x['cause']} at chunk {x['at_chunk'] + 1}: {x['to']}" for x in c["plan_changes"]] +
                           [f"restart ({r})" for r in c["restarts"]])
        lines.append(f"| {c['model']} | {c['cap_gib']:g} | {c['text']} | {'yes' if c['finished'] else c['error']} | "
                     f"{c['first_plan']} | {c.get('final_plan', '')} | {change or '-'} | {c['peak_nvml_gib']} | "
                     f"{'yes' if c['within_limit'] else 'NO'} | {c['audio_s']} | {c['audio_s_per_s']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", type=Path, required=True, help="checkpoint folders")
    parser.add_argument("--caps", nargs="+", type=float, default=[4, 6, 8], help="VRAM limits in GiB")
    parser.add_argument("--texts", nargs="+", choices=list(TEXTS), default=list(TEXTS))
    parser.add_argument("--voice", type=Path, default=REPO / "assets" / "voices" / "sample.wav")
    parser.add_argument("--batch", type=int, default=4, help="the worker's micro-batch (its default)")
    parser.add_argument("--tag", default="local")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--budget-s", type=float, default=0, help="start no cell after this many seconds (0: all)")
    args = parser.parse_args(argv)
    env = environment()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"memory-matrix-{args.tag}"
    command = "python3 benchmarks/memory_matrix.py " + " ".join(sys.argv[1:] if argv is None else argv)
    grid = [(model, cap, text) for model in args.models for cap in args.caps for text in args.texts]
    cells: list[dict] = []
    started = time.perf_counter()
    for model, cap, text in grid:
        if args.budget_s and time.perf_counter() - started > args.budget_s:
            print(f"not run (budget): {model.name} {cap} GiB {text}", flush=True)
            continue
        cells.append(run_cell(model, cap, text, args.voice, args.batch))
        stem.with_suffix(".json").write_text(json.dumps({"environment": env, "command": command, "cells": cells,
                                                        "not_run": len(grid) - len(cells)}, indent=1))
        stem.with_suffix(".md").write_text(markdown(cells, env, command))
    return 0 if len(cells) == len(grid) and all(c["finished"] and c["within_limit"] for c in cells) else 1


if __name__ == "__main__":
    raise SystemExit(main())
