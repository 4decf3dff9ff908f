"""Real-time benchmark: fast decode path vs transformers' generate, real-size models with random weights.

For each model (CSM-1B, VibeVoice-1.5B, Pocket TTS) at its real architecture, resident in bf16 on the
GPU (and again under an 8 GB allocator cap), it times:

- ``generate``: plain transformers ``generate`` (dynamic cache), as the adapters call it;
- ``static``: the same with ``cache_implementation="static"`` (transformers then compiles the step);
- ``fast``: Vesper's fast path (``inference.fastpath``), where one exists;

reporting ms per audio frame (steady state), real-time factor, time to first audio for a one-sentence
chunk, audio seconds per second at batch 1 and 8, peak VRAM and the plan's prediction. The GPU is
warmed up with sustained matmuls first (these GPUs idle at low clocks) and the variants are interleaved;
figures are medians of repeats. Pocket TTS is also timed on the CPU (``--threads``).

Random weights never end a chunk, so every chunk runs to its frame budget. Tokenizers cannot be fetched
offline: the tiny test checkpoints' processors (byte-level tokenizers) stand in, with the real models'
special-token ids pointed at theirs.

    python benchmarks/realtime.py --out benchmarks/results            # GPU, all models
    python benchmarks/realtime.py --device cpu --models pocket_tts --threads 2
    python benchmarks/realtime.py --tiny --device cpu                  # smoke test of this script
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inference import fastpath  # noqa: E402
from inference.adapters.base import LoadedModel  # noqa: E402
from inference.models import describe  # noqa: E402
from inference.registry import adapter_for_family, specs  # noqa: E402

GiB = 1024**3
SENTENCE = "The old lighthouse keeper climbed the stairs each evening to watch the ships come home."
CPU_WEIGHTS = {"fast_bf16_weights": torch.bfloat16, "fast_int8": torch.qint8}
SPEC_NAMES = {"csm": "csm-1b", "vibevoice": "vibevoice-1.5b", "pocket_tts": "pocket-tts"}


# ----------------------------------------------------------------------------------------- models
def build_model(family: str, device: torch.device, dtype: torch.dtype, tiny: bool, scratch: Path):
    """(adapter, LoadedModel): the real architecture with random weights, or the tiny test checkpoint."""
    from tests.tiny_models import build

    adapter = adapter_for_family(family)
    tiny_dir = build(family, scratch / family)
    small = adapter.load(tiny_dir, dtype, device)
    if tiny:
        return adapter, _neutralise_end(family, small)
    config = specs()[SPEC_NAMES[family]].config()
    for key, value in small.model.config.to_dict().items():  # the stand-in tokenizer's special ids
        if key.endswith("token_id") and not key.startswith("codebook"):
            setattr(config, key, value)
    with torch.device(device):
        model = adapter.model_class._from_config(config, dtype=dtype).eval()
    model.generation_config = copy.deepcopy(small.model.generation_config)
    processor = small.processor
    if family == "csm":
        model.depth_decoder.generation_config = copy.deepcopy(small.model.depth_decoder.generation_config)
    if family == "vibevoice":
        model.generation_config.num_diffusion_steps = 10  # the released generation config's
    if family == "pocket_tts":
        from transformers import PocketTTSAudioTokenizerModel

        from inference.adapters.pocket_tts import CODEC, real_codec_config

        with torch.device(device):
            codec = PocketTTSAudioTokenizerModel._from_config(real_codec_config(), dtype=dtype).eval()
        processor.audio_tokenizer = codec
        model.add_module(CODEC, codec)
    del small
    return adapter, _neutralise_end(family, LoadedModel(model, processor, tiny_dir, dtype, device))


@torch.no_grad()
def _neutralise_end(family: str, loaded: LoadedModel) -> LoadedModel:
    """Random weights: keep every chunk running to its budget, so all variants do the same work."""
    if family == "pocket_tts":
        loaded.model.eos_head.bias.fill_(-100.0)
    return loaded


class ForceAudio:
    """A logits processor that always picks VibeVoice's audio token (a random LM rarely would)."""

    def __init__(self, token_id: int):
        self.token_id = token_id

    def __call__(self, input_ids, scores):
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.token_id] = 0.0
        return forced


class Stamps:
    """A generate streamer that only records when each step's tokens arrive."""

    def __init__(self):
        self.times: list[float] = []

    def put(self, value):
        self.times.append(time.perf_counter())

    def end(self):
        pass


# ------------------------------------------------------------------------------------------ timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def spin(device: torch.device, seconds: float) -> None:
    """Sustained matmuls, so the GPU leaves its idle clocks before anything is timed."""
    if device.type != "cuda":
        return
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(10):
            a @ a
        sync(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak(device: torch.device) -> dict:
    if device.type != "cuda":
        return {}
    return {"peak_alloc_gib": torch.cuda.max_memory_allocated(device) / GiB,
            "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / GiB}


def steady_ms(times: list[float], frames: list[int]) -> float | None:
    """ms per frame between the first and the last timestamp (prefill and first block excluded).

    ``ms_per_frame_all`` (total time / frames) is the figure that includes prefill and audio decoding.
    """
    if len(times) < 2 or frames[-1] == frames[0]:
        return None
    return 1000 * (times[-1] - times[0]) / (frames[-1] - frames[0])


def record(adapter, frames: int, rows: int, total: float, ttfa: float, ms_frame: float | None,
           **extra) -> dict:
    audio = frames / adapter.frame_rate
    return {"frames": frames, "batch": rows, "total_s": total, "ttfa_s": ttfa, "ms_per_frame": ms_frame,
            "ms_per_frame_all": 1000 * total / frames, "rtf": total / audio,
            "audio_s_per_s": rows * audio / total, **extra}


# -------------------------------------------------------------------------------------- variants
def csm_inputs(adapter, loaded, prompt, texts):
    ids, mask = adapter._tokenize(loaded, prompt, texts)
    return adapter._inputs_embeds(loaded, ids, mask, prompt.tensors["codes"]), mask


def run_hf(family: str, adapter, loaded, prompt, texts: list[str], frames: int) -> dict:
    """Plain ``generate`` (whatever cache the generation config asks for), then decoding to audio."""
    device, model, stamps = loaded.device, loaded.model, Stamps()
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        if family == "csm":
            embeds, mask = csm_inputs(adapter, loaded, prompt, texts)
            codes = model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=frames,
                                   streamer=stamps)
            top = model.codec_model.config.codebook_size - 1  # random weights may sample the 3 extra codes
            [model.codec_model.decode(row.clamp(max=top).T[None]).audio_values for row in codes]
        elif family == "vibevoice":
            from transformers import LogitsProcessorList

            inputs = adapter.prompt_inputs(loaded, prompt, texts)
            model.generate(**inputs, max_new_tokens=frames, streamer=stamps,
                           logits_processor=LogitsProcessorList([ForceAudio(model.config.audio_token_id)]))
        else:
            adapter.generate(loaded, prompt, texts, max_frames=frames)
    sync(device)
    total = time.perf_counter() - start
    times = stamps.times[1:]  # the first put is the prompt
    ms = steady_ms(times, list(range(len(times))))
    return record(adapter, frames, len(texts), total, total, ms)


def run_fast(session, adapter, prompt, texts: list[str], frames: int) -> dict:
    """The fast session, streaming: time to the first piece, steady ms per frame between blocks."""
    device = session.loaded.device
    sync(device)
    start = time.perf_counter()
    times, produced, got = [], [], 0
    for piece in session.stream(prompt, texts, seeds=list(range(len(texts))), max_frames=frames):
        if piece.row == 0:
            got += len(piece.audio)
            times.append(time.perf_counter())
            produced.append(got // round(adapter.sample_rate / adapter.frame_rate))
    sync(device)
    total = time.perf_counter() - start
    return record(adapter, frames, len(texts), total, times[0] - start, steady_ms(times[1:], produced[1:]))


def set_static(model, on: bool) -> None:
    value = "static" if on else None
    model.generation_config.cache_implementation = value
    if hasattr(model, "depth_decoder"):
        model.depth_decoder.generation_config.cache_implementation = value


def timed(fn: Callable[[], dict], device: torch.device) -> dict:
    reset_peak(device)
    try:
        out = fn()
    except torch.OutOfMemoryError as exc:
        out = {"error": f"out of memory: {str(exc).splitlines()[0][:160]}"}
    except Exception as exc:  # a variant that cannot run is reported, not fatal
        traceback.print_exc()
        out = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {**out, **peak(device)}


def median_of(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[-1]
    out = dict(ok[0])
    for key, value in ok[0].items():
        if isinstance(value, float):
            values = [r[key] for r in ok if r.get(key) is not None]
            out[key] = statistics.median(values) if values else None
    out["repeats"] = len(ok)
    return out


# ---------------------------------------------------------------------------------------- per model
def bench_family(family: str, args, device: torch.device, dtype: torch.dtype, scratch: Path) -> list[dict]:
    adapter, loaded = build_model(family, device, dtype, args.tiny, scratch)
    audio, rate = sf.read(REPO / "assets" / "voices" / "sample.wav", dtype="float32")
    samples = int(args.reference_s * rate)
    reference = np.tile(audio, -(-samples // len(audio)))[:samples]
    transcript = (REPO / "assets" / "voices" / "sample.txt").read_text().strip()
    with torch.inference_mode():
        prompt = adapter.build_voice_prompt(loaded, reference, rate, transcript)
    sentence_frames = int((len(SENTENCE) / 15 + 2) * adapter.frame_rate)  # a narrator's pace, 2 s of slack
    slow_frames = args.frames or sentence_frames
    plan_peaks = plan_predictions(family)
    results: list[dict] = []

    def row(variant: str, batch: int, cap: float | None, data: dict, **extra) -> None:
        entry = {"model": SPEC_NAMES[family], "variant": variant, "device": str(device), "batch": batch,
                 "cap_gib": cap, "predicted_peak_gib": plan_peaks.get(batch), **extra, **data}
        results.append(entry)
        print(json.dumps(entry), flush=True)

    chosen = set(args.variants.split(","))
    sessions, cpu_sessions = {}, {}  # cpu_sessions: (variant, batch) -> the CPU tier's weight options
    if "fast" in chosen and fastpath.support(adapter, loaded).available:
        capacity = fastpath.capacity_for(describe(SPEC_NAMES[family]), 300)
        for batch in (1, args.batch):
            start = time.perf_counter()
            sessions[batch] = fastpath.open_session(adapter, loaded, batch, capacity)
            sessions[batch].warm_up_s = time.perf_counter() - start
            if family == "pocket_tts" and device.type == "cpu":  # the CPU tier's weight options
                for name, weights in CPU_WEIGHTS.items():
                    cpu_sessions[name, batch] = fastpath.open_session(adapter, loaded, batch, capacity,
                                                                      weight_dtype=weights)
    if family == "vibevoice":  # random weights rarely choose the audio token: force it, as ForceAudio does
        for session in sessions.values():
            session.decoder.allowed.fill_(loaded.model.config.audio_token_id)
    one, many = [SENTENCE], [SENTENCE] * args.batch

    variants = {}
    if "generate" in chosen:
        variants["generate"] = lambda texts, n: run_hf(family, adapter, loaded, prompt, texts, n)
    if "static" in chosen:
        def static(texts, n):
            set_static(loaded.model, True)
            try:
                return run_hf(family, adapter, loaded, prompt, texts, n)
            finally:
                set_static(loaded.model, False)
        variants["static"] = static
    if sessions and "fast" in chosen:
        variants["fast"] = lambda texts, n: run_fast(sessions[len(texts)], adapter, prompt, texts, n)
    for name in sorted({name for name, _ in cpu_sessions}):
        variants[name] = lambda texts, n, name=name: run_fast(cpu_sessions[name, len(texts)], adapter, prompt,
                                                              texts, n)

    spin(device, args.spin)
    warm = {}
    for name, fn in variants.items():  # first calls: compilation / capture, reported as warm-up
        start = time.perf_counter()
        timed(lambda fn=fn: fn(one, 4), device)
        opened = getattr(sessions.get(1), "warm_up_s", 0.0) if name.startswith("fast") else 0.0
        warm[name] = time.perf_counter() - start + opened
    runs: dict[tuple, list[dict]] = {}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            runs.setdefault((name, 1, slow_frames), []).append(
                timed(lambda fn=fn: fn(one, slow_frames), device))
            if name.startswith("fast") and slow_frames != sentence_frames:
                runs.setdefault((name, 1, sentence_frames), []).append(
                    timed(lambda fn=fn: fn(one, sentence_frames), device))
    for name, fn in variants.items():
        if name == "static" and not args.static_batch:
            continue
        for _ in range(max(1, args.repeats - 1)):
            runs.setdefault((name, args.batch, slow_frames), []).append(
                timed(lambda fn=fn: fn(many, slow_frames), device))
    for (name, batch, _), rs in runs.items():
        row(name, batch, None, median_of(rs), first_call_s=warm[name] if batch == 1 else None)

    if device.type == "cuda" and args.cap_gib:
        torch.cuda.empty_cache()
        context = nvml_used(device) - torch.cuda.memory_reserved(device) / GiB
        total = torch.cuda.get_device_properties(device).total_memory / GiB
        fraction = (args.cap_gib - max(context, 0.0)) / total
        torch.cuda.set_per_process_memory_fraction(fraction, device)
        for name, fn in variants.items():
            for batch, texts in ((1, one), (args.batch, many)):
                if name == "static" and batch > 1 and not args.static_batch:
                    continue
                row(name, batch, args.cap_gib, timed(lambda fn=fn, t=texts: fn(t, slow_frames), device),
                    cuda_context_gib=context)
        torch.cuda.set_per_process_memory_fraction(1.0, device)
    return results


def plan_predictions(family: str) -> dict[int, float]:
    """The planner's predicted peak (GiB) for a laptop RTX 4060 8 GB, batch 1 and 8, 300-char chunks."""
    from inference.hardware import PRESETS
    from inference.planner import Workload, make_plan

    ref = describe(SPEC_NAMES[family])
    out = {}
    for batch in (1, 8):
        plan = make_plan(ref, PRESETS["laptop-4060-8g"], Workload(300, batch))
        out[batch] = plan.predicted_peak_bytes / GiB if plan.device != "cpu" else None
    return out


def nvml_used(device: torch.device) -> float:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used / GiB
    except Exception:
        return 0.0


def machine(device: torch.device, threads: int) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor(),
            "threads": threads}
    import transformers

    info["transformers"] = transformers.__version__
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        try:
            import pynvml

            pynvml.nvmlInit()
            h = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
            info["pcie"] = (f"Gen{pynvml.nvmlDeviceGetCurrPcieLinkGeneration(h)} "
                            f"x{pynvml.nvmlDeviceGetCurrPcieLinkWidth(h)} (max Gen"
                            f"{pynvml.nvmlDeviceGetMaxPcieLinkGeneration(h)} "
                            f"x{pynvml.nvmlDeviceGetMaxPcieLinkWidth(h)})")
            info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception as exc:
            info["pcie"] = f"unknown ({exc})"
    return info


# ------------------------------------------------------------------------------------------ output
COLUMNS = ["model", "variant", "device", "batch", "cap_gib", "frames", "ms_per_frame", "ms_per_frame_all",
           "rtf",
           "ttfa_s",
           "audio_s_per_s", "peak_alloc_gib", "predicted_peak_gib", "first_call_s", "error"]


def markdown(results: list[dict], info: dict) -> str:
    lines = [f"# Real-time benchmark ({info.get('gpu', 'CPU')}, {info.get('pcie', '')})", "",
             "```", json.dumps(info, indent=1), "```", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        cells = []
        for c in COLUMNS:
            v = r.get(c)
            cells.append(f"{v:.3g}" if isinstance(v, float) else ("" if v is None else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="csm,vibevoice,pocket_tts")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=24, help="frames per timed chunk (0: the sentence's budget)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--reference-s", type=float, default=10.0)
    p.add_argument("--spin", type=float, default=5.0, help="seconds of GPU warm-up matmuls")
    p.add_argument("--cap-gib", type=float, default=8.0, help="allocator cap for the second pass (0: none)")
    p.add_argument("--variants", default="generate,static,fast",
                   help="which of generate, static, fast to time (static: transformers' compiled static cache)")
    p.add_argument("--static-batch", action="store_true", help="also compile the static path at batch 8")
    p.add_argument("--tiny", action="store_true", help="tiny checkpoints: a smoke test of this script")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    info = machine(device, torch.get_num_threads())
    print(json.dumps(info), flush=True)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for family in args.models.split(","):
            try:
                results += bench_family(family, args, device, dtype, Path(scratch))
            except Exception as exc:
                traceback.print_exc()
                error = f"{type(exc).__name__}: {exc}"
                results.append({"model": SPEC_NAMES.get(family, family), "error": error})
            if device.type == "cuda":
                torch.cuda.empty_cache()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"realtime-{device.type}{('-' + args.tag) if args.tag else ''}"
    (args.out / f"{stem}.json").write_text(json.dumps({"machine": info, "results": results}, indent=1))
    (args.out / f"{stem}.md").write_text(markdown(results, info))
    print(markdown(results, info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
