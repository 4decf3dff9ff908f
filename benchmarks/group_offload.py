"""diffusers' group offloading applied to part of a model: decode-step time against the PCIe bound, and output.

Why Vesper streams layers itself (``inference/executors/streamed_executor.py``) rather than use
``apply_group_offloading(..., use_stream=True, record_stream=True)``: applied to the layers a plan offloads
(a module holding them, which the model never calls) instead of a whole model, it neither reaches the bound
nor keeps the output. This script measures both on VibeVoice-1.5B's language model (Qwen2, 28 x 1536, real
size, random weights, bf16): the resident model's hidden states over a prefill and ``--steps`` single-token
steps, then the same with the last ``--offloaded`` layers group-offloaded from pinned host memory; it reports
the median step time, the PCIe bound (offloaded bytes over the measured pinned bandwidth) and the largest
difference from the resident hidden states. Needs a CUDA GPU. Writes
``benchmarks/results/group-offload-<gpu>.json``.

    python3 benchmarks/group_offload.py --offloaded 14 --steps 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import offload  # noqa: E402  (benchmarks/offload.py: environment, pinned bandwidth, warm-up)

from inference.adapters.vibevoice import vibevoice_1_5b_config  # noqa: E402


def decode(model: nn.Module, ids: torch.Tensor, steps: int) -> tuple[torch.Tensor, list[float]]:
    """Prefill ``ids``, then ``steps`` single-token steps; the last hidden state of each, and step times."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids, cache=cache, use_cache=True)
    states, times = [out.last_hidden_state[:, -1]], []
    token = ids[:, -1:]
    for _ in range(steps):
        torch.cuda.synchronize()
        started = time.perf_counter()
        out = model(input_ids=token, cache=cache, use_cache=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
        states.append(out.last_hidden_state[:, -1])
    return torch.stack(states).float(), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offloaded", type=int, default=14, help="last layers group-offloaded to the host")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--prompt", type=int, default=64)
    args = parser.parse_args()
    from diffusers.hooks import apply_group_offloading
    from transformers import AutoModel

    env = offload.environment()
    offload.warm_up()
    torch.manual_seed(0)
    model = AutoModel.from_config(vibevoice_1_5b_config().text_config, dtype=torch.bfloat16).eval().cuda()
    ids = torch.randint(0, model.config.vocab_size, (1, args.prompt), device="cuda")
    with torch.inference_mode():
        resident, resident_times = decode(model, ids, args.steps)
        layers = list(model.layers[-args.offloaded:])
        holder = nn.Module()  # the offloaded part: a module that owns the layers but is never called
        holder.layers = nn.ModuleList(layers)
        holder.to("cpu")
        apply_group_offloading(holder, onload_device=torch.device("cuda"), offload_type="block_level",
                               num_blocks_per_group=1, use_stream=True, record_stream=True)
        decode(model, ids, 2)  # first calls: diffusers records what it can
        offloaded, times = decode(model, ids, args.steps)
    nbytes = sum(p.numel() * p.element_size() for layer in layers for p in layer.parameters())
    bound = nbytes / (env["pinned_h2d_gbps"] * 1e9)
    step = statistics.median(times)
    result = {"machine": env, "offloaded_layers": args.offloaded, "offloaded_bytes": nbytes,
              "resident_ms_per_step": round(statistics.median(resident_times) * 1e3, 2),
              "offloaded_ms_per_step": round(step * 1e3, 2), "pcie_bound_ms": round(bound * 1e3, 2),
              "x_bound": round(step / bound, 2),
              "max_abs_difference": float((offloaded - resident).abs().max()),
              "resident_max_abs": float(resident.abs().max())}
    print(json.dumps(result, indent=1))
    name = env["gpu"].lower().replace(" ", "-")
    (HERE / "results" / f"group-offload-{name}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
