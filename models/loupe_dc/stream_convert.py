"""Streaming conversion of a released Dense Connector checkpoint: the language model tensor by tensor.

    python -m loupe_dc.stream_convert --checkpoint DIR --vision-tower DIR --out PACK [--precision int4|fp32]
                                      [--kv-cache float32|int8] [--vision-precision fp32|int8|int4]
                                      [--block-size 32]

`convert` loads the whole LLM in fp32 (27 GB for a 7B model, 32 GB for 8B) before it exports anything. This
converter never holds more than one weight matrix of the language model: it reads the safetensors shards one
tensor at a time, quantizes each projection to 4 bits (MatMulNBits, symmetric, block 32, accuracy level 4: int8
dot products on CPU) as it is read, and appends its bytes to the graph's external data file at once. The decoder
graph is written by hand, laid out as onnxruntime-genai's model builder lays out its decoders, which the engine
runs with one KV buffer bound as past and present:

    inputs_embeds, attention_mask, past_key_values.{i}.key/value  ->  logits (last position), present.{i}.*
    per layer: SimplifiedLayerNormalization -> MatMulNBits (q, k, v packed) -> GroupQueryAttention (rotary
    inside) -> MatMulNBits (o) -> SkipSimplifiedLayerNormalization -> gate/up MatMulNBits, SiLU, down MatMulNBits

The vision encoder (tower, Dense Connector, projector: 400M parameters for SigLIP so400m) is written node by
node too (loupe_dc.vision_graph), its Linear layers int8 by default (MatMulNBits, 8 bits). The embedding table
is a Gather over fp16 rows.
`--precision fp32` keeps plain MatMuls (parity tests against transformers); `--kv-cache int8` then calibrates
an int8 cache (loupe_dc.kv_quant).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from .packfiles import file_table, publish, staging
from .streamio import ACCURACY_LEVEL, BLOCK, CHUNK_ROWS, ExternalData, Shards, log, peak_rss_mb, quantize_rows

OPSET = 17
VISION_DEFAULT = "int8"  # docs/real-models.md: the vision precision measured at so400m size


class DecoderWriter:
    """The decoder graph, node by node; weights go to the external data file as they are made."""

    def __init__(self, shards: Shards, cfg: dict, data: ExternalData, precision: str, block: int = BLOCK):
        self.shards, self.cfg, self.data, self.precision, self.block = shards, cfg, data, precision, block
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []

    def linear(self, x: str, names: list[str], out: str) -> str:
        """x @ W.T for the row-wise concatenation of the named (N_i, K) weights, read and quantized in chunks."""
        shapes = [self.shards.shape(n) for n in names]
        k = shapes[0][1]
        n_total = sum(s[0] for s in shapes)
        if self.precision == "fp32":
            w = np.concatenate([self.shards.get(n) for n in names], axis=0).T
            self.inits.append(self.data.tensor(out + ".weight", np.ascontiguousarray(w)))
            self.nodes.append(helper.make_node("MatMul", [x, out + ".weight"], [out], name=out))
            return out
        blocks = -(-k // self.block)
        b = self.data.begin(out + ".qweight", TensorProto.UINT8, [n_total, blocks, self.block // 2])
        scales = []
        for name, (n, _) in zip(names, shapes):
            for start in range(0, n, CHUNK_ROWS):
                packed, s = quantize_rows(self.shards.rows(name, start, min(n, start + CHUNK_ROWS)), 4, self.block)
                self.data.write(packed)
                scales.append(s)
        self.inits.append(self.data.end(b))
        self.inits.append(self.data.tensor(out + ".scales", np.concatenate(scales).reshape(-1)))
        self.nodes.append(helper.make_node("MatMulNBits", [x, out + ".qweight", out + ".scales"], [out], name=out,
                                           domain="com.microsoft", K=k, N=n_total, bits=4, block_size=self.block,
                                           accuracy_level=ACCURACY_LEVEL))
        return out

    def norm_weight(self, name: str, key: str) -> str:
        self.inits.append(self.data.tensor(key, self.shards.get(name).astype(np.float32)))
        return key

    def build(self) -> onnx.ModelProto:
        c = self.cfg
        h, L, heads, kv = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"]
        d = h // heads
        eps = float(c.get("rms_norm_eps", 1e-6))
        vocab = c["vocab_size"]
        theta = float(c.get("rope_theta", 10000.0))
        if c.get("rope_scaling"):
            raise ValueError(f"rope_scaling {c['rope_scaling']} is not supported by the streaming converter")
        positions = int(c.get("max_position_embeddings", 4096))
        inv = 1.0 / (theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
        angles = np.outer(np.arange(positions, dtype=np.float64), inv)
        self.inits += [helper.make_tensor("cos_cache", TensorProto.FLOAT, list(angles.shape), np.cos(angles).astype(np.float32).ravel()),
                       helper.make_tensor("sin_cache", TensorProto.FLOAT, list(angles.shape), np.sin(angles).astype(np.float32).ravel()),
                       helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
                       helper.make_tensor("one", TensorProto.INT64, [], [1]),
                       helper.make_tensor("index1", TensorProto.INT64, [], [1]),
                       helper.make_tensor("last_start", TensorProto.INT64, [1], [-1]),
                       helper.make_tensor("last_end", TensorProto.INT64, [1], [2 ** 62])]
        n = self.nodes
        n += [helper.make_node("ReduceSum", ["attention_mask", "axis1"], ["mask_sum"], keepdims=0),
              helper.make_node("Sub", ["mask_sum", "one"], ["seqlens_i64"]),
              helper.make_node("Cast", ["seqlens_i64"], ["seqlens_k"], to=TensorProto.INT32),
              helper.make_node("Shape", ["attention_mask"], ["mask_shape"]),
              helper.make_node("Gather", ["mask_shape", "index1"], ["total_i64"], axis=0),
              helper.make_node("Cast", ["total_i64"], ["total_sequence_length"], to=TensorProto.INT32)]
        inputs = [helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, ["batch_size", "sequence_length", h]),
                  helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"])]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", 1, vocab])]
        residual = "inputs_embeds"
        n.append(helper.make_node("SimplifiedLayerNormalization", [residual, self.norm_weight("model.layers.0.input_layernorm.weight", "ln_in.0")],
                                  ["normed.0"], axis=-1, epsilon=eps, stash_type=1))
        normed = "normed.0"
        for i in range(L):
            p = f"model.layers.{i}."
            past = [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
            present = [f"present.{i}.key", f"present.{i}.value"]
            inputs += [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch_size", kv, "past_sequence_length", d]) for x in past]
            outputs += [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch_size", kv, "total_sequence_length", d]) for x in present]
            qkv = self.linear(normed, [p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"], f"qkv.{i}")
            n.append(helper.make_node("GroupQueryAttention",
                                      [qkv, "", "", *past, "seqlens_k", "total_sequence_length", "cos_cache", "sin_cache"],
                                      [f"attn.{i}", *present], name=f"attn.{i}", domain="com.microsoft",
                                      num_heads=heads, kv_num_heads=kv, do_rotary=1, rotary_interleaved=0))
            o = self.linear(f"attn.{i}", [p + "self_attn.o_proj.weight"], f"o.{i}")
            n.append(helper.make_node("SkipSimplifiedLayerNormalization",
                                      [o, residual, self.norm_weight(p + "post_attention_layernorm.weight", f"ln_post.{i}")],
                                      [f"mlp_in.{i}", "", "", f"residual_mid.{i}"], domain="com.microsoft", epsilon=eps))
            gate = self.linear(f"mlp_in.{i}", [p + "mlp.gate_proj.weight"], f"gate.{i}")
            up = self.linear(f"mlp_in.{i}", [p + "mlp.up_proj.weight"], f"up.{i}")
            n += [helper.make_node("Sigmoid", [gate], [f"gate_sig.{i}"]),
                  helper.make_node("Mul", [gate, f"gate_sig.{i}"], [f"silu.{i}"]),
                  helper.make_node("Mul", [f"silu.{i}", up], [f"act.{i}"])]
            down = self.linear(f"act.{i}", [p + "mlp.down_proj.weight"], f"down.{i}")
            last = i == L - 1
            weight = "model.norm.weight" if last else f"model.layers.{i + 1}.input_layernorm.weight"
            n.append(helper.make_node("SkipSimplifiedLayerNormalization",
                                      [down, f"residual_mid.{i}", self.norm_weight(weight, "ln_final" if last else f"ln_in.{i + 1}")],
                                      ["final"] if last else [f"normed.{i + 1}", "", "", f"residual.{i + 1}"],
                                      domain="com.microsoft", epsilon=eps))
            residual, normed = f"residual.{i + 1}", f"normed.{i + 1}"
            log(f"  layer {i + 1}/{L}: peak RSS {peak_rss_mb():.0f} MB")
            gc.collect()
        n.append(helper.make_node("Slice", ["final", "last_start", "last_end", "axis1"], ["final_last"]))
        head = "lm_head.weight" if "lm_head.weight" in self.shards else "model.embed_tokens.weight"  # tied embeddings
        self.linear("final_last", [head], "logits")
        graph = helper.make_graph(n, "decoder", inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)])
        model.ir_version = 8
        return model


def write_decoder(shards: Shards, cfg: dict, tmp: Path, precision: str, block: int = BLOCK) -> None:
    data = ExternalData(tmp / "decoder_model_merged.onnx_data")
    try:
        model = DecoderWriter(shards, cfg, data, precision, block).build()
    finally:
        data.close()
    onnx.save_model(model, str(tmp / "decoder_model_merged.onnx"))


def write_embedding(shards: Shards, cfg: dict, tmp: Path) -> None:
    """input_ids -> float32 rows of the fp16 table (Gather, then Cast)."""
    data = ExternalData(tmp / "embed_tokens.onnx_data")
    try:
        vocab, h = cfg["vocab_size"], cfg["hidden_size"]
        table = data.begin("embed_tokens.weight", TensorProto.FLOAT16, [vocab, h])
        for start in range(0, vocab, CHUNK_ROWS):
            data.write(shards.rows("model.embed_tokens.weight", start, min(vocab, start + CHUNK_ROWS)).astype(np.float16))
        table = data.end(table)
    finally:
        data.close()
    nodes = [helper.make_node("Gather", ["embed_tokens.weight", "input_ids"], ["rows"], axis=0),
             helper.make_node("Cast", ["rows"], ["inputs_embeds"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "embed_tokens",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"])],
                              [helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, ["batch_size", "sequence_length", h])],
                              [table])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.save_model(model, str(tmp / "embed_tokens.onnx"))


def write_vision(shards: Shards, cfg: dict, tower_dir: Path, tmp: Path, precision: str) -> dict:
    """Tower + Dense Connector + projector, written node by node (loupe_dc.vision_graph): preprocessing, layers,
    image size, tokens."""
    from .official import connector_choice, is_siglip_tower, tower_spec
    from .vision_graph import Tower, write_vision_graph

    siglip = is_siglip_tower(cfg)
    vcfg, layers, pre = tower_spec(tower_dir, siglip)
    kind = connector_choice(cfg, layers, siglip, vcfg.hidden_size)
    tower = Tower(siglip=siglip, hidden=vcfg.hidden_size, heads=vcfg.num_attention_heads, image_size=vcfg.image_size,
                  patch=vcfg.patch_size, eps=float(vcfg.layer_norm_eps),
                  layers=vcfg.num_hidden_layers - (1 if siglip else 0))
    tokens = write_vision_graph(tower_dir, shards, tower, kind, layers, cfg["hidden_size"], tmp / "vision_encoder.onnx",
                                precision, log)
    return {**pre, "layers": asdict(layers), "kind": kind, "siglip": siglip, "imageSize": tower.image_size, "tokens": tokens}


def convert(checkpoint: Path, tower: Path | None, out: Path, precision: str = "int4", kv_cache: str = "float32",
            name: str | None = None, version: str = "0.0.1", vision_precision: str | None = None,
            block: int = BLOCK) -> dict:
    """vision_precision: fp32, int8 or int4 for the vision encoder's Linear layers (default: VISION_DEFAULT with
    an int4 decoder, fp32 with fp32)."""
    from .convert import PACK_FORMAT_VERSION
    from .official import pack_preprocess, prompt_config, read_config, resolve_tower, tokenizer_files

    t0 = time.monotonic()
    cfg = read_config(checkpoint)
    tower_dir = resolve_tower(checkpoint, cfg, tower)
    shards = Shards(checkpoint)
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads", heads)
    with staging(out) as tmp:
        tokenizer_files(checkpoint, tmp)
        prompt = prompt_config(checkpoint, tmp, cfg, None)
        log(f"[1/4] vision encoder ({tower_dir.name}), peak RSS so far {peak_rss_mb():.0f} MB")
        v = write_vision(shards, cfg, tower_dir, tmp, vision_precision or ("fp32" if precision == "fp32" else VISION_DEFAULT))
        log(f"[2/4] token embedding, peak RSS {peak_rss_mb():.0f} MB")
        write_embedding(shards, cfg, tmp)
        log(f"[3/4] decoder: {cfg['num_hidden_layers']} layers, {precision} weights, streamed; peak RSS {peak_rss_mb():.0f} MB")
        write_decoder(shards, cfg, tmp, precision, block)
        manifest = {
            "format": "loupe-model-pack", "formatVersion": PACK_FORMAT_VERSION,
            "name": name or checkpoint.name, "version": version, "license": cfg.get("license", "see the checkpoint"),
            "description": f"{checkpoint.name}, converted tensor by tensor (loupe_dc.stream_convert)", "domain": None,
            "precision": precision,
            "vision": {"tower": "siglip" if v["siglip"] else "clip", "imageSize": v["imageSize"],
                       "mean": v["mean"], "std": v["std"], "padColor": v["padColor"], "resample": v["resample"],
                       "preprocess": pack_preprocess(v), "connector": v["kind"], "connectorLayers": v["layers"],
                       "tokensPerImage": v["tokens"], "tokensPerFrame": v["tokens"] // 2, "temporalPooling": "max2"},
            "decoder": {"hiddenSize": h, "numLayers": cfg["num_hidden_layers"], "numKeyValueHeads": kv, "headDim": h // heads,
                        "vocabSize": cfg["vocab_size"], "contextLength": cfg.get("max_position_embeddings", 4096),
                        "usesPositionIds": False},
            "prompt": prompt,
            "defaults": {"frames": 8, "maxNewTokens": 64},
        }
        manifest["files"] = file_table(tmp)
        publish(tmp, out, manifest)
    if kv_cache == "int8":
        from .kv_quant import quantize_pack

        log("[4/4] int8 KV cache (calibration)")
        quantize_pack(out, out.with_name(out.name + ".kv8"))
        import shutil

        shutil.rmtree(out)
        out.with_name(out.name + ".kv8").rename(out)
    seconds = time.monotonic() - t0
    log(f"done in {seconds:.0f} s, peak RSS {peak_rss_mb():.0f} MB")
    return {"convert_s": round(seconds, 1), "convert_peak_rss_mb": round(peak_rss_mb())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--vision-tower", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--precision", choices=("int4", "fp32"), default="int4")
    ap.add_argument("--kv-cache", choices=("float32", "int8"), default="float32")
    ap.add_argument("--vision-precision", choices=("fp32", "int8", "int4"),
                    help=f"the vision encoder's Linear layers (default: {VISION_DEFAULT} with an int4 decoder)")
    ap.add_argument("--block-size", type=int, default=BLOCK, choices=(16, 32, 64, 128, 256),
                    help="the int4 decoder's quantization block (docs/real-models.md: measured)")
    ap.add_argument("--name")
    args = ap.parse_args()
    print(json.dumps(convert(args.checkpoint, args.vision_tower, args.out, args.precision, args.kv_cache, args.name,
                             vision_precision=args.vision_precision, block=args.block_size)))


if __name__ == "__main__":
    main()
