"""An int8 KV cache for GroupQueryAttention decoders (onnxruntime >= 1.27 on CPU).

The decoder graph keeps its weights; what changes is how each attention layer stores its cache. Every
GroupQueryAttention node gets `k_quant_type`/`v_quant_type` (PER_CHANNEL or PER_TENSOR), `kv_cache_bit_width` 8 and
two fp32 scale initializers (inputs 12 and 13, `kv_scale.{i}.key` / `.value`, shaped (kv_heads, 1, head_dim) per
channel or (1,) per tensor); the graph's `past_key_values.*` inputs and `present.*` outputs become int8. onnxruntime
quantizes new keys and values symmetrically as it appends them (q = clamp(round(x / scale), -128, 127)) and
dequantizes while it attends, so a decode step reads a quarter of the bytes an fp32 cache costs.

The scales come from a calibration pass: the fp32 graph runs over sample prompts and the cache it writes (its
`present.*` outputs, keys after rotary embedding, exactly what the cache stores) is measured per channel:
- values: the largest |v| seen in each (head, channel);
- keys, when the node applies rotary embedding itself: the largest norm of each rotated pair of channels
  (i, i + rotary_dim/2, or 2i, 2i+1 when interleaved). A rotation by any angle keeps each channel of the pair
  within that norm, so a key is never clipped for sitting at a position the calibration did not reach.
Each bound is widened by `margin` (default 2: calibration prompts never cover every value a user's prompt
makes, and a clipped value costs more than a coarser step; docs/engine.md has the measured sweep), then divided
by 127.

    python -m loupe_dc.kv_quant --pack IN --out OUT        # a Loupe pack (calibrates on text and images)
    python -m loupe_dc.kv_quant --decoder IN.onnx --out OUT.onnx --synthetic   # a bare graph (test fixtures)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .packfiles import file_table, link_or_copy, publish, staging

GQA = "GroupQueryAttention"
K_SCALE_INPUT, V_SCALE_INPUT = 12, 13
DEFAULT_MARGIN = 2.0

# What a calibration prompt says: varied text (instructions, numbers, code, lists, several languages), so the
# keys and values of the tokens a user's questions and the model's answers are made of are all seen.
CALIBRATION_TEXTS = [
    "Describe what happens in this video, step by step, and say when each thing happens.",
    "What color is the car on the left, and how many people are standing next to it?",
    "Summarize the clip in two sentences. Mention the place, the people and what they do.",
    "Is there a dog in the scene? Answer yes or no, then explain what you see instead.",
    "The meeting starts at 09:30 on 2024-05-17; agenda: 1) budget (USD 12,450.75), 2) hiring, 3) Q&A.",
    "def area(r):\n    return 3.14159 * r ** 2\n\nfor i in range(10):\n    print(i, area(i))",
    "Voici une courte description : une femme marche dans la rue sous la pluie avec un parapluie rouge.",
    "Ein Mann fährt mit dem Fahrrad über eine Brücke, während die Sonne untergeht.",
    "画面の中で、子供たちが公園でサッカーをしています。",
    "List every object you can see: a table, two chairs, a lamp, a window, a plant; anything else?",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who told stories every night.",
    "ERROR 404: the requested resource /api/v1/items?id=42&sort=desc was not found. Retry in 30 s.",
]


# ---------------------------------------------------------------------------------------------- the graph


def attention_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    nodes = [n for n in model.graph.node if n.op_type == GQA]
    if not nodes:
        raise ValueError("the decoder has no GroupQueryAttention node: an int8 KV cache needs one (a model-builder "
                         "decoder, `convert --decoder-from`)")
    for n in nodes:
        if len(n.input) < 5 or not n.input[3] or not n.input[4]:
            raise ValueError(f"attention node {n.name or '?'} takes no past key/value")
        attrs = {a.name: a for a in n.attribute}
        if "k_quant_type" in attrs and helper.get_attribute_value(attrs["k_quant_type"]) not in (b"NONE", "NONE"):
            raise ValueError("the decoder's KV cache is quantized already")
    return nodes


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _initializer_shape(model: onnx.ModelProto, name: str) -> list[int] | None:
    for t in model.graph.initializer:
        if t.name == name:
            return list(t.dims)
    return None


def rotary_pairs(model: onnx.ModelProto, node: onnx.NodeProto, head_dim: int) -> np.ndarray | None:
    """For a node that rotates keys itself: each channel's partner (the channel it is rotated with), else None."""
    if not _attr(node, "do_rotary", 0):
        return None
    rotary_dim = head_dim
    if len(node.input) > 7 and node.input[7]:
        shape = _initializer_shape(model, node.input[7])
        if shape and len(shape) == 2:
            rotary_dim = min(head_dim, 2 * shape[1])
    partner = np.arange(head_dim)
    half = rotary_dim // 2
    if _attr(node, "rotary_interleaved", 0):
        for i in range(0, rotary_dim, 2):
            partner[i], partner[i + 1] = i + 1, i
    else:
        for i in range(half):
            partner[i], partner[i + half] = i + half, i
    return partner


class Stats:
    """Running per-(layer, head, channel) bounds of what the cache holds."""

    def __init__(self, layers: int, heads: int, head_dim: int, partners: list[np.ndarray | None]):
        self.k = np.zeros((layers, heads, head_dim), np.float64)
        self.v = np.zeros((layers, heads, head_dim), np.float64)
        self.partners = partners
        self.tokens = 0

    def add(self, layer: int, key: np.ndarray, value: np.ndarray) -> None:
        """key, value: (1, heads, tokens, head_dim) fp32, what the cache would hold."""
        k = np.abs(key[0].astype(np.float64))
        partner = self.partners[layer]
        if partner is not None:  # a pair's norm bounds both of its channels at every rotation angle
            k = np.sqrt(k ** 2 + k[..., partner] ** 2)
        self.k[layer] = np.maximum(self.k[layer], k.max(axis=1))
        self.v[layer] = np.maximum(self.v[layer], np.abs(value[0]).max(axis=1))

    def scales(self, granularity: str, margin: float) -> tuple[np.ndarray, np.ndarray]:
        """(layers, heads, 1, head_dim) per channel, or (layers, 1) per tensor; never zero."""
        def scale(bound: np.ndarray) -> np.ndarray:
            if granularity == "tensor":
                bound = bound.reshape(bound.shape[0], -1).max(axis=1, keepdims=True)
            else:
                bound = bound[:, :, None, :]
            return np.maximum(bound * margin / 127.0, 1e-8).astype(np.float32)
        return scale(self.k), scale(self.v)


def calibrate(decoder: Path, prompts: Iterable[np.ndarray], shape: dict) -> Stats:
    """Runs the fp32 graph over each prompt (1, tokens, hidden) from an empty cache and measures its presents."""
    import onnxruntime as ort

    model = onnx.load(str(decoder), load_external_data=False)
    nodes = attention_nodes(model)
    L, H, D = shape["numLayers"], shape["numKeyValueHeads"], shape["headDim"]
    if len(nodes) != L:
        raise ValueError(f"the decoder has {len(nodes)} attention nodes, the manifest says {L} layers")
    stats = Stats(L, H, D, [rotary_pairs(model, n, D) for n in nodes])
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1  # a 7B calibration is 6,000 tokens of prefill: ~9 min on 2 cores
    session = ort.InferenceSession(str(decoder), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    present = [f"present.{i}.{kv}" for i in range(L) for kv in ("key", "value")]
    for embeds in prompts:
        n = embeds.shape[1]
        feeds: dict[str, np.ndarray] = {
            "inputs_embeds": embeds.astype(np.float32),
            "attention_mask": np.ones((1, n), np.int64),
        }
        if "position_ids" in names:
            feeds["position_ids"] = np.arange(n, dtype=np.int64)[None]
        for i in range(L):
            for kv in ("key", "value"):
                feeds[f"past_key_values.{i}.{kv}"] = np.zeros((1, H, 0, D), np.float32)
        out = session.run(present, feeds)
        for i in range(L):
            stats.add(i, out[2 * i], out[2 * i + 1])
        stats.tokens += n
    return stats


def quantize_graph(model: onnx.ModelProto, k_scales: np.ndarray, v_scales: np.ndarray, granularity: str) -> None:
    """Rewrites the graph in place: int8 cache inputs/outputs, the scales as initializers, the GQA attributes."""
    nodes = attention_nodes(model)
    quant = "PER_TENSOR" if granularity == "tensor" else "PER_CHANNEL"
    cache_names: set[str] = set()
    for i, node in enumerate(nodes):
        cache_names.update([node.input[3], node.input[4], node.output[1], node.output[2]])
        names = (f"kv_scale.{i}.key", f"kv_scale.{i}.value")
        for name, scale in zip(names, (k_scales[i], v_scales[i])):
            model.graph.initializer.append(numpy_helper.from_array(scale, name))
        inputs = list(node.input) + [""] * max(0, V_SCALE_INPUT + 1 - len(node.input))
        inputs[K_SCALE_INPUT], inputs[V_SCALE_INPUT] = names
        del node.input[:]
        node.input.extend(inputs)
        kept = [a for a in node.attribute if a.name not in ("k_quant_type", "v_quant_type", "kv_cache_bit_width")]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.extend([helper.make_attribute("k_quant_type", quant),
                               helper.make_attribute("v_quant_type", quant),
                               helper.make_attribute("kv_cache_bit_width", 8)])
    for value in list(model.graph.input) + list(model.graph.output):
        if value.name in cache_names:
            value.type.tensor_type.elem_type = TensorProto.INT8
    # a stale shape/type annotation of a cache tensor would contradict the new element type
    kept_info = [v for v in model.graph.value_info if v.name not in cache_names]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept_info)


def write_decoder(src: Path, out: Path, k_scales: np.ndarray, v_scales: np.ndarray, granularity: str) -> None:
    """The quantized graph beside its external data (hard-linked, or copied across file systems)."""
    model = onnx.load(str(src), load_external_data=False)
    quantize_graph(model, k_scales, v_scales, granularity)
    data = {d.value for t in model.graph.initializer for d in t.external_data if d.key == "location"}
    for f in data:
        link_or_copy(src.parent / f, out.parent / f)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    onnx.save_model(model, str(tmp))
    os.replace(tmp, out)


# ---------------------------------------------------------------------------------------------- calibration


def synthetic_prompts(hidden: int, seed: int = 0) -> Iterator[np.ndarray]:
    """For graphs without a pack (test fixtures): smooth and noisy embeddings at a few lengths."""
    rng = np.random.default_rng(seed)
    for n in (32, 96, 200):
        i = np.arange(n * hidden, dtype=np.float64)
        yield (np.sin(i * 0.37 + rng.uniform(0, 6)) * 0.8).reshape(1, n, hidden).astype(np.float32)
        yield (rng.standard_normal((1, n, hidden)) * 0.5).astype(np.float32)


def pack_prompts(pack: Path, manifest: dict, images: int = 3) -> Iterator[np.ndarray]:
    """The pack's own chat template around the calibration texts, with image tokens from synthetic images."""
    import jinja2
    import onnxruntime as ort
    from tokenizers import Tokenizer

    prompt = manifest["prompt"]
    vision = manifest["vision"]
    tok = Tokenizer.from_file(str(pack / "tokenizer.json"))
    embed = ort.InferenceSession(str(pack / "embed_tokens.onnx"), providers=["CPUExecutionProvider"])
    try:
        encoder = ort.InferenceSession(str(pack / "vision_encoder.onnx"), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime < 1.22 has no 8-bit MatMulNBits (stream_convert's default vision encoder)
        if "4b quantization" not in str(e):
            raise
        raise ValueError(f"{pack}: its vision encoder has 8-bit weights, which onnxruntime {ort.__version__} cannot "
                         "run; calibrate with onnxruntime >= 1.22 (bench:real's reference venv has it), or convert "
                         "with --vision-precision fp32") from e
    template = jinja2.Environment().from_string(prompt["chatTemplate"])
    size = vision["imageSize"]
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / max(1, size - 1)
    pictures = [
        np.stack([x, y, 1 - x]),                                    # gradients
        (rng.random((3, 1, 1)) * np.ones((3, size, size))),          # one flat colour
        rng.random((3, size, size)),                                 # noise
        np.stack([(x > 0.5) * 1.0, (y > 0.5) * 1.0, ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.1) * 1.0]),  # shapes
    ][:images]
    mean = np.array(vision["mean"], np.float32)[:, None, None]
    std = np.array(vision["std"], np.float32)[:, None, None]
    pixels = np.stack([(p.astype(np.float32) - mean) / std for p in pictures]).astype(np.float32)
    features = encoder.run(None, {"pixel_values": pixels})[0]  # (images, tokens, hidden)

    def embed_ids(ids: list[int]) -> np.ndarray:
        return embed.run(None, {"input_ids": np.array([ids], np.int64)})[0]

    answers = ["A red car and two people.", "Yes. It is a small brown dog sitting on the grass.", "I cannot tell."]
    for t, text in enumerate(CALIBRATION_TEXTS):
        with_image = t % 2 == 0
        user = f"{prompt['imageToken']}\n{text}" if with_image else text
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answers[t % len(answers)]},
                    {"role": "user", "content": "And what happens next?"}]
        rendered = template.render(messages=messages, add_generation_prompt=True,
                                   bos_token=prompt.get("bosToken") or "", eos_token=prompt["eosToken"])
        parts = rendered.split(prompt["imageToken"])
        pieces = []
        for p, part in enumerate(parts):
            ids = tok.encode(part, add_special_tokens=False).ids
            if p == 0 and prompt.get("addBos") and prompt.get("bosToken"):
                bos = tok.token_to_id(prompt["bosToken"])
                if bos is not None and (not ids or ids[0] != bos):
                    ids = [bos] + ids
            if ids:
                pieces.append(embed_ids(ids))
            if p < len(parts) - 1:
                pieces.append(features[t % len(features)][None])
        yield np.concatenate(pieces, axis=1)


# ---------------------------------------------------------------------------------------------- the pack


def quantize_pack(src: Path, out: Path, granularity: str = "channel", margin: float = DEFAULT_MARGIN) -> dict:
    """A copy of the pack whose decoder keeps an int8 cache; the manifest says so (decoder.kvCache)."""
    manifest = json.loads((src / "manifest.json").read_text())
    if manifest["decoder"].get("kvCache", {}).get("dtype", "float32") != "float32":
        raise ValueError(f"{src}: the pack's KV cache is {manifest['decoder']['kvCache']['dtype']} already")
    decoder = src / "decoder_model_merged.onnx"
    print(f"[1/3] calibrating on {len(CALIBRATION_TEXTS)} prompts", file=sys.stderr)
    stats = calibrate(decoder, pack_prompts(src, manifest), manifest["decoder"])
    k, v = stats.scales(granularity, margin)
    with staging(out) as tmp:
        print("[2/3] int8 cache graph", file=sys.stderr)
        for f in src.iterdir():
            if f.name not in ("manifest.json", decoder.name) and f.is_file():
                link_or_copy(f, tmp / f.name)
        write_decoder(decoder, tmp / decoder.name, k, v, granularity)
        print("[3/3] manifest", file=sys.stderr)
        manifest["decoder"]["kvCache"] = {
            "dtype": "int8",
            "quantization": "per-channel" if granularity == "channel" else "per-tensor",
            "calibration": {"prompts": len(CALIBRATION_TEXTS), "tokens": stats.tokens, "margin": margin},
        }
        manifest["files"] = file_table(tmp)
        publish(tmp, out, manifest)
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--pack", type=Path, help="a Loupe pack whose decoder uses GroupQueryAttention")
    src.add_argument("--decoder", type=Path, help="a bare decoder graph (with --synthetic and --shape)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--granularity", choices=("channel", "tensor"), default="channel")
    ap.add_argument("--margin", type=float, default=DEFAULT_MARGIN)
    ap.add_argument("--synthetic", action="store_true", help="calibrate a bare graph on synthetic embeddings")
    ap.add_argument("--shape", help="the bare graph's DecoderShape as JSON (numLayers, numKeyValueHeads, headDim, "
                                    "hiddenSize)")
    args = ap.parse_args()
    try:
        if args.pack:
            quantize_pack(args.pack, args.out, args.granularity, args.margin)
        else:
            if not args.synthetic or not args.shape:
                ap.error("--decoder needs --synthetic and --shape")
            shape = json.loads(args.shape)
            stats = calibrate(args.decoder, synthetic_prompts(shape["hiddenSize"]), shape)
            k, v = stats.scales(args.granularity, args.margin)
            write_decoder(args.decoder, args.out, k, v, args.granularity)
    except (ValueError, OSError) as e:
        print(f"kv_quant: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
