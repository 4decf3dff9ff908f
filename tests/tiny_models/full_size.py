"""Real-size random checkpoints of every registered model, loadable through the app's own path.

Speed and memory do not depend on weight values, so a registered model's real configuration with
random weights, saved as safetensors beside the offline processor of its tiny checkpoint, lets
``vesper say --model FOLDER`` run the real sizes on a GPU machine that cannot download anything.

Only the tokenizer is small (byte-level with English merges, ``subwords``): the config's special
token ids are taken from it, every size stays the released one. Random weights would stop generation at
arbitrary points, so the end of each chunk is neutralised the way the tiny checkpoints do it
(Pocket's end-of-speech bias; VibeVoice's audio-token bias feature): every chunk runs to its frame
budget, the worst case the planner sizes for. CSM's random codes may still end a chunk early.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import torch

from inference.registry import adapter_for_family, specs

SUBWORD_FAMILIES = ("csm", "vibevoice")  # Pocket's stand-in tokenizer is its own (tests.tiny_models.pocket_tts)
SAVE_DTYPE = torch.bfloat16  # what the released checkpoints store; the planner picks the load dtype
# VibeVoice's audio-token bias feature at the released widths. At the tiny model's 1.0 the 28 random
# layers and the two connectors add as much to that coordinate, and a chunk of the 1.5B ended after
# 0-5 frames; at 64 all of 40 traced frames chose the audio token by a logit margin of 2,350 or more
# (the fast decoder's four allowed logits per frame, fp32 on the CPU). benchmarks/vibevoice_memory.py
# records each chunk's audio against its frame budget on the GPU.
VIBEVOICE_BIAS_FEATURE = 64.0


def build_full(name: str, out_dir: Path, seed: int = 0, device: str | None = None) -> Path:
    """Write registered model ``name`` at its real size with random weights into ``out_dir``."""
    spec = specs()[name]
    family = importlib.import_module(f"tests.tiny_models.{spec.family}")
    out_dir.mkdir(parents=True, exist_ok=True)
    # processor, tokenizer, generation config (and a tiny model, replaced); English subwords where the
    # planner sizes prompts for a released subword tokenizer (tests.tiny_models.subwords)
    family.build(out_dir, seed=seed, **({"subwords": True} if spec.family in SUBWORD_FAMILIES else {}))
    tiny_config = adapter_for_family(spec.family).model_class.config_class.from_pretrained(out_dir)
    config = spec.config()
    for key, value in tiny_config.to_dict().items():  # the stand-in tokenizer's special ids
        if key.endswith("token_id") and not key.startswith("codebook"):
            setattr(config, key, value)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    model_class = adapter_for_family(spec.family).model_class
    with torch.device(device):
        model = model_class._from_config(config, dtype=SAVE_DTYPE).eval()
    _neutralise_end(spec.family, model, config)
    generation = (out_dir / "generation_config.json").read_bytes()  # the released settings (family modules)
    for old in out_dir.glob("model*.safetensors*"):
        old.unlink()
    model.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / "generation_config.json").write_bytes(generation)
    if spec.family == "pocket_tts":
        _save_real_codec(out_dir, device)
    return out_dir


def build_all_full(root: Path, seed: int = 0) -> dict[str, Path]:
    return {name: build_full(name, root / name, seed) for name in specs()}


@torch.no_grad()
def _neutralise_end(family: str, model: torch.nn.Module, config) -> None:
    if family == "pocket_tts":
        model.eos_head.bias.fill_(-100.0)
    elif family == "vibevoice":
        from tests.tiny_models.vibevoice import add_audio_token_bias

        add_audio_token_bias(model, config, VIBEVOICE_BIAS_FEATURE)


def _save_real_codec(out_dir: Path, device: str) -> None:
    from transformers import PocketTTSAudioTokenizerModel

    from inference.adapters.pocket_tts import CODEC, real_codec_config

    shutil.rmtree(out_dir / CODEC, ignore_errors=True)
    with torch.device(device):
        codec = PocketTTSAudioTokenizerModel._from_config(real_codec_config(), dtype=SAVE_DTYPE).eval()
    codec.save_pretrained(out_dir / CODEC, safe_serialization=True)
