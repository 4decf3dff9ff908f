"""Each change of Pocket TTS's CPU tier against what it replaced, part by part, on the real-size model.

``benchmarks/cpu_tier.py`` times whole chunks; this times one part of the work at a time, every alternative of
a part interleaved with the others (``repeats`` rounds, medians), on the model of the variant this CPU's plan
runs. Each part does one chunk's worth of its work (``FRAMES`` frames):

- ``prefill``: the prompt through the model's own forward (as before) or the fast layers (``_prefill``), for
  a voice's first chunk or a later one (the voice's keys kept, only the text prefilled);
- ``decode attention`` (bf16 models): one query of 16 heads against 200 cached keys per backbone layer and
  frame, torch's CPU kernel in bf16 or on fp32 copies of the same tensors (``FastLayer.attend_one``);
- ``flow head``: one evaluation per frame, the head with ``int8_linears`` (as before) or ``FastFlowHead``;
- ``codec transformer``, ``codec SEANet``, ``codec upsampler``: 8-frame pushes, in fp32, int8 (transformer) or
  bf16 (where the CPU computes bf16 natively: elsewhere it is emulated and no plan picks it).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from inference.fastpath.codec import pocket_decoding_copy
from inference.fastpath.layers import int8_linears
from inference.fastpath.stack import prompt_positions

FRAMES = 50
PUSH = 8  # frames per codec push (the session's block)
KEYS = 200  # cached positions a decode step attends to (prompt plus part of the chunk)


def parts(session, inputs: dict, native_bf16: bool) -> dict[str, dict[str, Callable[[], object]]]:
    """{part: {alternative: one chunk's worth of that part's work}}; the first alternative is what it replaced."""
    decoder = session.decoder
    inner, model = decoder.inner, decoder.model
    found = {"prefill": {
        "model forward": lambda: inner(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                       position_ids=prompt_positions(inputs["attention_mask"]),
                                       audio_prompt_latents=inputs.get("audio_prompt_latents"), use_cache=True),
        "fast layers, a voice's first chunk": lambda: _first_chunk(decoder, inputs),
        "fast layers, the voice kept": lambda: decoder._prefill(inputs, FRAMES)}}
    if decoder.dtype != torch.float32:
        found["decode attention"] = _attention(decoder)
    found["flow head"] = _flow_head(decoder, model)
    found.update(_codec(session.loaded.processor.audio_tokenizer, native_bf16))
    return found


def _first_chunk(decoder, inputs: dict) -> None:
    decoder._voice = None  # forget the voice: it is prefilled (alone) and kept again
    decoder._prefill(inputs, FRAMES)


def _attention(decoder) -> dict[str, Callable]:
    layer = decoder.layers[0]
    shape = (1, layer.kv_heads, decoder.capacity, layer.head_dim)
    keys, values = (torch.randn(shape, dtype=decoder.dtype)[:, :, :KEYS] for _ in range(2))
    query = torch.randn(1, layer.kv_heads, layer.q_heads // layer.kv_heads, layer.head_dim, dtype=decoder.dtype)
    mask = torch.ones(1, 1, 1, KEYS, dtype=torch.bool)
    steps = FRAMES * len(decoder.layers)

    def native():
        for _ in range(steps):
            F.scaled_dot_product_attention(query, keys, values, attn_mask=mask)

    def fp32_copies():
        for _ in range(steps):
            F.scaled_dot_product_attention(query.float(), keys.float(), values.float(), attn_mask=mask).to(query.dtype)

    return {f"{str(decoder.dtype).removeprefix('torch.')} kernel": native, "on fp32 copies": fp32_copies}


def _flow_head(decoder, model) -> dict[str, Callable]:
    head, fast = int8_linears(model.flow_head), decoder.flow_head
    condition = torch.randn(1, model.config.hidden_size, dtype=decoder.dtype)
    noise = torch.randn(1, model.config.latent_dim, dtype=decoder.dtype)
    term = decoder.time_terms[0]

    def before():
        for _ in range(FRAMES):
            step = head.cond_proj(condition) + (0 if term is None else term)
            hidden = head.input_proj(noise)
            for layer in head.layers:
                hidden = layer(hidden, step)
            head.final_layer(hidden, step)

    def after():
        for _ in range(FRAMES):
            fast(noise, fast.cond_proj(condition) + (0 if term is None else term))

    return {"int8_linears": before, "FastFlowHead": after}


def _codec(codec, native_bf16: bool) -> dict[str, dict[str, Callable]]:
    """The codec's three stages on 8-frame pushes, fp32 against the copies the CPU tier decodes with."""
    steps = PUSH * codec.decoder.upsample.conv.stride[0]  # transformer steps per push
    hidden = codec.config.hidden_size
    copies = {"fp32": codec, "int8": pocket_decoding_copy(codec, None, int8_transformer=True)}
    if native_bf16:
        copies["bf16"] = pocket_decoding_copy(codec, torch.bfloat16)
        copies["int8, bf16 around it"] = pocket_decoding_copy(codec, torch.bfloat16, int8_transformer=True)
    pushes = FRAMES // PUSH
    frames = torch.randn(1, hidden, steps)
    latents = torch.randn(1, hidden, PUSH + 1)

    def transformer(half):
        steps_in = frames.transpose(1, 2).to(next(half.decoder.decoder_seanet.parameters()).dtype)

        def run():
            cache = None
            for _ in range(pushes):
                cache = half.decoder.decoder_transformer(steps_in, cache=cache, use_cache=True).cache
        return run

    def seanet(module, dtype):
        context = torch.randn(1, hidden, steps + 16, dtype=dtype)
        return lambda: [module(context) for _ in range(pushes)]

    def upsample(module, dtype):
        return lambda: [module(latents.to(dtype)) for _ in range(pushes)]

    found = {"codec transformer": {name: transformer(half) for name, half in copies.items()},
             "codec SEANet": {"fp32": seanet(codec.decoder.decoder_seanet, torch.float32)}}
    if native_bf16:
        found["codec SEANet"]["bf16"] = seanet(copies["bf16"].decoder.decoder_seanet, torch.bfloat16)
        found["codec upsampler"] = {"fp32": upsample(codec.decoder.upsample, torch.float32),
                                    "bf16": upsample(copy.deepcopy(codec.decoder.upsample).bfloat16(),
                                                     torch.bfloat16)}
    return found


def measure(found: dict[str, dict[str, Callable]], repeats: int, threads: int) -> list[dict]:
    """Rows of (part, alternative, median ms per chunk, ratio to the part's first alternative, CPU ms per thread)."""
    rows = []
    with torch.inference_mode():
        for part, alternatives in found.items():
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in alternatives}
            for run in alternatives.values():
                run()  # first calls
            for _ in range(repeats):
                for name, run in alternatives.items():
                    start, cpu = time.perf_counter(), time.process_time()
                    run()
                    times[name].append((time.perf_counter() - start, time.process_time() - cpu))
            first = None
            for name, pairs in times.items():
                wall = statistics.median(w for w, _ in pairs) * 1000
                cpu = statistics.median(c for _, c in pairs) * 1000 / threads
                first = first or wall
                rows.append({"part": part, "alternative": name, "ms_per_chunk": wall, "ratio": wall / first,
                             "cpu_ms_per_thread": cpu})
    return rows


def markdown(rows: list[dict]) -> list[str]:
    lines = [f"Each part alone, one chunk's worth ({FRAMES} frames; codec in {PUSH}-frame pushes), alternatives "
             "interleaved, medians; the first row of a part is what the change replaced:", "",
             "| part | alternative | ms per chunk | vs first | CPU ms per thread |", "|---|---|---|---|---|"]
    lines += [f"| {r['part']} | {r['alternative']} | {r['ms_per_chunk']:.1f} | {r['ratio']:.2f} "
              f"| {r['cpu_ms_per_thread']:.1f} |" for r in rows]
    return lines
