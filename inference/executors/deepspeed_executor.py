"""DeepSpeed ZeRO-3 parameter offload of the backbone layers, to host memory or NVMe, in this process.

No launcher: the single-process rendezvous variables are set here and ``init_distributed`` is told not
to look for MPI (``auto_mpi_discovery=False``: with mpi4py installed it would otherwise try to read the
rank from an MPI world that was never started). Only the backbone's layer list is handed to ZeRO-3, converted after
loading with ``zero.Init(module=...)``; everything else stays an ordinary resident module. That keeps
modules read outside ``forward`` (VibeVoice's diffusion head and tokenizers, Pocket TTS's latent
statistics) and weights tied across the model (an lm_head sharing the embedding) out of ZeRO's reach,
and avoids transformers' process-wide ``HfDeepSpeedConfig``. Partial residency comes from the
persistence thresholds: tensors persist greedily in parameter order, so the first layers stay resident.

ZeRO-3 resets its prefetch trace when the wrapped module's ``forward`` starts; a layer list is never
called itself, so the reset is hooked onto its first layer instead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import torch

from inference.adapters.base import LoadedModel
from inference.errors import VesperError
from inference.executors.base import Executor, Placed, place_resident_part
from inference.executors.deepspeed_support import INSTALL_HINT, installed

CONFIG_DIR = Path(__file__).resolve().parents[2] / "ds_configs"


class DeepSpeedExecutor(Executor):
    name = "deepspeed"

    def place(self, loaded: LoadedModel, plan) -> Placed:
        if not installed():
            raise VesperError(f"This plan offloads with DeepSpeed, which is not installed ({INSTALL_HINT}); "
                              "plan again on this machine to get a plan without it.")
        device = torch.device(plan.device)
        if device.type != "cuda":
            raise VesperError("DeepSpeed offload needs a CUDA GPU; plan again on this machine.")
        import deepspeed

        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        torch.cuda.set_device(device)
        _ensure_distributed()
        model = loaded.model
        lookups = place_resident_part(model, plan, device, plan.streamed_layers)
        layers = model.get_submodule(_container(plan.streamed_layers))
        for module in layers.modules():  # ZeRO partitions parameters only; buffers must be on the GPU
            for name, buf in module._buffers.items():
                if buf is not None:
                    module._buffers[name] = buf.to(device)
        config = build_config(plan, layers)
        deepspeed.zero.Init(module=layers, config_dict_or_path=config)
        engine, *_ = deepspeed.initialize(model=layers, config=config)
        coordinator = engine.optimizer.get_param_coordinator
        hook = layers[0].register_forward_pre_hook(lambda module, args: coordinator().reset_step())
        loaded.device = device
        return Placed(loaded, [_Handle(engine, hook, layers), *lookups])


class _Handle:
    """Keeps the engine alive while the model runs, and releases what DeepSpeed keeps process-wide.

    ZeRO-3 remembers the wrapped module in a global stack and its persistent parameters stay gathered;
    without this, every reload (the worker steps down a plan by reloading) would leak the previous
    model's resident share of VRAM.
    """

    def __init__(self, engine, hook, layers: torch.nn.Module):
        self.engine, self.hook, self.layers = engine, hook, layers

    def close(self) -> None:
        if self.engine is None:
            return
        from deepspeed.runtime.zero import parameter_offload

        self.hook.remove()
        self.engine.destroy()
        stack = parameter_offload.FWD_MODULE_STACK
        stack[:] = [m for m in stack if m is not self.layers]
        for param in self.layers.parameters():  # the gathered (persistent) copies on the GPU
            param.data = torch.empty(0, dtype=param.dtype, device="cpu")
        self.engine = self.layers = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: deepspeed may already be gone
            pass


def build_config(plan, layers: torch.nn.Module) -> dict:
    """The JSON config in ds_configs/ with its "auto" values filled from the plan."""
    device = plan.offload.get("device", "cpu")
    config = json.loads((CONFIG_DIR / f"zero3_offload_{device}.json").read_text())
    element = int(plan.offload.get("element_size", 2))
    params = [p for p in layers.parameters()]
    largest_param = max(p.numel() for p in params)
    per_layer = max(sum(1 for _ in layer.parameters()) for layer in layers)
    largest_layer = max(sum(p.numel() for p in layer.parameters()) for layer in layers)
    persist = int(plan.offload.get("persist_bytes", 0)) // element
    config["bf16"]["enabled"] = plan.dtype == "bfloat16"
    config["fp16"]["enabled"] = plan.dtype == "float16"
    zero = config["zero_optimization"]
    zero["stage3_param_persistence_threshold"] = largest_param if persist else 0
    zero["stage3_model_persistence_threshold"] = persist
    zero["stage3_max_live_parameters"] = largest_layer
    zero["stage3_prefetch_bucket_size"] = largest_layer
    offload = zero["offload_param"]
    if device == "cpu":
        offload["pin_memory"] = bool(plan.offload.get("pin_memory", True))
    else:
        offload["nvme_path"] = str(_nvme_dir())
        offload["buffer_size"] = largest_param
        offload["buffer_count"] = per_layer + 2
    return config


def _container(paths: tuple[str, ...]) -> str:
    """The one layer list the offloaded layers belong to, which must be offloaded whole."""
    parents = {p.rsplit(".", 1)[0] for p in paths}
    if len(parents) != 1:
        raise VesperError(f"DeepSpeed offload takes the layers of one layer list, not {sorted(parents)}.")
    return parents.pop()


def _nvme_dir() -> Path:
    from inference.paths import cache_dir

    folder = cache_dir() / "nvme"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _ensure_distributed() -> None:
    """A one-process group, as the launcher would set it up."""
    import deepspeed
    import torch.distributed as dist

    if dist.is_initialized():
        return
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    deepspeed.init_distributed(dist_backend="nccl", auto_mpi_discovery=False, verbose=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


EXECUTOR = DeepSpeedExecutor()
