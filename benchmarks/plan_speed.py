"""How long ``vesper plan`` takes for a registered model, against importing torch alone.

Each run is a fresh interpreter, as a user's command is: ``python launch.py plan --model M --hardware P``
(no torch: the planner runs on the stored sizes) and ``python -c "import torch"``, interleaved, the
median of ``--runs`` each. The machine's load average is recorded with the result: other programs on a
shared machine slow both columns alike.

    python benchmarks/plan_speed.py --model vibevoice-1.5b --hardware laptop-4050-6g --runs 7
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vibevoice-1.5b")
    parser.add_argument("--hardware", default="laptop-4050-6g")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--name", default="local-2cores", help="suffix of the result files")
    args = parser.parse_args(argv)
    plan = [sys.executable, "launch.py", "plan", "--model", args.model, "--hardware", args.hardware]
    torch_import = [sys.executable, "-c", "import torch"]
    timed(plan), timed(torch_import)  # warm the page cache: a user's second command finds it warm too
    load_before = os.getloadavg()
    plans, imports = [], []
    for _ in range(args.runs):
        plans.append(timed(plan))
        imports.append(timed(torch_import))
    result = {
        "command": " ".join(["python", *plan[1:]]), "runs": args.runs,
        "plan_median_s": round(statistics.median(plans), 3), "plan_s": [round(t, 3) for t in plans],
        "import_torch_median_s": round(statistics.median(imports), 3), "import_torch_s": [round(t, 3) for t in imports],
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"plan_speed-{args.name}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(
        "# `vesper plan` speed\n\n"
        f"`python benchmarks/plan_speed.py --model {args.model} --hardware {args.hardware} --runs {args.runs}`: "
        "each run a fresh interpreter, interleaved, medians.\n\n"
        "| command | median s | runs (s) |\n|---|---|---|\n"
        f"| `{result['command']}` | {result['plan_median_s']} | {', '.join(map(str, result['plan_s']))} |\n"
        f"| `python -c \"import torch\"` | {result['import_torch_median_s']} | "
        f"{', '.join(map(str, result['import_torch_s']))} |\n\n"
        f"{result['cpu_count']} CPUs, shared with other work: load average {result['load_average_before']} before, "
        f"{result['load_average_after']} after (1, 5, 15 min).\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
