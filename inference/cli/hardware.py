"""``vesper hardware``: the GPUs, memory and OS Vesper detects."""

from __future__ import annotations

import argparse
import json

from inference.units import gib


def add_parser(commands: argparse._SubParsersAction) -> None:
    hardware = commands.add_parser("hardware", help="show the GPUs, memory and OS Vesper detects")
    hardware.add_argument("--json", action="store_true", help="print JSON")
    hardware.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from inference import hardware as hw

    machine = hw.detect()
    if args.json:
        print(json.dumps(machine.to_dict(), indent=2))
        return 0
    bf16 = "computes bf16 natively (AVX512-BF16/AMX)" if machine.cpu_bf16 else "no native bf16"
    print(f"OS         {machine.os}, {machine.cpu_count} CPU threads, {bf16}")
    print(f"RAM        {gib(machine.ram_available_bytes)} available of {gib(machine.ram_total_bytes)}")
    if not machine.gpus:
        print("GPU        none found (NVIDIA driver/NVML not available): Vesper runs on the CPU")
    for gpu in machine.gpus:
        major, minor = gpu.compute_capability
        print(f"GPU {gpu.index}      {gpu.name}, {gib(gpu.free_bytes)} free of {gib(gpu.total_bytes)}, "
              f"compute {major}.{minor}, PCIe {gpu.pcie_generation}.0 x{gpu.pcie_width} "
              f"(~{gpu.pinned_bandwidth_gbps:.0f} GB/s pinned), ~{gpu.bandwidth_gbps:.0f} GB/s memory, "
              f"driver {gpu.driver}")
    return 0
